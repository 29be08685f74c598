"""ostinato benchmarks (bench/README.md): each one a ratio against a peer measured in the same run.

A package so that a process-pool loop can import node classes defined here by path
(``bench.node_overhead:NoOp``).
"""
