"""`python -m soak cluster|local --minutes N --out DIR`: a bounded soak with chaos, a report in
DIR, and exit status 1 when an acknowledged message was lost or memory grew past its goal."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .accounting import RunSummary
from .chaos import ChaosSettings, log
from .report import write
from .runner import RUN_FILE, Host, RunSettings, SoakError, soak, summarize
from .workload import WorkloadSettings

__all__ = ["main"]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    p.add_argument(
        "host",
        choices=["cluster", "local", "report"],
        help="cluster: the project's single-node Kubernetes; local: `ostinato run` with process "
        "loops, then distributed mode (hub + loop processes), half the minutes each; report: "
        "count the runs already in --out again and write their report",
    )
    p.add_argument(
        "--minutes",
        type=_positive,
        default=None,
        help="how long the writers write (default: 30 on the cluster, 5 locally)",
    )
    p.add_argument("--out", type=Path, default=Path("soak-report"), help="report directory")
    p.add_argument("--seed", type=int, default=1, help="seed of the chaos plan")
    p.add_argument(
        "--rate",
        type=_positive,
        default=WorkloadSettings().messages_per_second,
        help="messages/s end to end while the writers run (default %(default)s)",
    )
    return p


def _run(host: Host, settings: RunSettings, out: Path) -> RunSummary:
    log(f"{host.name}: {settings.traffic_seconds / 60:.1f} min of traffic, files in {out}")
    summary = soak(host, settings, out)
    failures = summary.failures
    log(f"{host.name}: {'PASS' if not failures else 'FAIL: ' + '; '.join(failures)}")
    return summary


def _runs(host: str, minutes: float | None, seed: int, rate: float, out: Path) -> list[RunSummary]:
    """Run the soak on ``host`` (or, for `report`, count the runs in ``out`` again)."""
    workload = WorkloadSettings(messages_per_second=rate)
    if host == "report":
        found = sorted(p.parent for p in out.glob(f"*/{RUN_FILE}"))
        if not found:
            raise SoakError(f"no run in {out} (no */{RUN_FILE})")
        return [summarize(path) for path in found]
    if host == "cluster":
        from .cluster import ClusterHost

        settings = RunSettings(
            traffic_seconds=(minutes or 30.0) * 60,
            workload=workload,
            chaos=ChaosSettings(seed=seed),
        )
        return [_run(ClusterHost(out / "cluster", settings), settings, out / "cluster")]
    from .local import DistributedHost, RunHost

    half = (minutes or 5.0) * 60 / 2
    local = RunSettings(
        traffic_seconds=half,
        workload=workload,
        chaos=ChaosSettings(seed=seed, hub_kills=0, operator_restarts=0),
    )
    runs = [_run(RunHost(out / "local-run", local), local, out / "local-run")]
    distributed = RunSettings(
        traffic_seconds=half,
        workload=workload,
        chaos=ChaosSettings(seed=seed, operator_restarts=0),
    )
    path = out / "local-distributed"
    runs.append(_run(DistributedHost(path, distributed), distributed, path))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out: Path = args.out.resolve()
    started = time.monotonic()
    try:
        runs = _runs(args.host, args.minutes, args.seed, args.rate, out)
    except SoakError as exc:
        print(f"python -m soak {args.host}: {exc}", file=sys.stderr)
        return 1
    page = write(runs, out)
    log(f"report: {page} ({time.monotonic() - started:.0f} s in all)")
    print(page)
    return 1 if any(r.failures for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
