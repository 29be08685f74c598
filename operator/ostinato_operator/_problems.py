"""Why a Workflow cannot work although it was admitted: its pods' failures as the kubelet and the
scheduler report them, and a queue that loops read and no loop writes, as condition reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ostinato import DesiredState, Workflow

from ._children import effective_state
from ._status_models import MAX_MESSAGE_CHARS

__all__ = ["Problem", "cut", "pod_problems", "queue_problems", "summary", "unschedulable"]

#: Waiting reasons of a container whose image cannot be had (kubelet's images package).
IMAGE_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
#: Waiting reasons of a container the runtime could not create or start (a missing Secret key...).
START_REASONS = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreCreateHookError",
        "PreStartHookError",
        "PostStartHookError",
    }
)
#: The causes, most telling first: a volume that never binds explains an unschedulable hub, and
#: a hub that does not run explains loops that cannot reach it.
CAUSES = ("VolumePending", "Unschedulable", "ImagePullFailed", "CannotStart", "CrashLooping")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that keeps the workflow from working: a CamelCase reason and a message that
    names the object (pod, container, claim or queue) and carries the cause's own text."""

    reason: str
    message: str
    #: Which object, for the summary of the others: a pod's or a queue's name.
    subject: str
    #: The loop whose pod it is; None for the hub's pod and for queues.
    loop: str | None = None

    @property
    def text(self) -> str:
        return f"{self.reason}: {self.message}"


def cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _crash(where: str, cs: Mapping[str, Any]) -> str:
    state = cs.get("state") or {}
    last = state.get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
    restarts = cs.get("restartCount", 0)
    text = f"{where} is crash-looping ({restarts} restart{'s' if restarts != 1 else ''})"
    if last:
        code = last.get("exitCode")
        why = last.get("reason")
        text += f", last exit code {code}" + (f" ({why})" if why and why != "Error" else "")
        line = _last_line(last.get("message"))
        if line:
            text += f": {line}"
    return text


def _container_problem(pod: str, cs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(cause, message) of one container, or None when it is fine or on its way."""
    where = f"pod {pod} container {cs.get('name', '?')}"
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    detail = waiting.get("message") or ""
    if reason == "CrashLoopBackOff":
        return "CrashLooping", _crash(where, cs)
    if reason in IMAGE_REASONS:
        text = f"{where} cannot pull image {cs.get('image', '?')}: {reason}"
        return "ImagePullFailed", text + (f": {detail}" if detail else "")
    if reason in START_REASONS:
        return "CannotStart", f"{where} cannot start: {reason}" + (f": {detail}" if detail else "")
    terminated = state.get("terminated") or {}
    if terminated and terminated.get("exitCode", 0) != 0:
        return "CrashLooping", _crash(where, cs)
    return None


def unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it found no node for the pod, else None."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return str(cond.get("message") or "no node fits")
    return None


def _volume_pending(volume: Mapping[str, Any] | None, pod: str, why: str) -> str | None:
    if volume is None or (volume.get("status") or {}).get("phase") != "Pending":
        return None
    name = volume["metadata"]["name"]
    storage_class = (volume.get("spec") or {}).get("storageClassName")
    asked = (
        f"storageClassName {storage_class}"
        if storage_class
        else "no storageClassName: the cluster's default StorageClass"
    )
    return f"PersistentVolumeClaim {name} is Pending ({asked}); pod {pod}: {why}"


def pod_problems(
    pods: Sequence[Mapping[str, Any]], volume: Mapping[str, Any] | None = None
) -> list[Problem]:
    """The failures of the workflow's hub and loop pods, most telling first. ``volume`` is the
    hub's PersistentVolumeClaim when there is one: Pending while the scheduler cannot place the
    hub, it is the cause (a claim is Pending before that too, when it waits for its consumer)."""
    found: list[tuple[int, int, str, Problem]] = []
    for pod in pods:
        meta = pod["metadata"]
        status = pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        labels = meta.get("labels") or {}
        is_hub = labels.get("app.kubernetes.io/component") == "hub"
        prefix, loop = ("Hub", None) if is_hub else ("Loop", labels.get("ostinato.dev/loop"))
        name = meta["name"]
        causes: list[tuple[str, str]] = []
        why = unschedulable(pod)
        if why is not None:
            pending = _volume_pending(volume, name, why) if is_hub else None
            causes.append(
                ("VolumePending", pending)
                if pending
                else ("Unschedulable", f"pod {name} cannot be scheduled: {why}")
            )
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            found_cause = _container_problem(name, cs)
            if found_cause is not None:
                causes.append(found_cause)
        for cause, message in causes:
            problem = Problem(f"{prefix}{cause}", cut(message), name, loop)
            found.append((0 if is_hub else 1, CAUSES.index(cause), name, problem))
    return [p for *_, p in sorted(found, key=lambda f: f[:3])]


def queue_problems(workflow: Workflow) -> list[Problem]:
    """Queues that loops which are not stopped read and that no loop writes: their readers
    would wait for messages forever (admission accepts it: a durable queue may hold some)."""
    readers: dict[str, list[str]] = {}
    written: set[str] = set()
    for loop in workflow.spec.loops:
        for node in (loop.producer, *loop.nodes):
            ref = node.queue if node is not None else None
            if ref is None:
                continue
            if ref.write:
                written.add(ref.write)
            if ref.read and effective_state(workflow, loop) is not DesiredState.STOPPED:
                names = readers.setdefault(ref.read, [])
                if loop.name not in names:
                    names.append(loop.name)
    problems = []
    for queue in workflow.spec.queues:
        if queue.name in readers and queue.name not in written:
            names = readers[queue.name]
            which = f"loop{'s' if len(names) > 1 else ''} {', '.join(names)}"
            message = f"queue {queue.name} is read by {which} but written by no loop"
            problems.append(Problem("QueueWithoutWriter", cut(message), queue.name))
    return problems


def summary(problems: Sequence[Problem]) -> tuple[str, str]:
    """(reason, message) for a condition: the first problem's, the others counted and named."""
    first, rest = problems[0], problems[1:]
    if not rest:
        return first.reason, first.message
    named = ", ".join(f"{p.reason} ({p.subject})" for p in rest[:3])
    more = f" (and {len(rest)} more: {named}{', …' if len(rest) > 3 else ''})"
    more = cut(more, MAX_MESSAGE_CHARS // 3)
    return first.reason, cut(first.message, MAX_MESSAGE_CHARS - len(more)) + more
