"""docs/kubernetes.md as a user follows it: its install, apply, wait, get, plugin
(`kubectl ostinato`), patch, delete and uninstall commands, read from the page itself and run as
written (the release `ostinato` in `ostinato-system` included), so the page and what works
cannot drift apart.

The one addition is the image: the page installs the published image, the test the one built
from this checkout (`--set image.repository=... --set image.tag=...`, appended to the install).
Commands whose output the page describes are checked for it; a command this test does not know
fails the test, so a change to the page is a change to this test.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._kube import Kube, fetch, poll
from .conftest import IMAGE_REPOSITORY, IMAGE_TAG, WEBHOOK_CONFIG

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "kubernetes.md"
RELEASE, NAMESPACE = "ostinato", "ostinato-system"
# (section heading, index of the fenced block in it): the walk a new user takes, in order.
WALK = [
    ("Install the operator", 0),
    ("Apply a Workflow and wait for it", 0),
    ("The daily verbs: `kubectl ostinato`", 0),
    ("Read the status", 0),
    ("Pause, resume, stop", 0),
    ("Pause, resume, stop", 1),
    ("Pause, resume, stop", 2),  # the control token
    ("Pause, resume, stop", 3),  # delete
    ("Install the operator", 2),  # uninstall
]

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def blocks(section: str) -> list[list[str]]:
    """The fenced blocks under `## section`, as lists of their lines."""
    text = PAGE.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match is not None, f"{PAGE.name} has no section {section!r}"
    return [
        b.splitlines() for b in re.findall(r"^```[a-z]*\n(.*?)^```", match.group(1), re.S | re.M)
    ]


def commands(section: str, index: int) -> list[str]:
    """The kubectl and helm command lines of one block, comments and continuations resolved."""
    found = blocks(section)
    assert index < len(found), f"{section!r} has {len(found)} blocks, the test walks block {index}"
    joined = "\n".join(found[index]).replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] in ("kubectl", "helm"):
            lines.append(shlex.join(words))
    assert lines, f"block {index} of {section!r} has no command"
    return lines


class User:
    """Runs the page's lines as a user's shell would, against the cluster under test."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        #: Seconds each command took, in order: the figures a user meets (pytest -s prints them).
        self.took: list[tuple[str, float]] = []

    def run(self, line: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return self._run(line, check)
        finally:
            self.took.append((line, time.monotonic() - started))

    def _run(self, line: str, check: bool) -> subprocess.CompletedProcess[str]:
        words = shlex.split(line)
        if "|" in words:  # `kubectl ... | base64 -d`: the one pipe the page has
            cut = words.index("|")
            assert words[cut + 1 :] == ["base64", "-d"], line
            first = self._run(shlex.join(words[:cut]), check)
            decoded = base64.b64decode(first.stdout).decode() if first.returncode == 0 else ""
            return subprocess.CompletedProcess(words, first.returncode, decoded, first.stderr)
        result = subprocess.run(
            self._argv(words), cwd=ROOT, env=self._env(), capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"`{line}` exited {result.returncode}: {result.stderr}"
        return result

    def _argv(self, words: list[str]) -> list[str]:
        binary = {"kubectl": self.kube.kubectl_bin, "helm": self.kube.helm_bin}[words[0]]
        return [str(binary), *words[1:]]

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kube.kubeconfig),
            "HELM_CACHE_HOME": str(self.kube.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.kube.helm_home / "config"),
            "HELM_DATA_HOME": str(self.kube.helm_home / "data"),
            # kubectl finds its plugins on the PATH: `kubectl-ostinato` is in this interpreter's
            # bin directory, where `pip install 'ostinato[operator]'` put it.
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }

    def first_line(self, line: str, then: Callable[[str], object] | None = None) -> str:
        """A command that runs until stopped (`logs -f`, `console`): its first line of output
        (read aside, so a silent command fails the test rather than hangs it), given to `then`
        while the command still runs; then it is stopped."""
        started = time.monotonic()
        process = subprocess.Popen(
            self._argv(shlex.split(line)), cwd=ROOT, env=self._env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=120)
            if then is not None:
                then(first)
            return first
        except queue.Empty:
            raise AssertionError(f"`{line}` said nothing within 120 s") from None
        finally:
            process.terminate()
            process.wait(timeout=30)
            self.took.append((line, time.monotonic() - started))

    def until(self, line: str, ok: Callable[[str], bool], what: str) -> str:
        """Run `line` until its output satisfies `ok` (the page says what to expect)."""
        last: list[str] = []

        def probe() -> str | None:
            result = self.run(line, check=False)
            last[:] = [result.stdout + result.stderr]
            return result.stdout if result.returncode == 0 and ok(result.stdout) else None

        return poll(probe, timeout=240, what=what, every=1.0, show=lambda: last[0] if last else "")


