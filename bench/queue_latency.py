"""Cross-loop queues: round-trip latency (bench/README.md, third benchmark), p50 and p99.

Loop ``a`` stamps ``perf_counter_ns`` into its payload (100 B, 1 KiB), writes it to queue
``ping`` (a blocking writer), and its blocking reader of queue ``pong`` takes the echo that loop
``b`` (reader of ``ping`` as its producer, blocking writer of ``pong``) sends back; the node
after that reader records the round trip: a → hub → b → hub → a. Both loops in the thread pool
(``inproc://``), both in the process pool (``ipc://``), or both ``ostinato loop`` processes
against an ``ostinato hub`` over ``tcp://`` with CURVE. Peer, measured in the same run and
interleaved: a raw pyzmq REQ/REP round trip over the same transport with the same payload (a
thread or a child process echoing; CURVE over tcp). Each case keeps the best of ``--repeat``;
the first 100 round trips of every run are left out.

Run from the repository root::

    .venv/bin/python bench/queue_latency.py               # table (also: make bench)
    .venv/bin/python bench/queue_latency.py --json        # machine-readable
    .venv/bin/python bench/queue_latency.py --only rtt-ipc-100

The machinery (nodes, runners, table) is shared with ``bench/queue_throughput.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.queue_throughput import main

if __name__ == "__main__":
    sys.exit(main(bench="round-trip"))
