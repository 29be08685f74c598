"""Logging set-up: text for people, JSON lines with workflow/loop/node/iteration for machines."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "configure_logging"]

_TEXT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _where(name: str) -> tuple[str | None, str | None]:
    """Logger name -> (loop, node): ostinato.loop.<loop>, ostinato.node.<loop>.<node>."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "ostinato" and parts[1] == "loop":
        return parts[2], None
    if len(parts) >= 4 and parts[0] == "ostinato" and parts[1] == "node":
        return parts[2], ".".join(parts[3:])
    return None, None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``loop`` and ``node`` come from the logger's name."""

    def __init__(self, workflow: str | None = None) -> None:
        super().__init__()
        self.workflow = workflow

    def format(self, record: logging.LogRecord) -> str:
        loop, node = _where(record.name)
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "workflow": getattr(record, "workflow", self.workflow),
            "loop": getattr(record, "loop", loop),
            "node": getattr(record, "node", node),
            "iteration": getattr(record, "iteration", None),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(
    fmt: str = "text", level: int = logging.INFO, workflow: str | None = None
) -> None:
    """Send ostinato's logs to stderr in ``fmt`` ('text' or 'json'); replaces earlier set-up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(workflow) if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger("ostinato")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