def _patch(op: str, path: str, value: object) -> str:
    """A `kubectl patch owf counter` line as the page writes it."""
    body = json.dumps(
        [{"op": op, "path": path, "value": value}] if op else value, separators=(",", ":")
    )
    kind = "json" if op else "merge"
    return f"kubectl patch owf counter --type={kind} -p {shlex.quote(body)}"


def _norm(line: str) -> str:
    """One spelling per command line (quotes as shlex.join puts them), as commands() gives."""
    return shlex.join(shlex.split(line))


READER_STATE = _norm("kubectl get owf counter -o jsonpath='{.status.loops[1].state}{\"\\n\"}'")
LOOPS = "app.kubernetes.io/component=loop"
NOTHING_LEFT = "kubectl get all,cm,secret,pvc,netpol -l ostinato.dev/workflow=counter"
PAUSE = _patch("replace", "/spec/loops/1/state", "paused")
RESUME = _patch("replace", "/spec/loops/1/state", "running")
STOP_ALL = _patch("", "", {"spec": {"state": "stopped"}})
RUN_ALL = _patch("", "", {"spec": {"state": "running"}})
SCALE = _patch("replace", "/spec/loops/1/replicas", 3)
UNINSTALL = "helm uninstall ostinato -n ostinato-system"
TOKEN = _norm(
    "kubectl get secret counter-curve -o jsonpath='{.data.OSTINATO_CONTROL_TOKEN}' | base64 -d"
)
CONTROL = "kubectl exec deploy/counter-hub -- ostinato control --url http://127.0.0.1:8080 running"
# The plugin's block, run as written (after the apply: the counter is Ready).
P_GET = "kubectl ostinato get counter"
P_LIST = "kubectl ostinato get -o yaml"
P_PAUSE = "kubectl ostinato pause counter reader --wait"
P_RESUME = "kubectl ostinato resume counter reader --wait --timeout 60"
P_STOP = "kubectl ostinato stop counter"
P_RUN = "kubectl ostinato resume counter"
P_SCALE = "kubectl ostinato scale counter reader --replicas 2"
P_LOGS = "kubectl ostinato logs counter reader --since 5m"
P_FOLLOW = "kubectl ostinato logs counter -f --node got"
P_VALIDATE = "kubectl ostinato validate examples/k8s-counter.yaml"
P_CONSOLE = "kubectl ostinato console counter"
PLUGIN = (P_GET, P_LIST, P_PAUSE, P_RESUME, P_STOP, P_RUN, P_SCALE, P_LOGS, P_FOLLOW)
PLUGIN += (P_VALIDATE, P_CONSOLE)
# Every command of the walk; one the page gains or changes fails the test until it is added.
KNOWN = {
    _norm(line)
    for line in (
        "helm install ostinato helm/ostinato --namespace ostinato-system --create-namespace",
        "kubectl -n ostinato-system rollout status deployment/ostinato",
        "kubectl get crd workflows.ostinato.dev",
        "kubectl apply -f examples/k8s-counter.yaml",
        "kubectl wait --for=condition=Ready workflow/counter --timeout=180s",
        "kubectl get owf counter -o wide",
        "kubectl get owf counter -o jsonpath='{.status.phase} {.status.ready}{\"\\n\"}'",
        "kubectl get owf counter -o jsonpath='{range .status.loops[*]}{.name} {.state} "
        '{.iterations}{"\\n"}{end}\'',
        "kubectl get owf counter -o jsonpath='{range .status.queues[*]}{.name} "
        'depth={.depth}{"\\n"}{end}\'',
        "kubectl get owf counter -o jsonpath='{range .status.conditions[*]}{.type}={.status} "
        '{.reason}: {.message}{"\\n"}{end}\'',
        "kubectl describe owf counter",
        PAUSE,
        READER_STATE,
        RESUME,
        STOP_ALL,
        RUN_ALL,
        SCALE,
        TOKEN,
        CONTROL,
        *PLUGIN,
        "kubectl delete owf counter",
        NOTHING_LEFT,
        UNINSTALL,
    )
}


