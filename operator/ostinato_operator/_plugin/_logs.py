"""`logs`: every replica's pod of a Workflow's loops, interleaved by time, each line prefixed with
its loop/replica (and node), the runtime's JSON and text records rendered alike."""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import kubernetes
from kubernetes.client.exceptions import ApiException

from ._connect import Target
from ._errors import PluginError
from ._workflows import api_message, get_workflow, loop_index

__all__ = ["LogLine", "parse_line", "parse_since", "render", "show_logs", "sort_key"]

#: The runtime's text records: "%(asctime)s %(levelname)-7s %(name)s: %(message)s".
_TEXT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (\w+)\s+(\S+): (.*)$", re.S)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
#: -f looks for new loop pods (a scale-up, a replaced pod) this often, seconds.
FOLLOW_DISCOVERY_SECONDS = 2.0


@dataclass(frozen=True)
class LogLine:
    """One line of one replica's log: the kubelet's timestamp and what the runtime wrote."""

    time: str  # RFC 3339 with up to nine fraction digits, as the kubelet stamps it
    loop: str
    replica: str
    level: str | None
    node: str | None
    message: str


def parse_since(text: str) -> int:
    """kubectl's --since (5s, 2m, 1h30m) as whole seconds, at least 1."""
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise PluginError(f"--since {text}: not a duration such as 30s, 5m or 1h")
    return max(1, int(sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)))


def _node_of(logger: str | None) -> str | None:
    """ostinato.node.<loop>.<node> names a node's logger (the runtime's convention)."""
    parts = (logger or "").split(".")
    if parts[:2] != ["ostinato", "node"] or len(parts) < 4:
        return None
    return ".".join(parts[3:])


def parse_line(raw: str, loop: str, replica: str) -> LogLine:
    """A kubelet log line ("TIME TEXT", with timestamps=true): a JSON record, a text record, or
    anything else a node printed, kept as it is."""
    stamp, _, text = raw.rstrip("\n").partition(" ")
    text = text.rstrip("\r")
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "message" in doc:
            message = str(doc["message"])
            if doc.get("exception"):
                message += "\n" + str(doc["exception"])
            node = doc.get("node") or _node_of(doc.get("logger"))
            return LogLine(stamp, loop, replica, doc.get("level"), node, message)
    match = _TEXT.match(text)
    if match is not None:
        _, level, logger, message = match.groups()
        return LogLine(stamp, loop, replica, level, _node_of(logger), message)
    return LogLine(stamp, loop, replica, None, None, text)


def sort_key(line: LogLine) -> tuple[str, str]:
    """RFC 3339 stamps compare as text only once their fractions have one length (the kubelet
    drops trailing zeros): .12Z is after .123Z as text, before it as time."""
    whole, _, rest = line.time.partition(".")
    fraction = rest.rstrip("Z")
    return whole.rstrip("Z"), fraction.ljust(9, "0")


def render(line: LogLine) -> str:
    where = f"{line.loop}/{line.replica}" + (f" {line.node}" if line.node else "")
    level = f" {line.level}" if line.level else ""
    body = line.message.replace("\n", "\n    ")
    return f"[{where}] {line.time}{level} {body}"


@dataclass(frozen=True)
class _Pod:
    name: str
    loop: str
    replica: str
    #: Tells a replaced pod from the one of the same name before it.
    uid: str = ""


def _pods(target: Target, workflow: str, loop: str | None) -> list[_Pod]:
    selector = f"ostinato.dev/workflow={workflow},app.kubernetes.io/component=loop"
    if loop is not None:
        selector += f",ostinato.dev/loop={loop}"
    core: Any = kubernetes.client.CoreV1Api(target.api)
    try:
        found = core.list_namespaced_pod(target.namespace, label_selector=selector)
    except ApiException as exc:
        raise PluginError(f"pods of workflow {workflow!r}: {api_message(exc)}") from None
    pods = []
    for pod in found.items:
        labels = pod.metadata.labels or {}
        pods.append(
            _Pod(
                pod.metadata.name,
                labels.get("ostinato.dev/loop", "?"),
                labels.get("ostinato.dev/replica", "?"),
                pod.metadata.uid or "",
            )
        )
    return sorted(pods, key=lambda p: (p.loop, p.replica))


