"""`kubectl ostinato` against the real control plane: the tree of `get`, pause/resume/stop and
scale by loop name, wrong names, a concurrent edit, `--wait`, and the kubeconfig's namespaces.

No operator runs here: the tests write the Workflow's status themselves (as the operator would),
so what the plugin reads and waits for is exactly known."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.k8s._util import wait_until
from hack.k8s.controlplane import ControlPlane
from ostinato_operator import GROUP, PLURAL, VERSION
from ostinato_operator._plugin import _control, main

from .conftest import Installed, run_operator
from .support import example

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


@pytest.fixture
def kubeconfig(installed: Installed, namespace: str, tmp_path: Path) -> Path:
    """The admin's kubeconfig with its context's namespace set to the test's, and a second
    context `elsewhere` whose namespace is `default`."""
    config = yaml.safe_load(installed.plane.kubeconfig.read_text())
    context = config["contexts"][0]
    context["context"]["namespace"] = namespace
    other = copy.deepcopy(context)
    other["name"] = "elsewhere"
    other["context"]["namespace"] = "default"
    config["contexts"].append(other)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


class Plugin:
    """`kubectl ostinato` run in-process with a kubeconfig, as kubectl would run it."""

    def __init__(self, kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.kubeconfig = kubeconfig
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--kubeconfig", str(self.kubeconfig), *args])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def plugin(kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> Plugin:
    return Plugin(kubeconfig, capsys)


def _custom(plane: ControlPlane) -> Any:
    from kubernetes.client import CustomObjectsApi

    return CustomObjectsApi(plane.api_client())


def _create(plane: ControlPlane, namespace: str, name: str = "counter") -> dict[str, Any]:
    doc = example("k8s-counter.yaml")
    doc["metadata"] = {"name": name, "namespace": namespace}
    created: dict[str, Any] = _custom(plane).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, doc
    )
    return created


def _read(plane: ControlPlane, namespace: str, name: str = "counter") -> dict[str, Any]:
    got: dict[str, Any] = _custom(plane).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return got


def _loop_status(
    name: str, desired: str, state: str, ready: tuple[int, int] = (1, 1)
) -> dict[str, Any]:
    return {
        "name": name,
        "desiredState": desired,
        "state": state,
        "replicasReady": ready[0],
        "replicas": ready[1],
        "pods": ready[1],
        "iterations": 1200,
        "iterationsPerSecond": 50.0,
        "errors": 2,
        "lastError": "ValueError: bad number" if name == "reader" else None,
    }


def _write_status(
    plane: ControlPlane,
    namespace: str,
    generation: int,
    reader: tuple[str, str],
    writer: tuple[str, str] = ("running", "running"),
    reader_ready: tuple[int, int] = (1, 1),
) -> None:
    """The status the operator would write: each loop's (desired, reported) state, and the
    reader's replicas ready/desired."""
    status = {
        "observedGeneration": generation,
        "phase": "Running",
        "ready": "2/2",
        "iterationsPerSecond": 100.0,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AllLoopsReady",
                "message": "every loop is running",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "loops": [_loop_status("writer", *writer), _loop_status("reader", *reader, reader_ready)],
        "nodes": [
            {
                "loop": "reader",
                "name": "store",
                "health": "retrying",
                "calls": 10,
                "errors": 2,
                "lastError": "sqlite3.OperationalError: database is locked",
            },
        ],
        "queues": [{"name": "numbers", "depth": 17, "enqueued": 1217, "delivered": 1200}],
    }
    _custom(plane).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "counter", {"status": status}
    )


def _states(workflow: dict[str, Any]) -> dict[str, str | None]:
    return {lp["name"]: lp.get("state") for lp in workflow["spec"]["loops"]}


