"""Every package install refreshes missing or stale lists itself: a new machine has none."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hack.k8s import apt

# Not a Debian package, so dpkg-query says "not installed" and install() calls apt-get.
PACKAGE = "ostinato-test-no-such-package"
FAKE_APT = """#!/bin/sh
# apt-get as a machine with stale lists answers it: install fails until `update` has run.
echo "$*" >> "{calls}"
case "$*" in
  *" update "*|*" update") touch "{updated}"; exit 0 ;;
  *" install "*) [ -e "{updated}" ] && exit 0
                 echo "E: Unable to locate package {package}" >&2; exit 100 ;;
esac
exit 1
"""


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An apt-get on PATH that records its calls in tmp_path/calls."""
    if apt.why_impossible() not in (None, "no apt-get"):
        pytest.skip(f"apt helper runs only as root on Debian: {apt.why_impossible()}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    script.write_text(
        FAKE_APT.format(calls=tmp_path / "calls", updated=tmp_path / "updated", package=PACKAGE)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "calls"


def _verbs(calls: Path) -> list[str]:
    verbs = []
    for line in calls.read_text().splitlines():
        words = [w for w in line.split() if not w.startswith(("-", "DPkg::"))]
        verbs.append(words[0])
    return verbs


def test_no_lists_means_update_before_the_first_install(
    fake_apt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apt, "LISTS", tmp_path / "empty-lists")
    assert apt.install([PACKAGE]) == [PACKAGE]
    assert _verbs(fake_apt) == ["update", "install"]


def test_a_package_not_located_refreshes_the_lists_and_retries_once(
    fake_apt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").touch()
    monkeypatch.setattr(apt, "LISTS", lists)
    assert apt.install([PACKAGE]) == [PACKAGE]
    assert _verbs(fake_apt) == ["install", "update", "install"]


def test_a_failure_after_the_retry_is_one_line_naming_the_packages(
    fake_apt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apt, "LISTS", tmp_path / "empty-lists")
    monkeypatch.setattr(apt, "update", lambda: None)  # lists that never get the package
    with pytest.raises(apt.AptError) as caught:
        apt.install([PACKAGE])
    message = str(caught.value)
    assert "\n" not in message
    assert PACKAGE in message, message
    assert "Unable to locate package" in message, message


def test_installed_packages_are_not_installed_again(fake_apt: Path) -> None:
    assert apt.install(["dpkg"]) == []
    assert not fake_apt.exists()
