"""Collectors: the resident memory of the hub and of every loop process every 10 s, read from
/proc (on the single-node cluster the pods' processes are this machine's too), and a progress
line now and then. Samples go to a JSON-lines file the report reads afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from . import records
from .chaos import log

__all__ = ["MemorySample", "ProcessSource", "Sampler", "container_pids", "read_samples", "rss"]


class MemorySample(BaseModel):
    """One process's resident memory at one moment."""

    at: float
    #: What the process is: `hub`, `writer-0`, `worker-1`, ... (the same across restarts).
    process: str
    #: Which incarnation: a pid, a container id.
    key: str
    rss_bytes: int


class ProcessSource(Protocol):
    def processes(self) -> dict[str, tuple[str, list[int]]]:
        """Process name -> (incarnation key, its pids) for everything running now."""
        ...


def rss(pid: int) -> int | None:
    """VmRSS of ``pid`` in bytes; None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def container_pids(container_ids: set[str]) -> dict[str, list[int]]:
    """Container id -> the host pids of its processes (their cgroup path names the id)."""
    found: dict[str, list[int]] = {cid: [] for cid in container_ids}
    if not container_ids:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroups = (entry / "cgroup").read_text()
        except OSError:
            continue
        for cid in container_ids:
            if cid in cgroups:
                found[cid].append(int(entry.name))
                break
    return found


class Sampler:
    """Samples every ``every_seconds`` on a thread of its own until stopped."""

    def __init__(
        self,
        source: ProcessSource,
        path: Path,
        records_dir: Path,
        every_seconds: float = 10.0,
        progress_every_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.path = path
        self.records_dir = records_dir
        self.every = every_seconds
        self.progress_every = progress_every_seconds
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._last_progress = (time.monotonic(), 0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> list[MemorySample]:
        now = self.clock()
        samples = []
        try:
            running = self.source.processes()
        except Exception as exc:  # the API busy for a moment: the next sample will do
            log(f"collect: listing processes failed: {exc}")
            return []
        for name, (key, pids) in sorted(running.items()):
            sizes = [size for size in map(rss, pids) if size is not None]
            if sizes:
                samples.append(MemorySample(at=now, process=name, key=key, rss_bytes=sum(sizes)))
        with self.path.open("a") as out:
            for s in samples:
                out.write(s.model_dump_json() + "\n")
        return samples

    def _progress(self) -> None:
        then, before = self._last_progress
        now = time.monotonic()
        if now - then >= self.progress_every:
            received = records.count_received(self.records_dir)
            rate = (received - before) / (now - then)
            log(f"progress: {received:,} messages received ({rate:.0f}/s lately)")
            self._last_progress = (now, received)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample()
            self._progress()
            next_at += self.every
            self._stop.wait(max(next_at - time.monotonic(), 0))


def read_samples(path: Path) -> list[MemorySample]:
    if not path.exists():
        return []
    return [MemorySample.model_validate_json(ln) for ln in path.read_text().splitlines() if ln]
