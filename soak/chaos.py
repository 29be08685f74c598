"""The chaos driver: a seeded plan of faults (a loop process or pod every 30-60 s, the hub twice,
the operator once) carried out against a host, each fault logged with when its replacement ran.

What a fault does is the host's business (``Target``: delete a pod, SIGKILL a process); the
plan, its timing and its log are the same everywhere.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

__all__ = ["ChaosSettings", "Fault", "Planned", "Target", "plan", "read_faults", "run_plan"]

Kind = Literal["loop", "hub", "operator"]


class Fault(BaseModel):
    """One fault as carried out; written as a JSON line to the run's chaos log."""

    kind: Kind
    #: The pod or process hit: `soak-worker-1`, `worker/1`, the hub's pod.
    target: str
    #: How: `delete` (graceful), `force-delete` (grace 0), `SIGKILL`.
    how: str
    #: The loop the target runs (loop faults).
    loop: str | None = None
    #: Wall-clock time it was injected (seconds since the epoch).
    at: float
    #: What was hit and what replaced it (pod uids, process ids).
    old: str | None = None
    new: str | None = None
    #: When the replacement was running (pod Ready, new process seen); None if it never was.
    replaced_at: float | None = None
    #: How the accounting finds the replacement in the records: their host (a pod's name) or
    #: their process id.
    match_host: str | None = None
    match_pid: int | None = None
    error: str | None = None


class Planned(BaseModel):
    offset_seconds: float
    kind: Kind
    target: str
    how: str


class ChaosSettings(BaseModel):
    """When faults happen; all in seconds."""

    seed: int = Field(1, description="Seed of the plan's random choices.")
    loop_interval_seconds: tuple[float, float] = Field(
        (30.0, 60.0), description="Between two loop faults, drawn uniformly."
    )
    hub_kills: int = Field(2, ge=0)
    operator_restarts: int = Field(1, ge=0)
    quiet_start_seconds: float = Field(
        30.0, ge=0, description="No fault before this (the workload warms up)."
    )
    quiet_end_seconds: float = Field(
        60.0,
        ge=0,
        description="No fault in the run's last seconds: every fault heals before "
        "the writers stop.",
    )
    spacing_seconds: float = Field(
        15.0, ge=0, description="A loop fault this close to a hub or operator fault waits."
    )
    replace_timeout_seconds: float = Field(
        180.0, gt=0, description="How long a replacement may take before it counts as never."
    )


def plan(
    settings: ChaosSettings,
    duration_seconds: float,
    loop_targets: Sequence[str],
    loop_hows: Sequence[str],
    hub_how: str,
    operator_how: str | None,
) -> list[Planned]:
    """The faults of a run, from the seed alone: the same seed, the same plan."""
    rng = random.Random(settings.seed)
    # A short run keeps the same shape: quiet ends of at most a tenth and a fifth of it.
    quiet_start = min(settings.quiet_start_seconds, duration_seconds / 10)
    window_end = duration_seconds - min(settings.quiet_end_seconds, duration_seconds / 5)
    fixed: list[Planned] = []
    for i in range(settings.hub_kills):  # evenly spread: a third and two thirds in for two
        offset = quiet_start + (i + 1) / (settings.hub_kills + 1) * (window_end - quiet_start)
        fixed.append(Planned(offset_seconds=offset, kind="hub", target="hub", how=hub_how))
    for i in range(settings.operator_restarts if operator_how is not None else 0):
        share = (i + 0.5) / settings.operator_restarts
        offset = quiet_start + share * (window_end - quiet_start)
        while any(abs(f.offset_seconds - offset) < settings.spacing_seconds for f in fixed):
            offset += settings.spacing_seconds
        fixed.append(
            Planned(
                offset_seconds=offset, kind="operator", target="operator", how=str(operator_how)
            )
        )
    planned = list(fixed)
    low, high = settings.loop_interval_seconds
    at = quiet_start + rng.uniform(0, min(low, window_end / 4))
    while loop_targets and at <= window_end:
        for other in fixed:
            if abs(other.offset_seconds - at) < settings.spacing_seconds:
                at = other.offset_seconds + settings.spacing_seconds
        if at > window_end:
            break
        planned.append(
            Planned(
                offset_seconds=at,
                kind="loop",
                target=rng.choice(list(loop_targets)),
                how=rng.choice(list(loop_hows)),
            )
        )
        at += rng.uniform(low, high)
    planned.sort(key=lambda p: p.offset_seconds)
    return planned


class Target(Protocol):
    """A host the faults are carried out on."""

    def inject(self, planned: Planned) -> Fault:
        """Carry the fault out now; the Fault says what was hit (``at``, ``old``)."""
        ...

    def replaced(self, fault: Fault) -> Fault | None:
        """The fault with ``replaced_at``, ``new`` and a match once its replacement runs;
        None while it does not yet (called every fraction of a second)."""
        ...


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_plan(
    planned: Sequence[Planned],
    target: Target,
    started: float,
    log_path: Path,
    settings: ChaosSettings,
    stop: threading.Event,
    on_fault: Callable[[Fault], None] | None = None,
) -> list[Fault]:
    """Carry out the plan from ``started`` (time.monotonic()); each fault's replacement is
    awaited on a thread of its own, so faults keep their schedule. Returns the faults once every
    replacement ran or timed out; ``stop`` ends it early (faults not yet injected are skipped)."""
    faults: list[Fault] = []
    lock = threading.Lock()
    waiters: list[threading.Thread] = []

    def await_replacement(fault: Fault) -> None:
        deadline = time.monotonic() + settings.replace_timeout_seconds
        done: Fault | None = None
        while time.monotonic() < deadline:
            try:
                done = target.replaced(fault)
            except Exception as exc:  # a poll that failed once (API busy): try again
                log(f"chaos: polling {fault.target}: {exc}")
            if done is not None:
                break
            time.sleep(0.25)
        final = done or fault.model_copy(update={"error": "no replacement running in time"})
        if final.replaced_at is not None:
            log(
                f"chaos: {final.kind} {final.target} replaced after "
                f"{final.replaced_at - final.at:.1f} s"
            )
        else:
            log(f"chaos: {final.kind} {final.target}: {final.error}")
        with lock:
            faults.append(final)
            with log_path.open("a") as out:
                out.write(final.model_dump_json() + "\n")
        if on_fault is not None:
            on_fault(final)

    for item in planned:
        delay = started + item.offset_seconds - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        try:
            fault = target.inject(item)
        except Exception as exc:
            log(f"chaos: {item.kind} {item.target} ({item.how}) failed: {exc}")
            continue
        log(f"chaos: {item.how} {item.kind} {fault.target} at +{item.offset_seconds:.0f} s")
        thread = threading.Thread(target=await_replacement, args=(fault,), daemon=True)
        thread.start()
        waiters.append(thread)
    for thread in waiters:
        thread.join()
    return sorted(faults, key=lambda f: f.at)


def read_faults(path: Path) -> list[Fault]:
    if not path.exists():
        return []
    return [Fault.model_validate_json(line) for line in path.read_text().splitlines() if line]
