"""One way to install Debian packages: refresh missing or stale lists, wait for dpkg, retry once."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["AptError", "add_cli_arguments", "cli_main", "install", "installed", "update"]

LISTS = Path("/var/lib/apt/lists")
# Another apt (a concurrent set-up) may hold the dpkg lock: wait for it, in seconds.
LOCK_WAIT_SECONDS = 900
LOCK_WAIT = ["-o", f"DPkg::Lock::Timeout={LOCK_WAIT_SECONDS}"]


class AptError(RuntimeError):
    """apt-get could not do it here; the message is one line naming the packages and why."""


def _log(message: str) -> None:
    print(f"[hack.k8s.apt] {message}", file=sys.stderr, flush=True)


def why_impossible() -> str | None:
    """Why this process cannot install Debian packages (one line), or None when it can."""
    if not Path("/etc/debian_version").exists():
        return "not Debian"
    if shutil.which("apt-get") is None:
        return "no apt-get"
    if os.geteuid() != 0:
        return "not root"
    return None


def installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.stdout == "install ok installed"


def _has_lists() -> bool:
    """False on a new machine whose package lists were never fetched (or were emptied)."""
    return any(LISTS.glob("*_Packages*"))


def _apt(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", *LOCK_WAIT, *args]
    _log("$ " + " ".join(command))
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    lines = [*result.stdout.splitlines()[-3:], *result.stderr.splitlines()[-3:]]
    return " | ".join(line.strip() for line in lines if line.strip()) or "(no output)"


def update() -> None:
    """`apt-get update`; AptError when it fails (no network to the mirror, a broken source)."""
    result = _apt(["update", "-q"])
    if result.returncode != 0:
        raise AptError(f"apt-get update exited {result.returncode}: {_tail(result)}")


def install(packages: Sequence[str]) -> list[str]:
    """Install the packages not installed yet; returns those it installed.

    The lists are fetched first when there are none, and fetched again (then one retry) when
    the install fails, which is how a stale list shows ("Unable to locate package", a 404).
    """
    missing = [p for p in dict.fromkeys(packages) if not installed(p)]
    if not missing:
        return []
    why = why_impossible()
    if why is not None:
        raise AptError(f"cannot install {' '.join(missing)} ({why})")
    if not _has_lists():
        update()
    args = ["install", "-y", "-q", "--no-install-recommends", *missing]
    result = _apt(args)
    if result.returncode != 0:
        _log(f"install failed ({_tail(result)}); refreshing the package lists and retrying once")
        update()
        result = _apt(args)
    if result.returncode != 0:
        raise AptError(
            f"apt-get install {' '.join(missing)} exited {result.returncode}: {_tail(result)}"
        )
    return missing


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packages", nargs="+", help="Debian package names")
    parser.add_argument(
        "--best-effort",
        action="store_true",
        help="when they cannot be installed here, print why and exit 0 instead of 1",
    )


def cli_main(args: argparse.Namespace) -> int:
    try:
        done = install(args.packages)
    except AptError as exc:
        print(exc)
        return 0 if args.best_effort else 1
    wanted = " ".join(args.packages)
    print(f"installed {' '.join(done)}" if done else f"already installed: {wanted}")
    return 0