def test_get_shows_the_tree_and_scripts_get_json_and_yaml(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    plane = installed.plane
    _create(plane, namespace)
    code, out, _ = plugin("get")  # the context's namespace: no -n
    assert code == 0
    assert f"counter ({namespace}): no status yet" in out
    _write_status(plane, namespace, 1, reader=("paused", "running"))

    code, out, err = plugin("get", "counter")
    assert code == 0, err
    assert f"counter ({namespace}): Running, loops 2/2 ready, 100.0/s" in out
    assert "loop writer: running, replicas 1/1 ready, 50.0/s, 1200 iterations, 2 errors" in out
    assert "loop reader: running (desired paused)" in out
    assert "last error: ValueError: bad number" in out
    assert "node store: retrying, 10 calls, 2 errors, last error: sqlite3.OperationalError" in out
    # capacity: the spec's; the pace: its writers' and readers' iterations per second
    assert (
        "queue numbers: depth 17/200, enqueued 1217, delivered 1200, acknowledged 0; "
        "writers 50.0/s (writer), readers 50.0/s (reader)"
    ) in out
    assert "Ready=True AllLoopsReady: every loop is running" in out

    code, out, _ = plugin("get", "counter", "-o", "json")
    assert code == 0
    assert json.loads(out)["status"]["queues"][0]["depth"] == 17
    code, out, _ = plugin("get", "-o", "yaml")
    assert code == 0
    assert [wf["metadata"]["name"] for wf in yaml.safe_load(out)["items"]] == ["counter"]


def test_pause_resume_stop_and_scale_by_loop_name(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    plane = installed.plane
    _create(plane, namespace)
    code, out, err = plugin("pause", "counter", "reader")
    assert code == 0, err
    assert "reader paused" in out
    assert _states(_read(plane, namespace)) == {"writer": None, "reader": "paused"}

    assert plugin("pause", "counter", "writer", "reader")[0] == 0
    assert _states(_read(plane, namespace)) == {"writer": "paused", "reader": "paused"}
    assert plugin("resume", "counter", "writer", "reader")[0] == 0
    assert _states(_read(plane, namespace)) == {"writer": "running", "reader": "running"}

    assert plugin("stop", "counter")[0] == 0  # no loop named: the whole workflow
    assert _read(plane, namespace)["spec"]["state"] == "stopped"
    assert plugin("resume", "counter")[0] == 0
    assert _read(plane, namespace)["spec"]["state"] == "running"

    code, out, err = plugin("scale", "counter", "reader", "--replicas", "3")
    assert code == 0, err
    loops = _read(plane, namespace)["spec"]["loops"]
    assert [lp.get("replicas") for lp in loops] == [None, 3]


def test_wrong_names_say_which_and_change_nothing(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    plane = installed.plane
    version = _create(plane, namespace)["metadata"]["resourceVersion"]
    code, out, err = plugin("pause", "counter", "reader", "raeder")
    assert code == 1
    assert err == (
        "kubectl ostinato: workflow 'counter' has no loop 'raeder' (its loops: writer, reader)\n"
    )
    assert out == ""
    code, _, err = plugin("scale", "counter", "nope", "--replicas", "2")
    assert (code, err.count("\n")) == (1, 1)
    assert "has no loop 'nope'" in err
    code, _, err = plugin("resume", "countr")
    assert code == 1
    assert err == f"kubectl ostinato: workflow 'countr' not found in namespace '{namespace}'\n"
    code, _, err = plugin("get", "countr")
    assert (code, err.count("\n")) == (1, 1)
    # Refused by the API server's schema: its message, one line, nothing written.
    code, _, err = plugin("scale", "counter", "reader", "--replicas", "5000")
    assert code == 1
    assert err.count("\n") == 1
    assert "replicas" in err
    assert _read(plane, namespace)["metadata"]["resourceVersion"] == version


def test_a_concurrent_edit_is_retried_on_the_new_version(
    installed: Installed, namespace: str, plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client moves the loops around between the plugin's read and its patch: the patch
    (computed for the old version) is refused, computed again, and pauses the right loop."""
    plane = installed.plane
    _create(plane, namespace)
    real_get = _control.get_workflow
    reads: list[int] = []

    def get_then_edit(target: Any, name: str) -> dict[str, Any]:
        found = real_get(target, name)
        reads.append(1)
        if len(reads) == 1:  # someone else reorders the loops: reader is now index 0
            loops = list(reversed(found["spec"]["loops"]))
            _custom(plane).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"spec": {"loops": loops}}
            )
        return found

    monkeypatch.setattr(_control, "get_workflow", get_then_edit)
    code, _, err = plugin("pause", "counter", "reader")
    assert code == 0, err
    # The first read, the check after the refusal (a new version), the read it was redone from.
    assert len(reads) == 3
    loops = _read(plane, namespace)["spec"]["loops"]
    assert [(lp["name"], lp.get("state")) for lp in loops] == [
        ("reader", "paused"),
        ("writer", None),
    ]


def test_an_edit_at_every_attempt_is_reported_and_nothing_applied(
    installed: Installed, namespace: str, plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = installed.plane
    _create(plane, namespace)
    real_get = _control.get_workflow
    edits = iter(range(1, 100))

    def get_then_edit(target: Any, name: str) -> dict[str, Any]:
        found = real_get(target, name)
        patch = {"metadata": {"annotations": {"example.com/edit": str(next(edits))}}}
        _custom(plane).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )
        return found

    monkeypatch.setattr(_control, "get_workflow", get_then_edit)
    code, _, err = plugin("pause", "counter", "reader")
    assert code == 1
    assert err == (
        f"kubectl ostinato: workflow 'counter' changed {_control.ATTEMPTS} times while being "
        "patched (a concurrent edit): nothing was applied; try again\n"
    )
    assert _states(_read(plane, namespace)) == {"writer": None, "reader": None}


@pytest.fixture
def run_in_thread() -> Iterator[Any]:
    threads: list[threading.Thread] = []

    def start(fn: Any, *args: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(code=fn(*args)), daemon=True)
        thread.start()
        threads.append(thread)
        result["thread"] = thread
        return result

    yield start
    for thread in threads:
        thread.join(timeout=60)


def test_wait_returns_once_the_status_shows_the_new_state(
    installed: Installed, namespace: str, kubeconfig: Path, run_in_thread: Any
) -> None:
    plane = installed.plane
    generation = _create(plane, namespace)["metadata"]["generation"]
    _write_status(plane, namespace, generation, reader=("running", "running"))
    argv = ["--kubeconfig", str(kubeconfig), "pause", "counter", "reader", "--wait"]
    waiting = run_in_thread(main, [*argv, "--timeout", "60"])

    def paused_in_spec() -> dict[str, Any] | None:
        found = _read(plane, namespace)
        return found if _states(found)["reader"] == "paused" else None

    patched = wait_until(paused_in_spec, timeout=30, what="the pause in the spec")
    new = patched["metadata"]["generation"]
    # The operator took the new generation in, but its status round has not reported the new
    # desired state yet (as seen on a cluster): --wait goes on waiting.
    _write_status(plane, namespace, new, reader=("running", "running"))
    waiting["thread"].join(timeout=1.5)
    assert waiting["thread"].is_alive(), "--wait returned on a status from before the pause"
    # The pause is asked, but the replica still runs: --wait goes on waiting.
    _write_status(plane, namespace, new, reader=("paused", "running"))
    waiting["thread"].join(timeout=1.5)
    assert waiting["thread"].is_alive(), "--wait returned before the status showed the pause"
    _write_status(plane, namespace, new, reader=("paused", "paused"))
    waiting["thread"].join(timeout=30)
    assert waiting.get("code") == 0


def test_scale_wait_returns_once_every_replica_is_ready(
    installed: Installed, namespace: str, kubeconfig: Path, run_in_thread: Any
) -> None:
    plane = installed.plane
    generation = _create(plane, namespace)["metadata"]["generation"]
    _write_status(plane, namespace, generation, reader=("running", "running"))
    argv = ["--kubeconfig", str(kubeconfig), "scale", "counter", "reader", "--replicas", "2"]
    waiting = run_in_thread(main, [*argv, "--wait", "--timeout", "60"])

    def scaled_in_spec() -> int | None:
        found = _read(plane, namespace)
        scaled = found["spec"]["loops"][1].get("replicas") == 2
        return int(found["metadata"]["generation"]) if scaled else None

    new = wait_until(scaled_in_spec, timeout=30, what="two replicas in the spec")
    _write_status(plane, namespace, new, reader=("running", "running"), reader_ready=(1, 2))
    waiting["thread"].join(timeout=1.5)
    assert waiting["thread"].is_alive(), "--wait returned with one replica of two ready"
    _write_status(plane, namespace, new, reader=("running", "running"), reader_ready=(2, 2))
    waiting["thread"].join(timeout=30)
    assert waiting.get("code") == 0


def test_wait_times_out_naming_what_is_missing(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    plane = installed.plane
    _create(plane, namespace)
    code, _, err = plugin("resume", "counter", "writer", "--wait", "--timeout", "1")
    assert code == 1
    assert err.startswith("kubectl ostinato: workflow 'counter': timed out after 1 s: ")
    assert "has not taken in generation 2 yet" in err


def test_namespaces_and_contexts_as_kubectl_has_them(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    """A Workflow in another namespace is reached with -n or with a context naming it, and is
    not found in the context's own."""
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta

    plane = installed.plane
    other = f"{namespace}-b"
    core = CoreV1Api(plane.api_client())
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=other)))
    try:
        _create(plane, other, name="elsewhere-wf")
        code, _, err = plugin("get", "elsewhere-wf")
        assert code == 1
        assert f"not found in namespace '{namespace}'" in err
        code, out, err = plugin("-n", other, "get", "elsewhere-wf")
        assert code == 0, err
        assert f"elsewhere-wf ({other})" in out
        code, out, err = plugin("get", "-A", "-o", "json")
        assert code == 0, err
        listed = {
            (wf["metadata"]["namespace"], wf["metadata"]["name"]) for wf in json.loads(out)["items"]
        }
        assert (other, "elsewhere-wf") in listed
        assert plugin("pause", "elsewhere-wf", "reader", "--namespace", other)[0] == 0
        assert _states(_read(plane, other, "elsewhere-wf"))["reader"] == "paused"
        code, _, err = plugin("--context", "elsewhere", "get", "elsewhere-wf")
        assert code == 1
        assert "not found in namespace 'default'" in err
        code, _, err = plugin("--context", "nowhere", "get")
        assert (code, err) == (
            1,
            "kubectl ostinato: --context nowhere: no such context in the kubeconfig\n",
        )
    finally:
        core.delete_namespace(other)


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_validate_checks_the_file_then_dry_runs_it_on_the_cluster(
    installed: Installed, namespace: str, plugin: Plugin, tmp_path: Path
) -> None:
    doc = example("k8s-counter.yaml")
    code, out, err = plugin("validate", str(_write(tmp_path / "good.yaml", doc)))
    assert code == 0, err
    assert "ok: workflow 'counter', 2 loop(s)" in out  # ostinato validate's own line
    assert out.endswith(
        f"ok: the cluster accepts workflow 'counter' in namespace '{namespace}' (dry run)\n"
    )
    assert (
        _custom(installed.plane).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]
        == []
    ), "a dry run stored the Workflow"

    typo = copy.deepcopy(doc)
    typo["spec"]["loops"][0]["max_iterations"] = 3
    code, out, err = plugin("validate", str(_write(tmp_path / "typo.yaml", typo)))
    assert code == 1
    assert err.count("\n") == 1
    assert "max_iterations" in err

    elsewhere = copy.deepcopy(doc)
    elsewhere["metadata"]["namespace"] = f"{namespace}-absent"
    code, _, err = plugin("validate", str(_write(tmp_path / "elsewhere.yaml", elsewhere)))
    assert code == 1
    assert err.endswith(f'the cluster refuses it: namespaces "{namespace}-absent" not found\n')

    plain = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
    code, _, err = plugin("validate", str(_write(tmp_path / "plain.yaml", plain)))
    assert code == 1
    assert "apiVersion: required field is missing" in err


