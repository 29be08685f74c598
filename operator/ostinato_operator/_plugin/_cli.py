"""The plugin's command line: flags as kubectl spells them, one verb per job, one line per error."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import urllib3
import yaml

from ostinato import DesiredState

from ._connect import Target, connect
from ._errors import PluginError

__all__ = ["build_parser", "main"]

_STATES = {
    "pause": DesiredState.PAUSED,
    "resume": DesiredState.RUNNING,
    "stop": DesiredState.STOPPED,
}


class _Parser(argparse.ArgumentParser):
    """Bad flags or arguments: one line (and exit 1) like every other error of the plugin,
    not argparse's usage block and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: {message} (--help for usage)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def _kube_flags(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """kubectl's connection flags; given before or after the verb (kubectl passes both on)."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file ($KUBECONFIG)")
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )


def build_parser(prog: str = "kubectl ostinato") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="The daily verbs on ostinato Workflows, by loop name: get, pause, resume, "
        "stop, scale, logs, validate, console.",
    )
    _kube_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _kube_flags(p, suppress=True)
        return p

    get = verb("get", "a tree of each Workflow: loops, nodes, queues and conditions")
    get.add_argument("workflow", nargs="?", help="one Workflow (default: every one)")
    get.add_argument("-o", "--output", choices=["tree", "json", "yaml"], default="tree")
    get.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace's Workflows"
    )

    for name, state in _STATES.items():
        p = verb(name, f"set loops' desired state to {state.value} (every loop if none is named)")
        p.add_argument("workflow")
        p.add_argument("loops", nargs="*", metavar="LOOP", default=[])
        _wait_flags(p)

    scale = verb("scale", "set a loop's replicas, or an autoscaled loop's bounds")
    scale.add_argument("workflow")
    scale.add_argument("loop")
    scale.add_argument("--replicas", type=int, help="how many pods (0 or more)")
    scale.add_argument("--min-replicas", type=int, help="an autoscaled loop's fewest pods")
    scale.add_argument("--max-replicas", type=int, help="an autoscaled loop's most pods")
    _wait_flags(scale)

    logs = verb("logs", "every replica's log of a Workflow's loops, interleaved by time")
    logs.add_argument("workflow")
    logs.add_argument("loop", nargs="?", help="only this loop's replicas")
    logs.add_argument("--node", help="only the records of this node")
    logs.add_argument("-f", "--follow", action="store_true", help="go on printing new lines")
    logs.add_argument("--since", metavar="DURATION", help="only lines newer than 30s, 5m, 1h")

    validate = verb(
        "validate", "ostinato validate's checks, then a server-side dry run on the cluster"
    )
    validate.add_argument("file", type=Path)

    console = verb("console", "port-forward to the Workflow's hub and print the URL to open")
    console.add_argument("workflow")
    console.add_argument("--port", type=int, default=0, help="local port (default: a free one)")
    return parser


def _wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="return once the status shows the new state"
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=120.0, metavar="SECONDS", help="for --wait (120)"
    )


def _print_workflows(target: Target, args: argparse.Namespace) -> int:
    from ._tree import render_trees
    from ._workflows import get_workflow, list_workflows

    if args.workflow and args.all_namespaces:
        raise PluginError("get: a Workflow's name and --all-namespaces do not go together")
    if args.workflow:
        found = [get_workflow(target, args.workflow)]
    else:
        found = list_workflows(target, args.all_namespaces)
    if args.output == "json":
        doc = found[0] if args.workflow else {"items": found}
        print(json.dumps(doc, indent=2, sort_keys=False))
    elif args.output == "yaml":
        doc = found[0] if args.workflow else {"items": found}
        print(yaml.safe_dump(doc, sort_keys=False), end="")
    elif not found:
        where = "any namespace" if args.all_namespaces else f"namespace {target.namespace}"
        print(f"no workflows in {where}")
    else:
        print(render_trees(found))
    return 0


def _set_state(target: Target, args: argparse.Namespace) -> int:
    from ._control import set_state, wait_for_states

    state = _STATES[args.verb]
    outcome = set_state(target, args.workflow, args.loops, state)
    which = ", ".join(args.loops) if args.loops else "every loop"
    print(f"workflow {args.workflow}: {which} {state.value} (generation {outcome.generation})")
    if args.wait:
        wait_for_states(target, args.workflow, outcome, args.timeout)
        print(f"workflow {args.workflow}: the status shows it")
    return 0


def _scale(target: Target, args: argparse.Namespace) -> int:
    from ._control import scale, scale_bounds, wait_for_states
    from ._workflows import loop_index

    bounds = (args.min_replicas, args.max_replicas)
    if args.replicas is not None and bounds != (None, None):
        raise PluginError("scale: --replicas, or --min-replicas/--max-replicas, not both")
    if args.replicas is not None:
        outcome = scale(target, args.workflow, args.loop, args.replicas)
        print(f"workflow {args.workflow}: loop {args.loop} scaled to {args.replicas} replica(s)")
    else:
        outcome = scale_bounds(target, args.workflow, args.loop, *bounds)
        index = loop_index(outcome.workflow, args.loop)
        autoscale = outcome.workflow["spec"]["loops"][index]["autoscale"]
        print(
            f"workflow {args.workflow}: loop {args.loop} autoscales between "
            f"{autoscale.get('minReplicas', 1)} and {autoscale['maxReplicas']} replicas"
        )
    if args.wait:
        wait_for_states(target, args.workflow, outcome, args.timeout)
        print(f"workflow {args.workflow}: the status shows it")
    return 0


def _logs(target: Target, args: argparse.Namespace) -> int:
    from ._logs import show_logs

    return show_logs(target, args.workflow, args.loop, args.node, args.since, args.follow)


def _validate(target: Target, args: argparse.Namespace) -> int:
    from ._validate import validate_file

    print(validate_file(target, args.file))
    return 0


def _console(target: Target, args: argparse.Namespace) -> int:
    from ._console import console

    if not 0 <= args.port <= 65535:
        raise PluginError(f"--port must be a TCP port (0: a free one), got {args.port}")
    return console(target, args.workflow, args.port, args.kubeconfig, args.context)


_VERBS: dict[str, Callable[[Target, argparse.Namespace], int]] = {
    "get": _print_workflows,
    "pause": _set_state,
    "resume": _set_state,
    "stop": _set_state,
    "scale": _scale,
    "logs": _logs,
    "validate": _validate,
    "console": _console,
}


def main(argv: list[str] | None = None, prog: str = "kubectl ostinato") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    target: Target | None = None
    try:
        target = connect(args.kubeconfig, args.context, args.namespace)
        return _VERBS[args.verb](target, args)
    except PluginError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        where = target.api.configuration.host if target is not None else "the API server"
        print(f"{prog}: cannot reach {where}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if target is not None:
            target.close()
