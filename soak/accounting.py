"""What the records say: messages lost, duplicated and out of order; how long each fault took to
heal; how much each process's memory grew. Pure functions over records, samples and faults.

Definitions (docs/reliability.md):

- A message is one sequence number of one writer incarnation on one queue; each consumer group
  of the queue (the work queue's readers together, each loop reading the broadcast queue on its
  own) should receive it.
- **lost**: acknowledged to the writer, received by no reader of a group. The goal is 0.
- **unacked lost**: written (stamped) but never acknowledged and never received: the writer
  was killed or stopped with it in flight, or before it went to this queue at all (a writer
  stopped while waiting for its first queue never sends it to the second). Allowed: nobody was
  told it was sent.
- **duplicated**: receipts in a group beyond the first of a message.
- **out of order**: per reader incarnation and writer incarnation, a message received for the
  first time after one with a higher sequence number.
- **phantom**: received, but no writer record has it: corruption. The goal is 0.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .chaos import Fault
from .collect import MemorySample
from .records import Identity, ReaderLog, Receipt, WriterLog

__all__ = [
    "Goals",
    "GroupCount",
    "Heal",
    "MemoryVerdict",
    "Messages",
    "RunSummary",
    "count_messages",
    "heal_times",
    "memory_verdicts",
]

#: Examples of lost messages kept in the report.
EXAMPLES = 10


@dataclass
class GroupCount:
    """One consumer group of one queue."""

    queue: str
    group: str
    written: int = 0
    acked: int = 0
    received: int = 0
    lost: int = 0
    unacked_lost: int = 0
    unacked_received: int = 0
    duplicated: int = 0
    duplicated_redelivered: int = 0
    out_of_order: int = 0
    phantom: int = 0
    lost_examples: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Messages:
    """The counts of a run, per group and in all."""

    groups: list[GroupCount]
    #: First receipts per group, as (time, count) buckets of ``bucket_seconds``.
    throughput: list[tuple[float, int]]
    bucket_seconds: float
    first_written: float | None
    last_received: float | None
    writer_incarnations: int
    reader_incarnations: int

    def total(self, name: str) -> int:
        return sum(int(getattr(g, name)) for g in self.groups)

    @property
    def seconds(self) -> float:
        if self.first_written is None or self.last_received is None:
            return 0.0
        return max(self.last_received - self.first_written, 0.0)


def _group_of(queue: str, reader_loop: str, modes: Mapping[str, str]) -> str:
    """The work queue's readers share one group; each loop reading a broadcast queue is one."""
    return "*" if modes.get(queue) == "work" else reader_loop


def count_messages(
    writers: Sequence[WriterLog],
    readers: Sequence[ReaderLog],
    modes: Mapping[str, Literal["work", "broadcast"]],
    reading_loops: Mapping[str, Sequence[str]],
    bucket_seconds: float = 10.0,
) -> Messages:
    """``modes``: queue -> work or broadcast; ``reading_loops``: queue -> the loops that read
    it (every writer writes every queue: each acknowledged message is expected in each group)."""
    by_writer = {w.identity.incarnation: w for w in writers}
    # (queue, group) -> message (writer incarnation, seq) -> receipts
    seen: dict[tuple[str, str], dict[tuple[str, int], list[Receipt]]] = defaultdict(dict)
    counts: dict[tuple[str, str], GroupCount] = {}
    for queue, loops in reading_loops.items():
        groups = {_group_of(queue, loop, modes) for loop in loops}
        for group in sorted(groups):
            counts[(queue, group)] = GroupCount(queue, group)
    first_receipts: list[float] = []
    for reader in readers:
        _order(reader, counts, modes)
        for receipt in reader.receipts:
            key = (receipt.queue, _group_of(receipt.queue, reader.identity.loop, modes))
            count = counts.setdefault(key, GroupCount(*key))
            message = (receipt.writer, receipt.seq)
            got = seen[key].get(message)
            if got is None:
                seen[key][message] = [receipt]
                first_receipts.append(receipt.at)
                writer = by_writer.get(receipt.writer)
                if writer is None or receipt.seq not in writer.written:
                    count.phantom += 1
            else:
                got.append(receipt)
                count.duplicated += 1
                count.duplicated_redelivered += receipt.redelivered
    for key, count in counts.items():
        received = seen[key]
        count.received = len(received)
        for writer in writers:
            inc = writer.identity.incarnation
            count.written += len(writer.written)
            count.acked += len(writer.acked)
            for seq in writer.written:
                got_it = (inc, seq) in received
                if seq in writer.acked:
                    if not got_it:
                        count.lost += 1
                        if len(count.lost_examples) < EXAMPLES:
                            count.lost_examples.append((inc, seq))
                elif got_it:
                    count.unacked_received += 1
                else:
                    count.unacked_lost += 1
    stamps = [at for w in writers for at in w.written.values()]
    return Messages(
        groups=[counts[k] for k in sorted(counts)],
        throughput=_buckets(first_receipts, bucket_seconds),
        bucket_seconds=bucket_seconds,
        first_written=min(stamps) if stamps else None,
        last_received=max(first_receipts) if first_receipts else None,
        writer_incarnations=len(writers),
        reader_incarnations=len(readers),
    )


