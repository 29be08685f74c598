"""The hub and its clients over ZeroMQ: wire protocol, routing, store, CURVE keys, sockets."""
