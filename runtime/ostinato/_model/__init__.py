"""The workflow as data (spec, plans, nodes, built-ins, status): no ZeroMQ, nothing above."""