def _no_other_operator(kube: Kube) -> None:
    """The page installs a cluster-wide operator: it must be the only one acting."""
    releases = kube.helm("list", "--all-namespaces", "-q", check=False).stdout.split()
    if releases:
        pytest.skip(f"another release of the chart is installed ({releases}): it would compete")


@pytest.fixture
def user(kube: Kube) -> Iterator[User]:
    _no_other_operator(kube)
    person = User(kube)
    try:
        yield person
    finally:
        # Whatever step failed, leave the cluster as the page's last block does.
        kube.kubectl("delete", "owf", "counter", "-n", "default", "--ignore-not-found", check=False)
        kube.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        kube.kubectl(
            "delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--ignore-not-found",
            check=False,
        )  # fmt: skip
        kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", check=False)


def _pods(kube: Kube, selector: str) -> list[dict[str, Any]]:
    got = kube.get("pods", "-n", "default", "-l", f"ostinato.dev/workflow=counter,{selector}")
    return [p for p in got["items"] if not p["metadata"].get("deletionTimestamp")]


def _phase(kube: Kube) -> str | None:
    wf = kube.get("workflow", "counter", "-n", "default")
    return ((wf or {}).get("status") or {}).get("phase")


def _hub_uids(kube: Kube) -> list[str]:
    return [p["metadata"]["uid"] for p in _pods(kube, "app.kubernetes.io/component=hub")]


def _left_behind(kube: Kube) -> list[str]:
    """What the operator made outside Helm and still exists after the uninstall."""
    left = []
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        if kube.get(kind, WEBHOOK_CONFIG) is not None:
            left.append(f"{kind}/{WEBHOOK_CONFIG}")
    leases = kube.get("lease", "-n", NAMESPACE) or {"items": []}
    left += [f"lease/{item['metadata']['name']}" for item in leases["items"]]
    return left


def _reader_state(user: User) -> str:
    got = user.run("kubectl get owf counter -o jsonpath='{.status.loops[1].state}'")
    return got.stdout.strip()


def _plugin_line(user: User, line: str) -> None:
    """One line of the plugin's block, and what the page says of it."""
    kube = user.kube
    if line == P_GET:  # "a tree: loops, their nodes, queues, conditions"
        tree = user.until(line, lambda out: "loop reader: running" in out, "the reader running")
        assert "node got: " in tree, tree
        assert "queue numbers: depth " in tree, tree
        assert "Ready=True" in tree, tree
    elif line == P_LIST:  # "every Workflow of the namespace"
        items = yaml.safe_load(user.run(line).stdout)["items"]
        assert [wf["metadata"]["name"] for wf in items] == ["counter"]
    elif line == P_PAUSE:  # "returns once the status shows reader paused"
        user.run(line)
        assert _reader_state(user) == "paused"
    elif line == P_RESUME:
        user.run(line)
        assert _reader_state(user) == "running"
    elif line == P_STOP:  # "the whole workflow"
        user.run(line)
        poll(
            lambda: True if _phase(kube) == "Stopped" and not _pods(kube, LOOPS) else None,
            timeout=240, what="phase Stopped and no loop pods", every=1.0,
        )  # fmt: skip
    elif line == P_RUN:
        user.run(line)
        user.until(
            "kubectl get owf counter -o jsonpath='{.status.phase}'",
            lambda out: out.strip() == "Running",
            "phase Running again",
        )
    elif line == P_SCALE:
        user.run(line)
        poll(
            lambda: True if len(_pods(kube, "ostinato.dev/loop=reader")) == 2 else None,
            timeout=240, what="two reader pods", every=1.0,
        )  # fmt: skip
    elif line == P_LOGS:  # "every reader pod, interleaved by time"
        user.until(line, lambda out: "[reader/0 got] " in out, "the reader's logged numbers")
    elif line == P_FOLLOW:  # "the records of node got"
        first = user.first_line(line)
        assert re.match(r"\[reader/\d got\] ", first), first
    elif line == P_VALIDATE:  # "ostinato validate, then a dry run on the cluster"
        out = user.run(line).stdout
        assert "the cluster accepts workflow 'counter' in namespace 'default'" in out, out
    elif line == P_CONSOLE:  # "port-forward to the hub; prints the console's URL"

        def hub_status(first: str) -> None:
            url = first.split()[0]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/console/", url), first
            page = poll(lambda: fetch(url), timeout=60, what="the hub's console page")
            assert b"<title>ostinato console</title>" in page
            status = fetch(url.replace("/console/", "/status"))
            assert status is not None
            assert json.loads(status)["workflow"] == "counter"

        user.first_line(line, then=hub_status)
    else:
        raise AssertionError(f"no check for {line}")