def _read(target: Target, pod: _Pod, since_seconds: int | None, follow: bool) -> Iterator[str]:
    core: Any = kubernetes.client.CoreV1Api(target.api)
    kwargs: dict[str, Any] = {"container": "loop", "timestamps": True, "follow": follow}
    if since_seconds is not None:
        kwargs["since_seconds"] = since_seconds
    try:
        answer = core.read_namespaced_pod_log(
            pod.name, target.namespace, _preload_content=False, **kwargs
        )
    except ApiException as exc:
        if exc.status == 400:  # not started yet: no log to read
            return
        raise PluginError(f"log of pod {pod.name}: {api_message(exc)}") from None
    pending = b""
    try:
        for chunk in answer.stream(4096, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                yield raw.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")
    finally:
        answer.release_conn()


def _wanted(line: LogLine, node: str | None) -> bool:
    return node is None or line.node == node


def show_logs(
    target: Target,
    workflow: str,
    loop: str | None,
    node: str | None,
    since: str | None,
    follow: bool,
    out: TextIO = sys.stdout,
) -> int:
    spec = get_workflow(target, workflow)
    if loop is not None:
        loop_index(spec, loop)  # names a missing loop
    since_seconds = None if since is None else parse_since(since)
    pods = _pods(target, workflow, loop)
    if not pods:
        which = f"loop {loop!r} of workflow {workflow!r}" if loop else f"workflow {workflow!r}"
        raise PluginError(f"{which} has no loop pods in namespace {target.namespace!r}")
    if not follow:
        lines = [
            parse_line(raw, p.loop, p.replica)
            for p in pods
            for raw in _read(target, p, since_seconds, False)
        ]
        for line in sorted(lines, key=sort_key):  # stable: one pod's lines keep their order
            if _wanted(line, node):
                print(render(line), file=out)
        return 0
    for line in _followed(target, pods, lambda: _pods(target, workflow, loop), since_seconds):
        if _wanted(line, node):
            print(render(line), file=out, flush=True)
    return 0


def _followed(
    target: Target,
    pods: Sequence[_Pod],
    discover: Callable[[], Sequence[_Pod]],
    since_seconds: int | None,
) -> Iterable[LogLine]:
    """Every pod's log as it grows, in the order lines arrive. Pods that appear meanwhile (an
    autoscaled loop's new replicas, a replaced pod) are followed from their first line. It ends
    when every stream has ended and no new pod is found (workflow deleted, or scaled to zero)."""
    lines: queue.Queue[LogLine | BaseException | None] = queue.Queue()
    followed: set[tuple[str, str]] = set()
    open_streams = 0

    def pump(pod: _Pod, since: int | None) -> None:
        try:
            for raw in _read(target, pod, since, True):
                lines.put(parse_line(raw, pod.loop, pod.replica))
        except BaseException as exc:  # handed to the reading thread, which raises it
            lines.put(exc)
        finally:
            lines.put(None)

    def follow(found: Iterable[_Pod], since: int | None) -> None:
        nonlocal open_streams
        for pod in found:
            if (pod.name, pod.uid) in followed:
                continue
            followed.add((pod.name, pod.uid))
            open_streams += 1
            name = f"logs-{pod.name}"
            threading.Thread(target=pump, args=(pod, since), daemon=True, name=name).start()

    follow(pods, since_seconds)
    looked = time.monotonic()
    while True:
        try:
            got = lines.get(timeout=FOLLOW_DISCOVERY_SECONDS)
        except queue.Empty:
            pass  # nothing arrived: a moment to look for new pods
        else:
            if got is None:
                open_streams -= 1
            elif isinstance(got, BaseException):
                raise got
            else:
                yield got
        if open_streams == 0 or time.monotonic() - looked >= FOLLOW_DISCOVERY_SECONDS:
            follow(discover(), None)  # a new pod's whole log is new
            looked = time.monotonic()
            if open_streams == 0:
                return
