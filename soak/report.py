"""The soak's report: a markdown page of tables (messages, faults and their heal times, memory)
and a PNG per run of throughput and memory over time with the faults marked."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from .accounting import Heal, RunSummary

__all__ = ["plot", "render", "write"]

MIB = 2**20
FAULT_COLOURS = {"loop": "tab:orange", "hub": "tab:red", "operator": "tab:purple"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _messages(run: RunSummary) -> list[str]:
    m = run.messages
    head = (
        "| queue | group | written | acked | received | lost (acked) | unacked, lost "
        "| unacked, received | duplicated (redelivered) | out of order | phantom |"
    )
    lines = [head, "|" + "---|" * 11]
    for g in m.groups:
        group = "all readers" if g.group == "*" else g.group
        lines.append(
            f"| {g.queue} | {group} | {g.written:,} | {g.acked:,} | {g.received:,} | {g.lost:,} "
            f"| {g.unacked_lost:,} | {g.unacked_received:,} "
            f"| {g.duplicated:,} ({g.duplicated_redelivered:,}) | {g.out_of_order:,} "
            f"| {g.phantom:,} |"
        )

    def total(name: str) -> str:
        return f"{m.total(name):,}"

    lines.append(
        f"| **all** | | **{total('written')}** | **{total('acked')}** | **{total('received')}** "
        f"| **{total('lost')}** | {total('unacked_lost')} | {total('unacked_received')} "
        f"| {total('duplicated')} ({total('duplicated_redelivered')}) "
        f"| {total('out_of_order')} | {total('phantom')} |"
    )
    rate = m.total("received") / m.seconds if m.seconds else 0.0
    lines += [
        "",
        f"End to end: **{m.total('received'):,} messages** received (each a sequence number "
        f"in one consumer group) from the first write to the last receipt, {m.seconds:.0f} s: "
        f"**{rate:.0f} messages/s** (target {run.target_per_second:.0f}/s while the writers run, "
        f"{run.traffic_seconds / 60:.1f} min). Writer incarnations: "
        f"{m.writer_incarnations}; reader incarnations: {m.reader_incarnations}.",
    ]
    examples = [e for g in m.groups for e in g.lost_examples]
    if examples:
        shown = ", ".join(f"{w}#{s}" for w, s in examples[:10])
        lines += ["", f"Lost, first examples (writer incarnation#seq): {shown}"]
    return lines


def _faults(run: RunSummary) -> list[str]:
    if not run.heals:
        return ["No faults were injected."]
    lines = [
        "| # | at | fault | target | how | replaced (s) | flowing again (s) | healed (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, heal in enumerate(run.heals, 1):
        f = heal.fault
        offset = f.at - run.started_at
        lines.append(
            f"| {i} | +{offset:.0f} s | {f.kind} | {f.target} | {f.how} "
            f"| {_seconds(heal.replaced_seconds)} | {_seconds(heal.flowing_seconds)} "
            f"| {_seconds(heal.healed_seconds)} |"
        )
    lines += ["", *_heal_summary(run.heals)]
    return lines


def _heal_summary(heals: Sequence[Heal]) -> list[str]:
    lines = [
        "| fault | count | replaced: median / max (s) | flowing: median / max (s) "
        "| healed: median / max (s) |",
        "|---|---|---|---|---|",
    ]
    for kind in ("loop", "hub", "operator"):
        mine = [h for h in heals if h.fault.kind == kind]
        if not mine:
            continue

        def spread(values: list[float]) -> str:
            if not values:
                return "-"
            return f"{statistics.median(values):.1f} / {max(values):.1f}"

        replaced = [h.replaced_seconds for h in mine if h.replaced_seconds is not None]
        flowing = [h.flowing_seconds for h in mine if h.flowing_seconds is not None]
        healed = [h.healed_seconds for h in mine if h.healed_seconds is not None]
        lines.append(
            f"| {kind} | {len(mine)} | {spread(replaced)} | {spread(flowing)} | {spread(healed)} |"
        )
    return lines


def _memory(run: RunSummary) -> list[str]:
    lines = [
        f"Goal: after a warm-up of {run.warmup_seconds:.0f} s from its start, a process grows "
        f"less than {run.goals.memory_growth:.0%}; judged for incarnations that lived at least "
        f"{run.min_span_seconds:.0f} s past their warm-up (the others were replaced by faults "
        "too soon to tell). Resident memory (VmRSS) every 10 s.",
        "",
        "| process | incarnations | judged | longest: start MiB | end MiB | growth | over (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = sorted({v.process for v in run.memory})
    for name in names:
        mine = [v for v in run.memory if v.process == name]
        judged = [v for v in mine if v.judged]
        longest = max(mine, key=lambda v: v.span_seconds)
        verdict = f"{longest.growth:+.1%}"
        if longest.judged and longest.growth >= run.goals.memory_growth:
            verdict = f"**{verdict}**"
        lines.append(
            f"| {name} | {len(mine)} | {len(judged)} | {longest.start_bytes / MIB:.1f} "
            f"| {longest.end_bytes / MIB:.1f} | {verdict} | {longest.span_seconds:.0f} |"
        )
    worst = max((v for v in run.memory if v.judged), key=lambda v: v.growth, default=None)
    if worst is not None:
        lines += [
            "",
            f"Largest growth of a judged incarnation: {worst.process} {worst.growth:+.1%} "
            f"over {worst.span_seconds:.0f} s.",
        ]
    return lines


def render(runs: Sequence[RunSummary], images: dict[str, str]) -> str:
    """The markdown page; ``images``: run name -> the PNG's file name beside the page."""
    lines = ["# Soak report", ""]
    for run in runs:
        failures = run.failures
        verdict = "**PASS**" if not failures else "**FAIL**: " + "; ".join(failures)
        lines += [
            f"## {run.name}",
            "",
            run.description,
            "",
            f"Started {_when(run.started_at)}, writers ran {run.traffic_seconds / 60:.1f} min, "
            f"chaos seed {run.seed}. Verdict: {verdict}.",
            "",
            "### Messages",
            "",
            *_messages(run),
            "",
            "### Faults and heal times",
            "",
            "Seconds from the fault: replaced, until its replacement runs (pod Ready, the "
            "new process serving); flowing again, until a message of the replacement (for "
            "the hub: a message written after the fault, on every queue, once the new hub "
            "runs) reaches a reader; healed, both.",
            "",
            *_faults(run),
            "",
            "### Memory",
            "",
            *_memory(run),
            "",
        ]
        if run.notes:
            lines += ["### Notes", "", *(f"- {n}" for n in run.notes), ""]
        if run.name in images:
            lines += [f"![{run.name}: throughput, memory and faults]({images[run.name]})", ""]
    return "\n".join(lines)


