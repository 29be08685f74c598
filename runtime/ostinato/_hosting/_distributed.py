"""Distributed mode: the hub alone (`ostinato hub`) and one loop against it (`ostinato loop`)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .._engine._loop import LoopManager
from .._messaging._client import HubClient
from .._messaging._hub import Hub
from .._model._errors import WorkflowError
from .._model._plan import WorkflowPlan, load_workflow
from .._model._spec import DesiredState
from .._model._status import LoopState, WorkflowStatus
from .._observe._console import Console, ConsoleSettings
from .._observe._http import HttpSettings
from ._replica import attach, replica_identity
from ._workflow_http import TokenSources, WorkflowHttp

__all__ = ["SpecFileWatch", "run_hub", "run_loop"]

log = logging.getLogger("ostinato.cli")


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(130)
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class SpecFileWatch:
    """The hub's document as it is now. On Kubernetes the operator rewrites it in place (a
    ConfigMap volume) when only a loop's nodes change, which does not restart the hub: its
    console reads the new graph from here. Called at most once per ``every_seconds``; None
    when nothing changed, or when the new document does not load (logged once per change)."""

    def __init__(self, path: Path, every_seconds: float = 1.0) -> None:
        self.path = path
        self.every_seconds = every_seconds
        self._seen = self._stamp()
        self._looked = 0.0
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def __call__(self) -> WorkflowPlan | None:
        now = time.monotonic()
        with self._lock:
            if now - self._looked < self.every_seconds:
                return None
            self._looked = now
            stamp = self._stamp()
            if stamp is None or stamp == self._seen:
                return None
            self._seen = stamp
        try:
            return load_workflow(self.path, import_loops=())
        except (WorkflowError, OSError) as exc:
            log.warning(
                "%s changed but does not load; the console keeps its graph: %s",
                self.path,
                str(exc).splitlines()[0],
            )
            return None


def _keys(path: Path | None, insecure: bool, endpoint: str) -> Any:
    from .._messaging._security import keys_from_env, load_keys

    keys = load_keys(path) if path is not None else keys_from_env()
    if keys is None and endpoint.startswith("tcp://") and not insecure:
        raise SystemExit(
            "tcp:// needs the workflow's CURVE keys: --keys FILE (made by 'ostinato keys') or "
            "OSTINATO_CURVE_* variables; --insecure to run without (loopback tests only)"
        )
    return keys


def run_hub(
    plan: WorkflowPlan,
    bind: str,
    *,
    keys_path: Path | None = None,
    insecure: bool = False,
    state_dir: Path | None = None,
    ready: threading.Event | None = None,
    http_host: str = "0.0.0.0",
    http_port: int | None = None,
    http_settings: HttpSettings | None = None,
    control_token_file: Path | None = None,
    console: ConsoleSettings | None = None,
    spec_file: Path | None = None,
) -> int:
    """Serve the workflow's queues on ``bind`` (and locally) until SIGINT/SIGTERM; with
    ``http_port``, also /healthz, /readyz, /metrics, /status of the whole workflow (from its
    loops' heartbeats) and POST /control, which wants the workflow's control token (from
    ``control_token_file``, the key file, ``OSTINATO_CONTROL_TOKEN``, or made for this run: see
    :mod:`._http`); with ``console`` too, the web console (docs/console.md), which follows
    ``spec_file`` (the document ``plan`` came from) as it is rewritten."""
    keys = _keys(keys_path, insecure, bind)
    found = None
    if http_port is not None:  # a missing or bad token ends the hub before it binds anything
        found = TokenSources(
            file=control_token_file,
            keys_file=keys_path,
            keys_in_env=keys is not None and keys_path is None,
        ).configured()
    security = None
    import zmq

    ctx: zmq.Context[Any] = zmq.Context.instance()
    if keys is not None:
        from .._messaging._security import ServerSecurity

        security = ServerSecurity(ctx, keys)
    hub = Hub.for_workflow(plan, state_dir=state_dir, ctx=ctx, tcp=bind, security=security)
    from ._remote import RemoteLoops

    loops = RemoteLoops(plan, hub, lost_after=hub.lost_after)
    server = None
    if http_port is not None:
        try:
            server = WorkflowHttp(
                loops,
                plan.name,
                host=http_host,
                port=http_port,
                settings=http_settings,
                found=found,
                console=None
                if console is None
                else Console(
                    plan,
                    console,
                    (http_settings or HttpSettings()).sample_every_seconds,
                    newer_plan=SpecFileWatch(spec_file) if spec_file is not None else None,
                ),
            ).start()
        except BaseException:
            hub.close()
            if security is not None:
                security.close()
            raise
    stop = threading.Event()
    _stop_on_signals(stop)
    log.info(
        "hub of workflow %r serving %d queue(s) on %s%s",
        plan.name,
        len(plan.queues),
        hub.tcp,
        " (CURVE)" if security else " (no CURVE)",
    )
    print(f"hub listening on {hub.tcp}", flush=True)
    if server is not None:
        print(f"hub serving HTTP on {server.url} (control token: {server.token_from})", flush=True)
        if server.server.console_url is not None:
            print(f"console: {server.server.console_url}", flush=True)
    if ready is not None:
        ready.set()
    stop.wait()
    if server is not None:
        server.close()
    hub.close()
    if security is not None:
        security.close()
    return 0


#: How long a starting remote loop waits for the hub's desired state before it applies the
#: spec's: the hub answers its first status at once, so only a hub that does not know the
#: question (an older version) lets it run out.
HUB_WORD_TIMEOUT_SECONDS = 10.0


def run_loop(
    plan: WorkflowPlan,
    loop: str,
    hub: str,
    *,
    keys_path: Path | None = None,
    insecure: bool = False,
    replica: int = 0,
    max_iterations: int | None = None,
    http_host: str = "0.0.0.0",
    http_port: int | None = None,
    final_state_file: Path | None = None,
) -> int:
    """Run one replica of one loop of the workflow against a hub elsewhere; with
    ``http_port``, serve its /healthz, /readyz (started, and the hub answers), /metrics and
    /status."""
    keys = _keys(keys_path, insecure, hub)
    loop_plan = plan.loop(loop)
    client = HubClient(
        hub,
        replica_identity(loop, replica),
        loop=loop,
        keys=keys,
        heartbeat=loop_plan.spec.heartbeat_seconds,
    )
    manager = LoopManager(
        loop_plan,
        workflow=plan.name,
        max_iterations=max_iterations,
        hub=client,
        replica=replica,
    )
    # The hub keeps the desired state (a POST /control may have paused the loop since the spec
    # was written); a hub that never says it (an older one) leaves the spec's in force.
    spec_desired = DesiredState.combine(plan.workflow.spec.state, loop_plan.spec.state)
    attach(manager, client, desired=spec_desired, ask_hub=HUB_WORD_TIMEOUT_SECONDS)
    client.start()
    server = None
    if http_port is not None:
        from .._observe._http import ObservabilityServer

        server = ObservabilityServer(
            _LoopSource(plan.name, manager, client), host=http_host, port=http_port
        ).start()
    stop = threading.Event()
    _stop_on_signals(stop)

    def stopper() -> None:
        stop.wait()
        manager.stop()

    threading.Thread(target=stopper, name="ostinato-stopper", daemon=True).start()
    try:
        manager.run_sync()
    except Exception:
        return 1
    finally:
        client.final = True
        client.close()
        if server is not None:
            server.close()
    status = manager.status()
    if final_state_file is not None:
        # 'finished: ...' or 'stopped: ...': a pod that Succeeded is kept only when it finished
        # (a stop the hub asked for, say with a stale desired state, is not an ending).
        with contextlib.suppress(OSError):
            final_state_file.write_text(f"{status.state.value}: {status.reason or ''}\n")
    log.info(
        "loop %s: %s after %d iteration(s); drained %d, abandoned %d non-blocking call(s)",
        loop,
        status.state.value,
        status.iterations,
        status.drained,
        status.abandoned,
    )
    # 0 only for an ending that must not be repeated: on Kubernetes the pod then stays
    # Succeeded (restartPolicy OnFailure) instead of running the loop again.
    return 0 if status.state in (LoopState.STOPPED, LoopState.FINISHED) else 1


class _LoopSource:
    """One remote loop replica as a status source for its HTTP server."""

    def __init__(self, workflow: str, manager: LoopManager, client: HubClient) -> None:
        self.workflow = workflow
        self.manager = manager
        self.client = client

    def status(self) -> WorkflowStatus:
        return WorkflowStatus(workflow=self.workflow, loops=[self.manager.status()])

    def not_ready(self) -> str | None:
        if self.manager.state is LoopState.PENDING:
            return "the loop has not started yet"
        if self.client.hub_id is None:
            return "the hub has not answered yet"
        return None
