"""The versioned msgpack envelope for everything that crosses a process: never pickle."""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["VERSION", "WireError", "decode", "encode"]

VERSION = 1
#: The largest message a queue may carry (QueueSpec.maxMessageBytes is capped at it).
MAX_MESSAGE_BYTES = 64 << 20
#: Puts and deliveries are batched up to this many payload bytes a frame (one message more
#: if a single one is larger), so a frame stays within MAX_FRAME_BYTES.
BATCH_BYTES = 1 << 20
#: A larger frame is malformed, not a message: one maximal message plus its envelope.
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + (1 << 20)


class WireError(ValueError):
    """A frame that is not a valid envelope: dropped and counted, never fatal."""


def encode(kind: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": VERSION, "t": kind, **fields}, use_bin_type=True)  # type: ignore[no-any-return]


def decode(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_FRAME_BYTES:
        raise WireError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
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