def test_the_kubernetes_page_works_as_written(user: User) -> None:
    kube = user.kube
    hub: list[str] = []
    walked: set[str] = set()
    for section, index in WALK:
        for line in commands(section, index):
            walked.add(line)
            assert line in KNOWN, (
                f"{PAGE.name}, {section!r}: a command the test does not know: {line}"
            )
            if line.startswith("helm install"):
                image = f"{IMAGE_REPOSITORY} --set image.tag={IMAGE_TAG}"
                user.run(
                    f"{line} --set image.repository={image} --set image.pullPolicy=IfNotPresent"
                )
            elif line == READER_STATE:  # "paused, once it took effect"
                user.until(line, lambda out: out.strip() == "paused", "the reader paused")
            elif line == NOTHING_LEFT:  # "nothing left"
                user.until(line, lambda out: out.strip() == "", "nothing of counter left")
            elif line == TOKEN:  # the token, printed
                token = user.run(line).stdout
                assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), "not a control token"
            elif line == CONTROL:  # "every loop's desired state, set to what the spec says"
                table = user.run(line).stdout.split()
                assert table == ["LOOP", "DESIRED", "writer", "running", "reader", "running"]
            elif line in PLUGIN:
                _plugin_line(user, line)
            else:
                if line == SCALE:
                    hub[:] = _hub_uids(kube)
                user.run(line)
            # What the page says follows, seen with the test's own reads.
            if line == RESUME:
                user.until(
                    "kubectl get owf counter -o jsonpath='{.status.loops[1].state}'",
                    lambda out: out.strip() == "running",
                    "the reader running again",
                )
            elif line == STOP_ALL:  # "stopped removes the loop pods; the hub stays"
                poll(
                    lambda: True if _phase(kube) == "Stopped" and not _pods(kube, LOOPS) else None,
                    timeout=240, what="phase Stopped and no loop pods", every=1.0,
                )  # fmt: skip
                assert _hub_uids(kube), "the hub went with the loops"
            elif line == RUN_ALL:
                user.until(
                    "kubectl get owf counter -o jsonpath='{.status.phase}'",
                    lambda out: out.strip() == "Running",
                    "phase Running again",
                )
            elif line == SCALE:  # "replaces nothing ... the hub goes on"
                poll(
                    lambda: True
                    if len(_pods(kube, "ostinato.dev/loop=reader")) == 3
                    else None,
                    timeout=240, what="three reader pods", every=1.0,
                )  # fmt: skip
                assert _hub_uids(kube) == hub, "scaling a loop restarted the hub"
            elif line == UNINSTALL:  # "nothing else stays"
                poll(
                    lambda: True if not _left_behind(kube) else None,
                    timeout=120, what="no Lease and no webhook configuration left", every=1.0,
                    show=lambda: str(_left_behind(kube)),
                )  # fmt: skip
    print("\n" + "\n".join(f"{secs:6.1f} s  {line}" for line, secs in user.took if secs >= 1))
    # Every command the test knows is still on the page (none was dropped from it unnoticed).
    assert walked == KNOWN, sorted(KNOWN ^ walked)
