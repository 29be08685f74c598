"""`python -m hack.k8s <command>`: one entry point for the Makefile's Kubernetes targets."""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module that implements it, one-line help). Each module defines
# `add_cli_arguments(parser)` and `cli_main(args) -> int` (the process exit status).
COMMANDS: dict[str, tuple[str, str]] = {
    "apt-install": ("hack.k8s.apt", "install Debian packages (lists refreshed when needed)"),
    "binaries": ("hack.k8s.binaries", "find or build the Kubernetes binaries; print their paths"),
    "control-plane": (
        "hack.k8s.controlplane",
        "run etcd + kube-apiserver + kube-controller-manager in the foreground",
    ),
    # "module:prefix" means `add_<prefix>_arguments` and `<prefix>_main` in that module.
    "cluster-up": ("hack.k8s.cluster:up", "start the single-node cluster (kept running)"),
    "cluster-down": ("hack.k8s.cluster:down", "stop it and remove everything it left"),
    "image-local": (
        "hack.k8s.cluster:image_local",
        "build localhost/ostinato:dev into containerd (k8s.io)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.k8s", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (target, help_text) in COMMANDS.items():
        module_name, _, prefix = target.partition(":")
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=help_text, description=help_text)
        getattr(module, f"add_{prefix}_arguments" if prefix else "add_cli_arguments")(sub)
        sub.set_defaults(run=getattr(module, f"{prefix}_main" if prefix else "cli_main"))
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