def test_logs_and_console_say_what_is_missing(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    _create(installed.plane, namespace)
    code, _, err = plugin("logs", "counter")
    assert (code, err) == (
        1,
        f"kubectl ostinato: workflow 'counter' has no loop pods in namespace '{namespace}'\n",
    )
    code, _, err = plugin("logs", "counter", "raeder")
    assert code == 1
    assert "has no loop 'raeder' (its loops: writer, reader)" in err
    code, _, err = plugin("logs", "counter", "--since", "5d")
    assert (code, err.count("\n")) == (1, 1)
    code, _, err = plugin("console", "counter")
    assert err == (
        "kubectl ostinato: workflow 'counter' has no hub Service counter-hub yet "
        "(is the operator running?)\n"
    )
    assert code == 1


def command(plugin: Plugin, *args: str) -> tuple[int, str, str]:
    """The installed `kubectl-ostinato` console script, in a process of its own."""
    script = Path(sys.executable).with_name("kubectl-ostinato")
    argv = [str(script), "--kubeconfig", str(plugin.kubeconfig), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.timeout(240)
def test_with_the_operator_the_webhook_refuses_in_the_dry_run_and_pods_are_found(
    installed: Installed, namespace: str, plugin: Plugin, tmp_path: Path
) -> None:
    """The dry run reaches the admission webhook (the pod budget is the operator's, not the
    runtime's); and the operator's pods are those `logs` reads (not running here: no kubelet)."""
    doc = example("k8s-counter.yaml")
    # A command apart: kopf's test runner holds this process's stdout and stderr meanwhile.
    with run_operator(installed, OSTINATO_MAX_PODS_PER_WORKFLOW="3"):
        over = copy.deepcopy(doc)
        over["spec"]["loops"][1]["replicas"] = 4
        code, out, err = command(plugin, "validate", str(_write(tmp_path / "over.yaml", over)))
        assert code == 1, err
        assert "ok: workflow 'counter'" in out, err  # the runtime has no budget
        assert "exceed maxPodsPerWorkflow" in err
        assert err.count("\n") == 1

        _create(installed.plane, namespace)
        both = ["counter-reader-0", "counter-writer-0"]
        wait_until(
            lambda: sorted(_pod_names(installed.plane, namespace)) == both or None,
            timeout=60,
            what="both loop pods",
        )
        code, out, err = command(plugin, "logs", "counter", "reader")
        assert (code, err) == (0, "")  # a pod not started yet has no log: nothing to show
        code, _, err = command(plugin, "console", "counter")
        assert code == 1
        assert err.startswith("kubectl ostinato: port-forward to svc/counter-hub: ")
        assert err.count("\n") == 1


def _pod_names(plane: ControlPlane, namespace: str) -> list[str]:
    from kubernetes.client import CoreV1Api

    found = CoreV1Api(plane.api_client()).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=loop"
    )
    return [pod.metadata.name for pod in found.items]


def test_scale_sets_an_autoscaled_loops_bounds_and_refuses_what_does_not_fit(
    installed: Installed, namespace: str, plugin: Plugin
) -> None:
    plane = installed.plane
    doc = example("k8s-counter.yaml")
    doc["metadata"] = {"name": "counter", "namespace": namespace}
    doc["spec"]["loops"][1]["autoscale"] = {"minReplicas": 0, "maxReplicas": 4}
    _custom(plane).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc)

    code, out, err = plugin("scale", "counter", "reader", "--max-replicas", "6")
    assert code == 0, err
    assert out == "workflow counter: loop reader autoscales between 0 and 6 replicas\n"
    assert _read(plane, namespace)["spec"]["loops"][1]["autoscale"] == {
        "minReplicas": 0,
        "maxReplicas": 6,
    }
    code, out, _ = plugin("get", "counter")
    assert "loop reader: unknown, replicas 0/0 ready (autoscale 0..6)" in out, out
    version = _read(plane, namespace)["metadata"]["resourceVersion"]
    refusals = {
        ("reader", "--min-replicas", "7"): "loop 'reader': minReplicas 7 and maxReplicas 6 need "
        "0 <= minReplicas <= maxReplicas and maxReplicas >= 1",
        ("reader", "--replicas", "2"): "loop 'reader' is autoscaled: give --min-replicas and/or "
        "--max-replicas",
        ("writer", "--max-replicas", "3"): "loop 'writer' is not autoscaled: give --replicas",
        ("reader",): "give --replicas, or --min-replicas and/or --max-replicas",
        ("reader", "--replicas", "2", "--max-replicas", "3"): "scale: --replicas, or "
        "--min-replicas/--max-replicas, not both",
    }
    for args, said in refusals.items():
        code, _, err = plugin("scale", "counter", *args)
        assert (code, err) == (1, f"kubectl ostinato: {said}\n"), args
    assert _read(plane, namespace)["metadata"]["resourceVersion"] == version
