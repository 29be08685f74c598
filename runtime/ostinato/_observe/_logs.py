"""Logging set-up: text for people, JSON lines with workflow/loop/node/iteration for machines.

Every record logged while a loop runs (on its thread or task, and in its node and side-effect
worker threads) learns which loop replica and iteration it belongs to from :data:`LOG_CONTEXT`,
which the engine sets once per loop; nothing is done per node call. Process-pool children
log JSON lines to a pipe that the parent reads (:func:`relay_child_logs`) and re-emits through
its own handlers, so their lines come out in the parent's format, level and stream, each
attributed to its loop.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from datetime import datetime
from typing import IO, Protocol

__all__ = [
    "LOG_CONTEXT",
    "ContextFilter",
    "JsonFormatter",
    "configure_logging",
    "record_from_child",
    "relay_child_logs",
]

_TEXT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class LogSource(Protocol):
    """What a running loop tells its log records (the engine's LoopManager)."""

    workflow: str
    name: str
    replica: int

    @property
    def log_iteration(self) -> int | None: ...


#: The loop replica whose code is running in this thread or task (None outside loops).
LOG_CONTEXT: contextvars.ContextVar[LogSource | None] = contextvars.ContextVar(
    "ostinato_log_context", default=None
)


def _where(name: str) -> tuple[str | None, str | None]:
    """Logger name -> (loop, node): ostinato.loop.<loop>, ostinato.node.<loop>.<node>."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "ostinato" and parts[1] == "loop":
        return parts[2], None
    if len(parts) >= 4 and parts[0] == "ostinato" and parts[1] == "node":
        return parts[2], ".".join(parts[3:])
    return None, None


def annotate(
    record: logging.LogRecord, workflow: str | None = None, loop: str | None = None
) -> None:
    """Give ``record`` its ``workflow``, ``loop``, ``replica``, ``node`` and ``iteration``
    (attributes it already has win: a child's records carry their own)."""
    fields = record.__dict__
    named_loop, node = _where(record.name)
    source = None if "iteration" in fields else LOG_CONTEXT.get()
    if source is not None:
        fields.setdefault("workflow", source.workflow)
        fields.setdefault("loop", named_loop or source.name)
        fields.setdefault("replica", source.replica)
        fields.setdefault("iteration", source.log_iteration)
    fields.setdefault("workflow", workflow)
    fields.setdefault("loop", named_loop or loop)
    fields.setdefault("replica", None)
    fields.setdefault("node", node)
    fields.setdefault("iteration", None)


class ContextFilter(logging.Filter):
    """Handler filter: annotates every record (see :func:`annotate`); never drops one."""

    def __init__(self, workflow: str | None = None, loop: str | None = None) -> None:
        super().__init__()
        self.workflow = workflow
        self.loop = loop

    def filter(self, record: logging.LogRecord) -> bool:
        annotate(record, self.workflow, self.loop)
        return True


def _timestamp(created: float) -> str:
    msecs = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{msecs:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``loop`` and ``node`` come from the context or logger name."""

    def __init__(self, workflow: str | None = None, loop: str | None = None) -> None:
        super().__init__()
        self.workflow = workflow
        self.loop = loop

    def format(self, record: logging.LogRecord) -> str:
        annotate(record, self.workflow, self.loop)
        out: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "workflow": getattr(record, "workflow", None),
            "loop": getattr(record, "loop", None),
            "replica": getattr(record, "replica", None),
            "node": getattr(record, "node", None),
            "iteration": getattr(record, "iteration", None),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str)


def configure_logging(
    fmt: str = "text",
    level: int = logging.INFO,
    workflow: str | None = None,
    *,
    loop: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send ostinato's logs to ``stream`` (stderr) in ``fmt`` ('text' or 'json'); replaces
    earlier set-up. ``loop`` names the loop of records that name none (a process loop's
    child). Returns the handler."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: expected 'text' or 'json'")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        JsonFormatter(workflow, loop) if fmt == "json" else logging.Formatter(_TEXT)
    )
    handler.addFilter(ContextFilter(workflow, loop))
    root = logging.getLogger("ostinato")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


def record_from_child(line: str, loop: str, replica: int) -> logging.LogRecord:
    """A record to re-emit in the parent from one line of a child's stderr.

    A JSON line from the child's :class:`JsonFormatter` keeps its logger, level, time, fields
    and traceback. Anything else (a node printing to stderr, a crash before logging was set
    up) becomes a WARNING of ``ostinato.loop.<loop>`` that quotes the line.
    """
    text = line.rstrip("\n")
    doc: object = None
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
    if not (isinstance(doc, dict) and isinstance(doc.get("logger"), str) and "level" in doc):
        return logging.makeLogRecord(
            {
                "name": f"ostinato.loop.{loop}",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "msg": "stderr: %s",
                "args": (text,),
                "loop": loop,
                "replica": replica,
                "node": None,
                "iteration": None,
            }
        )
    level = logging.getLevelName(str(doc["level"]))
    levelno = level if isinstance(level, int) else logging.WARNING
    created = time.time()
    if isinstance(doc.get("ts"), str):
        with contextlib.suppress(ValueError):
            created = datetime.fromisoformat(doc["ts"]).timestamp()
    fields: dict[str, object] = {
        "name": doc["logger"],
        "levelno": levelno,
        "levelname": logging.getLevelName(levelno),
        "msg": str(doc.get("message", "")),
        "args": None,
        "created": created,
        "msecs": int(created * 1000) % 1000,
        "loop": doc.get("loop") or loop,
        "replica": replica if doc.get("replica") is None else doc["replica"],
        "node": doc.get("node"),
        "iteration": doc.get("iteration"),
    }
    if doc.get("workflow") is not None:
        fields["workflow"] = doc["workflow"]
    if doc.get("exception"):
        fields["exc_text"] = str(doc["exception"])
    return logging.makeLogRecord(fields)


def relay_child_logs(stream: IO[bytes], loop: str, replica: int) -> None:
    """Read a child's stderr to its end, re-emitting each line through this process's
    handlers (the logger the record names, so its handlers and filters apply)."""
    with stream:
        for raw in stream:
            record = record_from_child(raw.decode("utf-8", "replace"), loop, replica)
            logging.getLogger(record.name).handle(record)
