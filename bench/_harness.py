"""What both benchmarks share: run checks, interleaved best-of runs, options, machine facts."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ostinato import LoopState, LoopStatus

__all__ = ["add_common_options", "check_status", "interleave", "machine", "select"]

C = TypeVar("C")
R = TypeVar("R")


def check_status(status: LoopStatus, iterations: int, *, clean_nodes: bool = False) -> None:
    """A run only counts if the loop did every iteration and ended cleanly, stopped or
    finished (and, with ``clean_nodes``, no node had an error or a drop)."""
    ended = status.state in (LoopState.STOPPED, LoopState.FINISHED)
    if not ended or status.iterations != iterations:
        raise RuntimeError(
            f"loop {status.name!r} ended {status.state.value} after "
            f"{status.iterations}/{iterations} iteration(s): {status.last_error or status.reason}"
        )
    if status.failed_iterations:
        raise RuntimeError(f"{status.failed_iterations} failed iteration(s): {status.last_error}")
    if clean_nodes:
        for node in status.nodes:
            if node.errors or node.dropped:
                raise RuntimeError(
                    f"node {status.name}/{node.name}: {node.errors} error(s), {node.dropped} "
                    f"dropped: {node.last_error}"
                )


def add_common_options(parser: argparse.ArgumentParser, keys: Sequence[str], peers: str) -> None:
    """--repeat, --only (with the case keys) and --json."""
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per case, interleaved; the best one counts"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(keys),
        metavar="CASE",
        help=f"run only this case (repeatable; {peers} added): " + ", ".join(keys),
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def select(
    cases: Sequence[C],
    only: list[str] | None,
    key: Callable[[C], str],
    peers: Callable[[C], Iterable[str]],
) -> list[C]:
    """The cases named by --only with their peers, in table order; all without --only."""
    if not only:
        return list(cases)
    keys = set(only)
    keys.update(p for c in cases if key(c) in keys for p in peers(c))
    return [c for c in cases if key(c) in keys]


def interleave(
    cases: Sequence[C],
    repeat: int,
    key: Callable[[C], str],
    run: Callable[[C], R],
    label: Callable[[C], str],
) -> dict[str, list[R]]:
    """Run every case once per round, ``repeat`` rounds, so that a noisy spell of the machine
    spreads over all cases instead of spoiling one; progress goes to stderr."""
    runs: dict[str, list[R]] = {key(c): [] for c in cases}
    for round_ in range(repeat):
        for case in cases:
            print(f"run {round_ + 1}/{repeat}: {label(case)}", file=sys.stderr, flush=True)
            runs[key(case)].append(run(case))
    return runs


def machine() -> dict[str, Any]:
    """What the JSON results say about where they were measured."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