def plot(run: RunSummary, path: Path) -> None:
    """Throughput (messages/s received) and each process's memory over time, faults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = run.started_at
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    width = run.messages.bucket_seconds
    xs = [(t - t0) / 60 for t, _ in run.messages.throughput]
    ys = [n / width for _, n in run.messages.throughput]
    top.step(xs, ys, where="post", color="tab:blue", linewidth=1)
    top.axhline(run.target_per_second, color="grey", linestyle=":", linewidth=1)
    top.set_ylabel("messages/s received")
    top.set_title(f"{run.name}: throughput ({width:.0f} s buckets), memory, faults")
    # One line per process incarnation (a restart starts a new one), one colour per process.
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for s in sorted(run.samples, key=lambda s: s.at):
        series.setdefault((s.process, s.key), []).append(((s.at - t0) / 60, s.rss_bytes / MIB))
    names = sorted({name for name, _ in series})
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    labelled: set[str] = set()
    for (name, _key), points in sorted(series.items(), key=lambda item: item[1][0][0]):
        label = name if name not in labelled else None
        labelled.add(name)
        xs_, ys_ = [p[0] for p in points], [p[1] for p in points]
        bottom.plot(xs_, ys_, color=colours[name], label=label, linewidth=1)
    bottom.set_ylabel("resident memory (MiB)")
    bottom.set_xlabel("minutes since start")
    seen: set[str] = set()
    for heal in run.heals:
        f = heal.fault
        x = (f.at - t0) / 60
        for axis in (top, bottom):
            label = f"{f.kind} fault" if f.kind not in seen and axis is top else None
            axis.axvline(x, color=FAULT_COLOURS[f.kind], alpha=0.6, linewidth=1, label=label)
        seen.add(f.kind)
    top.legend(loc="lower right", fontsize="small")
    bottom.legend(loc="upper left", fontsize="small", ncols=3)
    top.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(runs: Sequence[RunSummary], out: Path) -> Path:
    """report.md and one PNG per run in ``out``; the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for run in runs:
        name = f"{run.name}.png"
        plot(run, out / name)
        images[run.name] = name
    page = out / "report.md"
    page.write_text(render(runs, images))
    return page
