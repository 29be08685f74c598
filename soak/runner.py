"""One soak run on any host: start the workload, sample memory, carry out the chaos plan, stop the
writers, let the readers drain the queues, stop, and count. Hosts (``soak.cluster``,
``soak.local``) only say how to start, hit, watch and stop their processes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from . import records
from .accounting import (
    Goals,
    RunSummary,
    count_messages,
    heal_times,
    memory_verdicts,
)
from .chaos import ChaosSettings, Fault, Planned, log, plan, read_faults, run_plan
from .collect import Sampler, read_samples
from .workload import QUEUES, WorkloadSettings, loop_replicas

__all__ = ["RUN_FILE", "Host", "RunRecord", "RunSettings", "SoakError", "soak", "summarize"]

RUN_FILE = "run.json"


class SoakError(RuntimeError):
    """The soak cannot go on (no cluster here, nothing flowing, a process that will not
    start): one line for the person running it, no traceback."""


class RunSettings(BaseModel):
    """One run's length and shape; seconds throughout."""

    traffic_seconds: float = Field(gt=0, description="How long the writers write.")
    workload: WorkloadSettings = Field(default_factory=WorkloadSettings)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)
    sample_every_seconds: float = Field(10.0, gt=0)
    drain_timeout_seconds: float = Field(
        180.0, gt=0, description="After the writers stop, how long the readers may take."
    )
    flowing_timeout_seconds: float = Field(
        300.0, gt=0, description="From start until the first message must have arrived."
    )


class Host(Protocol):
    """Where a run happens: a cluster, an `ostinato run`, a hub with loop processes."""

    name: str
    description: str
    #: Where the loops write their records, as this process sees it.
    records_dir: Path

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The workload deployed and started for the block; everything removed after it."""
        ...

    def loop_targets(self) -> list[str]:
        """What a loop fault may hit (pod names, `loop/replica`)."""
        ...

    def fault_hows(self) -> tuple[list[str], str, str | None]:
        """How loop faults, hub faults and operator faults (None: no operator) are dealt."""
        ...

    def inject(self, planned: Planned) -> Fault: ...

    def replaced(self, fault: Fault) -> Fault | None: ...

    def processes(self) -> dict[str, tuple[str, list[int]]]: ...

    def stop_writers(self) -> None:
        """Pause the writer loops (their blocking puts finish first)."""
        ...

    def queue_depths(self) -> dict[str, int]:
        """The hub's depth of each queue."""
        ...

    def notes(self) -> list[str]:
        """Anything seen during the run that the report should mention."""
        ...


def _wait_flowing(host: Host, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while records.count_received(host.records_dir) == 0:
        if time.monotonic() > deadline:
            raise SoakError(f"{host.name}: no message reached a reader within {timeout:.0f} s")
        time.sleep(1)


def _drain(host: Host, timeout: float) -> bool:
    """Until every queue is empty and the readers recorded nothing new for a few seconds."""
    deadline = time.monotonic() + timeout
    last, steady = -1, 0
    while time.monotonic() < deadline:
        try:
            depths = host.queue_depths()
        except Exception as exc:  # the hub restarting: ask again
            log(f"drain: {exc}")
            depths = {"?": -1}
        received = records.count_received(host.records_dir)
        steady = steady + 1 if received == last and not any(depths.values()) else 0
        if steady >= 3:
            return True
        last = received
        time.sleep(2)
    return False


def soak(host: Host, settings: RunSettings, out: Path) -> RunSummary:
    """Run the soak on ``host``; its files go to ``out`` (chaos.jsonl, memory.jsonl)."""
    out.mkdir(parents=True, exist_ok=True)
    chaos_log, memory_log = out / "chaos.jsonl", out / "memory.jsonl"
    for stale in (chaos_log, memory_log):
        stale.unlink(missing_ok=True)
    loop_hows, hub_how, operator_how = host.fault_hows()
    duration = settings.traffic_seconds
    stop = threading.Event()
    with host.running():
        _wait_flowing(host, settings.flowing_timeout_seconds)
        planned = plan(
            settings.chaos, duration, host.loop_targets(), loop_hows, hub_how, operator_how
        )
        log(f"{host.name}: messages flowing; {len(planned)} fault(s) planned over {duration:.0f} s")
        started_wall, started = time.time(), time.monotonic()
        sampler = Sampler(host, memory_log, host.records_dir, settings.sample_every_seconds)
        sampler.start()
        faults: list[Fault] = []
        chaos = threading.Thread(
            target=lambda: faults.extend(
                run_plan(planned, host, started, chaos_log, settings.chaos, stop)
            ),
            name="soak-chaos",
            daemon=True,
        )
        chaos.start()
        try:
            time.sleep(max(started + duration - time.monotonic(), 0))
        finally:
            stop.set()
        chaos.join()
        log(f"{host.name}: traffic window over; stopping the writers and draining")
        host.stop_writers()
        drained = _drain(host, settings.drain_timeout_seconds)
        sampler.stop()
        notes = host.notes()
        if not drained:
            notes.append(
                f"the queues were not empty {settings.drain_timeout_seconds:.0f} s after the "
                "writers stopped: messages still in them count as lost"
            )
    record = RunRecord(
        name=host.name,
        description=host.description,
        started_at=started_wall,
        settings=settings,
        notes=notes,
    )
    (out / RUN_FILE).write_text(record.model_dump_json(indent=1))
    return summarize(out)


class RunRecord(BaseModel):
    """What a run's directory says about the run beside its records and logs (run.json), so
    its report can be made again (`python -m soak report DIR`)."""

    name: str
    description: str
    started_at: float
    settings: RunSettings
    notes: list[str] = Field(default_factory=list)


def summarize(out: Path) -> RunSummary:
    """Count a finished run from its directory: run.json, records/, chaos.jsonl, memory.jsonl."""
    run = RunRecord.model_validate_json((out / RUN_FILE).read_text())
    settings = run.settings
    writers, readers = records.load(out / "records")
    faults = read_faults(out / "chaos.jsonl")
    samples = read_samples(out / "memory.jsonl")
    reading = {"jobs": ["worker"], "events": ["monitor"]}
    assert set(reading) == set(QUEUES)
    messages = count_messages(writers, readers, QUEUES, reading)
    warmup = min(max(settings.traffic_seconds / 10, 30.0), 180.0)
    span = min(max(settings.traffic_seconds / 5, 60.0), 600.0)
    replicas = loop_replicas(settings.workload)
    return RunSummary(
        name=run.name,
        description=f"{run.description} Loops: "
        + ", ".join(f"{loop} x{n}" for loop, n in replicas.items())
        + ".",
        started_at=run.started_at,
        traffic_seconds=settings.traffic_seconds,
        target_per_second=settings.workload.messages_per_second,
        seed=settings.chaos.seed,
        messages=messages,
        # The chaos log is in the order replacements ran; the report lists faults in time.
        heals=heal_times(sorted(faults, key=lambda f: f.at), writers, readers),
        memory=memory_verdicts(samples, warmup, span),
        samples=list(samples),
        warmup_seconds=warmup,
        min_span_seconds=span,
        goals=Goals(),
        notes=run.notes,
    )
