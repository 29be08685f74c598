"""The versioned msgpack envelope for everything that crosses a process: never pickle."""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["VERSION", "WireError", "decode", "encode"]

VERSION = 1
#: Control and status messages are small; a larger frame is malformed, not a message.
MAX_CONTROL_BYTES = 4 << 20


class WireError(ValueError):
    """A frame that is not a valid envelope: dropped and counted, never fatal."""


def encode(kind: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": VERSION, "t": kind, **fields}, use_bin_type=True)  # type: ignore[no-any-return]


def decode(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_CONTROL_BYTES:
        raise WireError(f"frame of {len(frame)} bytes exceeds {MAX_CONTROL_BYTES}")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise WireError(f"undecodable frame: {type(exc).__name__}: {exc}") from None
    if not isinstance(msg, dict):
        raise WireError("envelope is not a map")
    if msg.get("v") != VERSION:
        raise WireError(f"unsupported envelope version {msg.get('v')!r}")
    if not isinstance(msg.get("t"), str):
        raise WireError("envelope has no message type 't'")
    return msg
