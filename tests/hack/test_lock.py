"""The machine-wide lock: released on every exit, never waited on by its own process, and a
busy lock fails within its stated time naming the process that holds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.k8s._lock import LockBusyError, LockReenteredError, machine_lock

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from hack.k8s._lock import machine_lock
    with machine_lock(Path(sys.argv[1]), timeout=5, what="the holder test"):
        print("held", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    """
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def other_holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another process holding tmp_path/x.lock until we write a line to its stdin."""
    path = tmp_path / "x.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        assert proc.stdout.readline() == "held\n"
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=30)


def test_a_second_acquisition_in_the_same_process_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with (
        machine_lock(path, timeout=600, what="the outer block"),
        pytest.raises(LockReenteredError, match="the outer block"),
        machine_lock(path, timeout=600, what="the inner block"),
    ):
        raise AssertionError("entered a lock this process already holds")
    # The failed inner attempt did not release or poison the outer one's record.
    with machine_lock(path, timeout=0, what="afterwards"):
        pass


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with pytest.raises(ZeroDivisionError), machine_lock(path, timeout=0, what="a failing block"):
        1 / 0  # noqa: B018
    # Free again, for this process and for another one.
    with machine_lock(path, timeout=0, what="afterwards"):
        pass
    probe = subprocess.run(
        [sys.executable, "-c", HOLDER, str(path)],
        input="\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    assert probe.stdout.splitlines() == ["held", "released"]


def test_a_busy_lock_names_its_holder_and_gives_up_in_the_stated_time(
    other_holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    path, proc = other_holder
    with (
        pytest.raises(LockBusyError) as caught,
        machine_lock(path, timeout=0.5, what="the waiting test"),
    ):
        raise AssertionError("acquired a lock another process holds")
    message = str(caught.value)
    assert f"PID {proc.pid}" in message, message
    assert "held by" in message, message
    assert "the holder test" in message, message
    assert "not free within 0.5 s for the waiting test" in message, message
    assert sys.executable in message, message  # the holder's command line
    assert isinstance(caught.value, TimeoutError)


def test_the_lock_is_free_once_its_holder_lets_go(
    other_holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    path, proc = other_holder
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "released\n"
    with machine_lock(path, timeout=0, what="the next holder"):
        pass