def _order(
    reader: ReaderLog, counts: dict[tuple[str, str], GroupCount], modes: Mapping[str, str]
) -> None:
    """Out of order, per reader incarnation and writer incarnation: a first receipt of a
    sequence number lower than one this reader already had from that writer."""
    highest: dict[tuple[str, str], int] = {}
    had: set[tuple[str, str, int]] = set()
    for r in reader.receipts:
        stream = (r.queue, r.writer)
        if (r.queue, r.writer, r.seq) in had:
            continue  # a duplicate, counted as such
        had.add((r.queue, r.writer, r.seq))
        top = highest.get(stream)
        if top is not None and r.seq < top:
            key = (r.queue, _group_of(r.queue, reader.identity.loop, modes))
            counts.setdefault(key, GroupCount(*key)).out_of_order += 1
        else:
            highest[stream] = r.seq


def _buckets(times: Iterable[float], width: float) -> list[tuple[float, int]]:
    ordered = sorted(times)
    if not ordered:
        return []
    start = ordered[0] - ordered[0] % width
    counts: dict[int, int] = defaultdict(int)
    for t in ordered:
        counts[int((t - start) // width)] += 1
    last = max(counts)
    return [(start + i * width, counts.get(i, 0)) for i in range(last + 1)]


# -- faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heal:
    fault: Fault
    #: Seconds from the fault to its replacement running (pod Ready, new process seen).
    replaced_seconds: float | None
    #: Seconds from the fault to that loop's messages (or, for the hub, every queue's)
    #: flowing end to end again; None where not measured (the operator carries no traffic).
    flowing_seconds: float | None

    @property
    def healed_seconds(self) -> float | None:
        """Both: the replacement runs and the messages flow (the operator: runs)."""
        if self.replaced_seconds is None:
            return None
        if self.fault.kind == "operator":
            return self.replaced_seconds
        if self.flowing_seconds is None:
            return None
        return max(self.replaced_seconds, self.flowing_seconds)


def _successor(identity: Identity, fault: Fault) -> bool:
    """Is ``identity`` a process that replaced the one ``fault`` hit?"""
    if identity.loop != fault.loop or identity.started_at < fault.at:
        return False
    if fault.match_pid is not None:
        return identity.pid == fault.match_pid
    return fault.match_host is not None and identity.host == fault.match_host


def heal_times(
    faults: Sequence[Fault], writers: Sequence[WriterLog], readers: Sequence[ReaderLog]
) -> list[Heal]:
    first_by_writer: dict[str, float] = {}
    for reader in readers:
        for r in reader.receipts:
            if r.at < first_by_writer.get(r.writer, float("inf")):
                first_by_writer[r.writer] = r.at
    heals = []
    for fault in faults:
        flowing: float | None = None
        if fault.kind == "loop":
            times = []
            for w in writers:
                if _successor(w.identity, fault) and w.identity.incarnation in first_by_writer:
                    times.append(first_by_writer[w.identity.incarnation])
            for reader in readers:
                if _successor(reader.identity, fault) and reader.receipts:
                    times.append(reader.receipts[0].at)
            flowing = min(times) - fault.at if times else None
        elif fault.kind == "hub" and fault.replaced_at is not None:
            flowing = _hub_flowing(fault, fault.replaced_at, readers)
        replaced = None if fault.replaced_at is None else fault.replaced_at - fault.at
        heals.append(Heal(fault, replaced, flowing))
    return heals


def _hub_flowing(fault: Fault, replaced_at: float, readers: Sequence[ReaderLog]) -> float | None:
    """Every queue has delivered a message written after the fault, once the new hub ran: a hub
    deleted, even with no grace, may serve on for a moment, but not once its successor is
    ready (the loops reach the hub through its Service, which lists ready pods only)."""
    first: dict[str, float] = {}
    queues: set[str] = set()
    for reader in readers:
        for r in reader.receipts:
            queues.add(r.queue)
            after = r.stamped_at > fault.at and r.at >= replaced_at
            if after and r.at < first.get(r.queue, float("inf")):
                first[r.queue] = r.at
    if not queues or set(first) != queues:
        return None
    return max(first.values()) - fault.at


# -- memory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryVerdict:
    """One process incarnation's resident memory after its warm-up."""

    process: str
    key: str
    samples: int
    start_bytes: int
    end_bytes: int
    span_seconds: float
    #: Long enough after its warm-up to be judged against the goal.
    judged: bool

    @property
    def growth(self) -> float:
        return self.end_bytes / self.start_bytes - 1 if self.start_bytes else 0.0


def memory_verdicts(
    samples: Sequence[MemorySample], warmup_seconds: float, min_span_seconds: float
) -> list[MemoryVerdict]:
    """Per process incarnation: the mean of its first three samples after ``warmup_seconds``
    from its first sample, against the mean of its last three; judged when those are at least
    ``min_span_seconds`` apart."""
    series: dict[tuple[str, str], list[MemorySample]] = defaultdict(list)
    for s in samples:
        series[(s.process, s.key)].append(s)
    verdicts = []
    for (process, key), points in series.items():
        points.sort(key=lambda s: s.at)
        settled = [p for p in points if p.at >= points[0].at + warmup_seconds]
        if len(settled) < 2:
            settled = points[-2:] if len(points) >= 2 else points
        head, tail = settled[:3], settled[-3:]
        span = tail[-1].at - head[0].at
        verdicts.append(
            MemoryVerdict(
                process,
                key,
                len(points),
                int(statistics.fmean(p.rss_bytes for p in head)),
                int(statistics.fmean(p.rss_bytes for p in tail)),
                span,
                judged=len(settled) >= 6 and span >= min_span_seconds,
            )
        )
    verdicts.sort(key=lambda v: (v.process, -v.span_seconds))
    return verdicts


# -- a run ---------------------------------------------------------------------------------


@dataclass
class Goals:
    """What a run must show to pass."""

    #: Memory growth after the warm-up, at most (0.05: 5 %).
    memory_growth: float = 0.05


@dataclass
class RunSummary:
    """Everything the report says about one run (a host, a duration, a workload)."""

    name: str
    description: str
    started_at: float
    traffic_seconds: float
    target_per_second: float
    seed: int
    messages: Messages
    heals: list[Heal]
    memory: list[MemoryVerdict]
    samples: list[MemorySample]
    warmup_seconds: float
    min_span_seconds: float
    goals: Goals = field(default_factory=Goals)
    notes: list[str] = field(default_factory=list)

    @property
    def memory_failures(self) -> list[MemoryVerdict]:
        return [v for v in self.memory if v.judged and v.growth >= self.goals.memory_growth]

    @property
    def failures(self) -> list[str]:
        """Why the run fails; empty when it passes."""
        why = []
        lost = self.messages.total("lost")
        if lost:
            why.append(f"{lost} acknowledged message(s) lost")
        phantom = self.messages.total("phantom")
        if phantom:
            why.append(f"{phantom} message(s) received that no writer wrote")
        if not self.messages.total("received"):
            why.append("no message received at all")
        for heal in self.heals:
            fault = heal.fault
            if heal.healed_seconds is None:
                why.append(f"{fault.kind} fault on {fault.target} never healed ({fault.error})")
        for v in self.memory_failures:
            why.append(f"{v.process} ({v.key}) grew {v.growth:.1%} after its warm-up")
        return why
