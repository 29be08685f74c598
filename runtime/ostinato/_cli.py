"""The `ostinato` command: run a workflow, validate a file, read or control a running one."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ._model._classes import importable_folder
from ._model._errors import WorkflowError
from ._model._plan import WorkflowPlan, load_workflow
from ._model._spec import DesiredState
from ._model._status import LoopState
from ._model._version import __version__
from ._observe._live import LiveView, wants_live_view
from ._observe._logs import configure_logging
from ._observe._tables import format_table

if TYPE_CHECKING:
    from ._hosting._orchestrator import WorkflowOrchestrator

log = logging.getLogger("ostinato.cli")
# Loop states a run may end in and still exit 0.
_ENDED_WELL = frozenset({LoopState.STOPPED, LoopState.FINISHED})


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0: off), got {text}")
    return value


def _parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="ostinato", description="Run workflows of continuous loops of Python nodes."
    )
    parser.add_argument("--version", action="version", version=f"ostinato {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a workflow file locally, every loop in its pool")
    run.add_argument("file", type=Path)
    run.add_argument("--duration", type=_positive, help="stop gracefully after S seconds")
    run.add_argument("--iterations", type=_positive_int, help="stop each loop after N iterations")
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--status-every",
        type=float,
        default=2.0,
        metavar="S",
        help="print the loops' status table every S seconds (0: only at the end)",
    )

    run.add_argument(
        "--state-dir",
        type=Path,
        help="where durable queues are kept (default: $XDG_STATE_HOME/ostinato/<workflow>, "
        "else ~/.local/state/ostinato/<workflow>)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        default=0,
        metavar="PORT",
        help="serve /metrics, /healthz, /readyz, /status and POST /control on 127.0.0.1:PORT "
        "(default 0: off)",
    )
    run.add_argument(
        "--live",
        choices=["auto", "always", "never"],
        default="auto",
        help="redraw a live status table in place (auto: when stdout is a terminal); "
        "otherwise tables are printed as plain lines every --status-every seconds",
    )

    validate = sub.add_parser("validate", help="check workflow files; exit 1 on any error")
    validate.add_argument("files", type=Path, nargs="+")

    hub = sub.add_parser("hub", help="run only the workflow's messaging hub (distributed mode)")
    hub.add_argument("file", type=Path)
    hub.add_argument("--bind", required=True, help="for example tcp://0.0.0.0:5555")
    loop = sub.add_parser("loop", help="run one loop of a workflow against a remote hub")
    loop.add_argument("file", type=Path)
    loop.add_argument("--loop", required=True, dest="loop_name")
    loop.add_argument("--hub", required=True, help="the hub's address, e.g. tcp://host:5555")
    loop.add_argument("--replica", type=int, default=0, help="which replica this is (0-based)")
    loop.add_argument("--iterations", type=_positive_int, help="stop after N iterations")
    loop.add_argument(
        "--final-state-file",
        type=Path,
        help="write the loop's final state and reason here at exit ('finished: ...'); on "
        "Kubernetes /dev/termination-log, so a Succeeded pod says whether its loop finished",
    )
    for distributed in (hub, loop):
        distributed.add_argument("--keys", type=Path, help="CURVE keys from 'ostinato keys'")
        distributed.add_argument(
            "--insecure", action="store_true", help="allow tcp:// without CURVE (loopback tests)"
        )
        distributed.add_argument("--log-format", choices=["text", "json"], default="text")
        distributed.add_argument("--log-level", default="INFO")
        distributed.add_argument(
            "--http-port",
            type=_port,
            help="serve /healthz, /readyz, /metrics, /status (the hub: of the whole workflow, "
            "and POST /control) on this port; 0 picks a free one",
        )
        distributed.add_argument(
            "--http-host", default="0.0.0.0", help="address the HTTP server binds (0.0.0.0)"
        )
    hub.add_argument("--state-dir", type=Path, help="where durable queues are kept")
    hub.add_argument(
        "--ui-managed-by-operator",
        action="store_true",
        help="with --ui: the operator owns the desired states, so the console shows the spec's "
        "state and the kubectl patch that changes it instead of controls",
    )
    for server in (run, hub):
        server.add_argument(
            "--ui",
            action="store_true",
            help="serve the live web console at /console/ (ostinato run: on --metrics-port, or "
            "a free port of 127.0.0.1 when it is 0) and print its URL",
        )
        server.add_argument(
            "--control-token-file",
            type=Path,
            metavar="FILE",
            help="the control token POST /control wants: read from FILE, or written there "
            "(mode 0600) when there is no such file",
        )
        server.add_argument(
            "--token-for-reads",
            action="store_true",
            help="want the control token on /status, /metrics and /readyz too (never /healthz)",
        )

    sub.add_parser(
        "operator",
        help="run the Kubernetes operator (ostinato-operator; needs the 'operator' extra)",
        add_help=False,
    )

    sub.add_parser(
        "k8s",
        help="the kubectl plugin's verbs on Workflow resources (kubectl ostinato; needs the "
        "'operator' extra)",
        add_help=False,
    )

    status = sub.add_parser(
        "status", help="print the status table of a workflow running elsewhere (its /status)"
    )
    status.add_argument(
        "--url",
        required=True,
        help="the server of 'ostinato run --metrics-port', e.g. http://127.0.0.1:9464",
    )
    status.add_argument("--json", action="store_true", help="print the JSON instead")
    status.add_argument("--timeout", type=_positive, default=5.0, help="seconds to wait")

    control = sub.add_parser(
        "control",
        help="set the desired state of a loop, or of every loop, of a running workflow "
        "(its POST /control)",
    )
    control.add_argument(
        "--url",
        required=True,
        help="the server of 'ostinato run --metrics-port' or 'ostinato hub --http-port'",
    )
    control.add_argument("--loop", help="the loop to set (default: every loop)")
    control.add_argument("state", choices=[s.value for s in DesiredState])
    control.add_argument("--json", action="store_true", help="print the JSON reply instead")
    control.add_argument("--timeout", type=_positive, default=5.0, help="seconds to wait")
    for client in (status, control):
        client.add_argument(
            "--control-token-file",
            type=Path,
            metavar="FILE",
            help="the workflow's control token (the file 'ostinato run' names at start-up)",
        )
        client.add_argument(
            "--keys",
            type=Path,
            metavar="FILE",
            help="read the control token from this key file ('ostinato keys')",
        )

    keys = sub.add_parser("keys", help="generate a workflow's CURVE key pairs (JSON)")
    keys.add_argument("--out", type=Path, help="write to this file (mode 0600) instead of stdout")
    return parser


def _load(path: Path, import_loops: Collection[str] | None = None) -> WorkflowPlan:
    importable_folder(path)
    return load_workflow(path, import_loops=import_loops)


def _load_or_report(path: Path, import_loops: Collection[str] | None = None) -> WorkflowPlan | None:
    """The checked plan, or None after printing why not (field-named errors) to stderr."""
    try:
        return _load(path, import_loops)
    except (WorkflowError, OSError) as exc:
        print(str(exc) if isinstance(exc, WorkflowError) else f"{path}: {exc}", file=sys.stderr)
        return None


def cmd_validate(files: list[Path]) -> int:
    code = 0
    for path in files:
        plan = _load_or_report(path)
        if plan is None:
            code = 1
            continue
        loops = ", ".join(f"{lp.name} [{lp.spec.pool.value}]" for lp in plan.loops)
        print(f"{path}: ok: workflow {plan.name!r}, {len(plan.loops)} loop(s): {loops}")
    return code


def cmd_run(args: argparse.Namespace) -> int:
    # Here, not at the top: the orchestrator brings ZeroMQ, which `validate` must not load.
    from ._hosting._orchestrator import WorkflowOrchestrator

    plan = _load_or_report(args.file)
    if plan is None:
        return 1
    configure_logging(args.log_format, logging.getLevelName(args.log_level), plan.name)
    interrupted = threading.Event()

    running: list[WorkflowOrchestrator] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if interrupted.is_set():
            log.error("second interrupt: exiting without draining")
            for orchestrator in running:  # process loops' children go too, not as orphans
                orchestrator.abort()
            os._exit(130)
        log.info("%s: stopping gracefully (again to exit at once)", signal.Signals(signum).name)
        interrupted.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    orchestrator = WorkflowOrchestrator(
        plan, max_iterations=args.iterations, log_format=args.log_format, state_dir=args.state_dir
    )
    running.append(orchestrator)
    server = None
    if args.metrics_port or args.ui:
        from ._hosting._workflow_http import TokenSources, WorkflowHttp
        from ._messaging._token import ControlTokenError
        from ._observe._console import Console
        from ._observe._http import HttpSettings

        try:
            found = TokenSources(file=args.control_token_file).configured()
            settings = HttpSettings(token_for_reads=args.token_for_reads)
            server = WorkflowHttp(
                orchestrator,
                plan.name,
                host="127.0.0.1",
                port=args.metrics_port,
                settings=settings,
                found=found,
                console=Console(plan, every=settings.sample_every_seconds) if args.ui else None,
            ).start()
        except ControlTokenError as exc:
            print(f"ostinato run: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"--metrics-port {args.metrics_port}: {exc}", file=sys.stderr)
            return 1
        if server.server.console_url is not None:
            print(f"console: {server.server.console_url} (control token: {server.token_from})")
            sys.stdout.flush()
    from ._messaging._store import DurableStoreError

    try:
        orchestrator.start()
    except DurableStoreError as exc:  # before any loop started: nothing else to stop
        if server is not None:
            server.close()
        print(f"ostinato run: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    live = LiveView(orchestrator.status).start() if wants_live_view(args.live, sys.stdout) else None
    next_table = started + args.status_every if args.status_every > 0 else float("inf")
    while not interrupted.is_set():
        now = time.monotonic()
        if orchestrator.done:
            break
        if args.duration is not None and now - started >= args.duration:
            log.info("duration of %gs reached: stopping", args.duration)
            break
        if now >= next_table and args.log_format == "text" and live is None:
            print(format_table(orchestrator.status()), flush=True)
            next_table = now + args.status_every
        interrupted.wait(0.1)
    final = orchestrator.stop()
    if server is not None:
        server.close()
    if live is not None:
        live.close(final)
    elif args.log_format == "text":
        print(format_table(final), flush=True)
    for lp in final.loops:
        # The loop's reason repeats the drain's counts; what it says before them is the cause,
        # when there was more than a request to stop (a node's onError: stopLoop, a limit).
        drain = f"drained {lp.drained}, abandoned {lp.abandoned} non-blocking call(s)"
        cause = (lp.reason or "").removesuffix(drain).removesuffix("; ")
        log.info(
            "loop %s: %s after %d iteration(s); %s%s",
            lp.name,
            lp.state.value,
            lp.iterations,
            drain,
            f"; {cause}" if cause else "",
        )
    code = 0 if all(lp.state in _ENDED_WELL for lp in final.loops) else 1
    if any(lp.abandoned for lp in final.loops):
        # Side-effect threads past their drain timeout must not hold the process open.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _client_token(args: argparse.Namespace, required: bool) -> str | None:
    """The control token a client command sends: --control-token-file, --keys, or
    OSTINATO_CONTROL_TOKEN (None when none is given and it is not ``required``)."""
    from ._messaging._token import (
        CONTROL_TOKEN_ENV,
        ControlTokenError,
        read_token_file,
        token_from_env,
        token_from_keys_file,
    )

    if args.control_token_file is not None:
        token: str | None = read_token_file(args.control_token_file)
    elif args.keys is not None:
        token = token_from_keys_file(args.keys)
    else:
        token = token_from_env()
    if token is None and required:
        raise ControlTokenError(
            "no control token: give --control-token-file FILE (the file 'ostinato run' names "
            f"at start-up), --keys FILE or {CONTROL_TOKEN_ENV}"
        )
    return token


def cmd_client(args: argparse.Namespace) -> int:
    """``ostinato status`` and ``ostinato control``: a running workflow, over its HTTP."""
    from ._messaging._token import ControlTokenError
    from ._observe._client import control_command, status_command

    try:
        token = _client_token(args, required=args.command == "control")
    except ControlTokenError as exc:
        print(f"ostinato {args.command}: {exc}", file=sys.stderr)
        return 1
    if args.command == "status":
        return status_command(args.url, args.json, args.timeout, token)
    assert token is not None
    return control_command(
        args.url,
        args.loop,
        DesiredState(args.state),
        token,
        as_json=args.json,
        timeout=args.timeout,
    )


def cmd_distributed(args: argparse.Namespace) -> int:
    from ._hosting._distributed import run_hub, run_loop

    # The hub runs no node and a loop only its own: neither imports the other loops' classes,
    # so a loop's image may carry nodes only that loop has.
    own = () if args.command == "hub" else (args.loop_name,)
    plan = _load_or_report(args.file, own)
    if plan is None:
        return 1
    configure_logging(args.log_format, logging.getLevelName(args.log_level.upper()), plan.name)
    import zmq

    from ._messaging._security import CurveKeyError
    from ._messaging._store import DurableStoreError
    from ._messaging._token import ControlTokenError
    from ._observe._console import ConsoleSettings
    from ._observe._http import HttpSettings

    if args.command == "hub" and (args.ui or args.ui_managed_by_operator):
        wrong = "--ui needs --http-port" if args.http_port is None else None
        if args.ui_managed_by_operator and not args.ui:
            wrong = "--ui-managed-by-operator needs --ui"
        if wrong is not None:
            print(f"ostinato hub: {wrong}", file=sys.stderr)
            return 1
    if args.command == "loop" and args.loop_name not in {lp.name for lp in plan.loops}:
        print(
            f"{args.file}: workflow {plan.name!r} has no loop {args.loop_name!r}", file=sys.stderr
        )
        return 1
    try:
        if args.command == "hub":
            return run_hub(
                plan,
                args.bind,
                keys_path=args.keys,
                insecure=args.insecure,
                state_dir=args.state_dir,
                http_host=args.http_host,
                http_port=args.http_port,
                http_settings=HttpSettings(token_for_reads=args.token_for_reads),
                control_token_file=args.control_token_file,
                console=ConsoleSettings(managed_by_operator=args.ui_managed_by_operator)
                if args.ui
                else None,
                spec_file=args.file,
            )
        return run_loop(
            plan,
            args.loop_name,
            args.hub,
            keys_path=args.keys,
            insecure=args.insecure,
            replica=args.replica,
            max_iterations=args.iterations,
            http_host=args.http_host,
            http_port=args.http_port,
            final_state_file=args.final_state_file,
        )
    except (CurveKeyError, ControlTokenError, DurableStoreError, zmq.ZMQError, OSError) as exc:
        print(f"ostinato {args.command}: {exc}", file=sys.stderr)
        return 1


def cmd_operator(argv: list[str]) -> int:
    """``ostinato operator ARGS``: become ``ostinato-operator ARGS`` (one image, two modes;
    the runtime never imports the operator, it hands the process over)."""
    program = shutil.which("ostinato-operator")
    if program is None:
        print(
            "ostinato operator: 'ostinato-operator' is not installed "
            "(pip install 'ostinato[operator]')",
            file=sys.stderr,
        )
        return 127
    os.execv(program, [program, *argv])


#: The console script the operator package installs for ``kubectl ostinato``.
PLUGIN_SCRIPT = "kubectl-ostinato"


def cmd_k8s(argv: list[str]) -> int:
    """``ostinato k8s ARGS``: the kubectl plugin's ``main``, found by its entry point when
    called (the runtime imports nothing of the operator, and works without it)."""
    from importlib.metadata import entry_points

    found = entry_points(group="console_scripts", name=PLUGIN_SCRIPT)
    try:
        plugin = next(iter(found)).load()
    except (StopIteration, ImportError) as exc:
        why = f" ({exc})" if isinstance(exc, ImportError) else ""
        print(
            f"ostinato k8s: the kubectl plugin is not installed{why}: "
            "pip install 'ostinato[operator]'",
            file=sys.stderr,
        )
        return 1
    code: int = plugin(argv, prog="ostinato k8s")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["operator"]:
        return cmd_operator(argv[1:])
    if argv[:1] == ["k8s"]:
        return cmd_k8s(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return cmd_validate(args.files)
    if args.command in ("status", "control"):
        return cmd_client(args)
    if args.command == "keys":
        from ._messaging._security import keys_command

        return keys_command(args.out)
    if args.command in ("hub", "loop"):
        return cmd_distributed(args)
    return cmd_run(args)
