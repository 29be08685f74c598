"""The wire protocol: every message kind a loop and the hub exchange, the shape of each, the one
validator both sides use, and how puts and deliveries are batched into frames.

A frame is a versioned msgpack map (never pickle): ``{"v": VERSION, "t": kind, **fields}``.
``encode`` builds one; ``parse`` decodes one and checks it against its kind's shape, raising a
one-line :class:`WireError` that names the kind and the field. A receiver drops such a frame,
counts or logs it, and goes on: a bad frame is never fatal. Fields a shape does not name are
let through and ignored (a newer peer may send more). A frame of another VERSION is refused
with an error naming both versions: the shapes change between versions, so it is never read.

The data path moves batches: a writer's run of puts to one queue is one ``puts`` frame (its
payloads, the distinct metas of the run once each, and which meta each payload has), a run of
deliveries to one reader one ``msgs`` frame, and acknowledgements are runs of numbers
(``[lo, hi]``: everything from lo up to hi), a pair per gap, not a number per message.

No ZeroMQ here: sockets are the business of ``_hub``, ``_client`` and ``_channel``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import is_
from typing import Any, Final, Literal, TypedDict, TypeVar

import msgpack

from .._model._spec import DesiredState

__all__ = [
    "BATCH_BYTES",
    "FIELDS",
    "FROM_HUB",
    "KINDS",
    "SHAPES",
    "TO_HUB",
    "VERSION",
    "Kind",
    "WireError",
    "batches",
    "decode",
    "encode",
    "parse",
    "runs",
    "shared",
    "validate",
]

#: 2: batch frames (payloads, shared metas) and acknowledgements as runs of numbers.
VERSION = 2
#: The largest message a queue may carry (QueueSpec.maxMessageBytes is capped at it).
MAX_MESSAGE_BYTES = 64 << 20
#: Puts and deliveries are batched up to this many payload bytes a frame (one message more
#: if a single one is larger), so a frame stays within MAX_FRAME_BYTES.
BATCH_BYTES = 1 << 20
#: A larger frame is malformed, not a message: one maximal message plus its envelope.
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + (1 << 20)
#: The most credit a reader may give the hub in one subscription.
MAX_CREDIT = 1_000_000


class WireError(ValueError):
    """A frame that is not a valid message: dropped and counted, never fatal."""


class Kind:
    """Every message kind, named once: the value of an envelope's ``"t"``."""

    # A loop's control socket → the hub (hello: a process loop's handshake, answered by its
    # parent with config; status and ping: heartbeats, answered with pong).
    HELLO: Final = "hello"
    STATUS: Final = "status"
    PING: Final = "ping"
    # Either socket → the hub: the peer leaves (the hub redelivers what it had not acked).
    BYE: Final = "bye"
    # A loop's data socket → the hub.
    PUTS: Final = "puts"
    ACK: Final = "ack"
    #: A reader gives messages back unacknowledged (a batch whose iteration failed): the hub
    #: redelivers them under the queue's rules, as it does those of a lost reader.
    GIVE_BACK: Final = "giveBack"
    SUB: Final = "sub"
    RELEASE: Final = "release"
    # The hub → a loop's control socket.
    PONG: Final = "pong"
    CONFIG: Final = "config"
    CONTROL: Final = "control"
    # The hub → a loop's data socket (error also to the control socket).
    MSGS: Final = "msgs"
    ACKS: Final = "acks"
    ERROR: Final = "error"
    RELEASED: Final = "released"
    RESUBSCRIBE: Final = "resubscribe"
    #: The hub → a writer: puts of a queue reached it out of order (it restarted, or frames
    #: were lost): send again every unacknowledged put from ``seq`` on, in order.
    REWIND: Final = "rewind"


# -- the shape of each kind ----------------------------------------------------------------------
#
# Rows of the data path are msgpack arrays (lists once decoded; tuples are only how their
# fields are typed here). A run is [lo, hi], lo <= hi: the numbers lo, lo + 1, ..., hi. A
# refusal of a put is [seq, error].

Run = tuple[int, int]
Refusal = tuple[int, str]
#: A desired state on the wire: a :class:`DesiredState` value, the vocabulary of the spec,
#: POST /control and the status.
State = Literal["running", "paused", "stopped"]


class Hello(TypedDict):
    pid: int
    loop: str


class _StatusRequired(TypedDict):
    status: dict[str, Any]  # a LoopStatus, as JSON; its owner validates it


class Status(_StatusRequired, total=False):
    final: bool  # the loop has ended: this status is its last
    awaiting: bool  # the loop waits for the hub to say its desired state (a control)


class Empty(TypedDict):
    """ping, bye, resubscribe: the kind says it all."""


class _PutsRequired(TypedDict):
    q: str
    seq: int  # the first payload's sequence number; payload i has seq + i
    payloads: list[bytes]
    metas: list[bytes]  # the distinct metas of the run, once each
    #: The writer's oldest put of q not yet acknowledged (at most seq): a hub that has not
    #: seen the puts from there on asks for them (rewind) rather than take these out of order.
    since: int
    #: The writer's connection, a random number: another one is another run of numbers.
    epoch: int


class Puts(_PutsRequired, total=False):
    #: Per payload, its meta's index in metas; left out: all have metas[0] (one meta) or
    #: payload i has metas[i] (a meta each).
    meta: list[int]


class Ack(TypedDict):
    q: str
    loop: str
    runs: list[Run]  # message ids the reader is done with


class GiveBack(TypedDict):
    q: str
    loop: str
    ids: list[int]


class Sub(TypedDict):
    q: str
    loop: str
    credit: int  # 0 to MAX_CREDIT


class Release(TypedDict):
    q: str
    loop: str


class Pong(TypedDict):
    hub: str  # the hub's id: another one means it restarted


class Config(TypedDict):
    document: str  # the normalized workflow document, as JSON
    loop: str
    replica: int
    desired: State  # the state the loop starts in
    maxIterations: int | None
    sysPath: list[str]
    logFormat: str
    logLevel: int


class Control(TypedDict):
    state: State  # what the loop is asked to do from its next iteration boundary


class _MsgsRequired(TypedDict):
    q: str
    ids: list[int]
    payloads: list[bytes]
    metas: list[bytes]


class Msgs(_MsgsRequired, total=False):
    meta: list[int]  # as in puts
    redelivered: list[int]  # the positions of the messages that are redeliveries


class _AcksRequired(TypedDict):
    q: str
    runs: list[Run]  # sequence numbers of this peer's puts to q that the hub has


class Acks(_AcksRequired, total=False):
    refused: list[Refusal]  # puts the hub refused (not in runs)


class Error(TypedDict):
    q: str
    error: str


class Released(TypedDict):
    q: str


class Rewind(TypedDict):
    q: str
    seq: int


#: Every kind and its shape.
SHAPES: Final[dict[str, type[Any]]] = {
    Kind.HELLO: Hello,
    Kind.STATUS: Status,
    Kind.PING: Empty,
    Kind.BYE: Empty,
    Kind.PUTS: Puts,
    Kind.ACK: Ack,
    Kind.GIVE_BACK: GiveBack,
    Kind.SUB: Sub,
    Kind.RELEASE: Release,
    Kind.PONG: Pong,
    Kind.CONFIG: Config,
    Kind.CONTROL: Control,
    Kind.MSGS: Msgs,
    Kind.ACKS: Acks,
    Kind.ERROR: Error,
    Kind.RELEASED: Released,
    Kind.RESUBSCRIBE: Empty,
    Kind.REWIND: Rewind,
}
KINDS: Final = frozenset(SHAPES)
#: What the hub accepts, from either socket of a loop.
TO_HUB: Final = frozenset(
    {
        Kind.HELLO,
        Kind.STATUS,
        Kind.PING,
        Kind.BYE,
        Kind.PUTS,
        Kind.ACK,
        Kind.GIVE_BACK,
        Kind.SUB,
        Kind.RELEASE,
    }
)
#: What a loop accepts from the hub.
FROM_HUB: Final = KINDS - TO_HUB


# -- field checks ----------------------------------------------------------------------------------
# Written by hand, not derived from the TypedDicts at run time (the tests keep the two equal):
# the row checks are on the data path.

#: A check returns None when the value fits, else what the field should have been.
Check = Callable[[Any], str | None]


def _exact(t: type, name: str) -> Check:
    def check(value: Any) -> str | None:
        return None if type(value) is t else name

    return check


def _optional(inner: Check) -> Check:
    def check(value: Any) -> str | None:
        expected = None if value is None else inner(value)
        return None if expected is None else f"{expected} or nil"

    return check


def _list_of(t: type, name: str) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is list:
            for x in value:
                if type(x) is not t:
                    return f"a list of {name}"
            return None
        return f"a list of {name}"

    return check


# The lists of the data path, one check each, inlined: once per message, the cheapest test is
# a loop of exact type tests without a call per item.
_RUNS = "a list of [lo: int, hi: int] with 0 <= lo <= hi"
_REFUSALS = "a list of [seq: int, error: str]"


def _runs(value: Any) -> str | None:
    if type(value) is not list:
        return _RUNS
    for r in value:
        if (
            type(r) is not list
            or len(r) != 2
            or type(r[0]) is not int
            or type(r[1]) is not int
            or not 0 <= r[0] <= r[1]
        ):
            return _RUNS
    return None


def _refusals(value: Any) -> str | None:
    if type(value) is not list:
        return _REFUSALS
    for r in value:
        if type(r) is not list or len(r) != 2 or type(r[0]) is not int or type(r[1]) is not str:
            return _REFUSALS
    return None


def _batch(kind: str, msg: dict[str, Any]) -> None:
    """What no single field says of a batch: its lists are as long as its payloads, and each
    meta index and redelivered position names one of them."""
    n = len(msg["payloads"])
    if not n:
        raise WireError(f"{kind}: field 'payloads' must not be empty")
    since = msg.get("since")
    if since is not None and since > msg["seq"]:
        raise WireError(f"{kind}: field 'since' must be at most seq ({msg['seq']}), not {since}")
    ids = msg.get("ids")
    if ids is not None and len(ids) != n:
        raise WireError(f"{kind}: field 'ids' must have one id per payload ({n}), not {len(ids)}")
    metas = len(msg["metas"])
    index = msg.get("meta")
    if index is None:
        if metas != 1 and metas != n:
            raise WireError(
                f"{kind}: field 'meta' is missing (needed with {metas} metas for {n} payloads)"
            )
    else:
        if len(index) != n:
            raise WireError(
                f"{kind}: field 'meta' must have one index per payload ({n}), not {len(index)}"
            )
        for i in index:
            if not 0 <= i < metas:
                raise WireError(f"{kind}: field 'meta' has index {i}, not one of {metas} metas")
    for i in msg.get("redelivered", ()):
        if not 0 <= i < n:
            raise WireError(f"{kind}: field 'redelivered' has position {i}, not one of {n}")


def _int_between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        return None if type(value) is int and low <= value <= high else f"an int {low}..{high}"

    return check


def _one_of(*values: str) -> Check:
    def check(value: Any) -> str | None:
        return None if type(value) is str and value in values else " or ".join(map(repr, values))

    return check


_STR = _exact(str, "a string")
_INT = _exact(int, "an int")
_BOOL = _exact(bool, "a bool")
_MAP = _exact(dict, "a map")
_STATE = _one_of(*(s.value for s in DesiredState))
_BYTES_LIST = _list_of(bytes, "bytes")
_INT_LIST = _list_of(int, "ints")

#: Per kind, its fields: name → (required, check). Kept equal to SHAPES by the tests.
FIELDS: Final[dict[str, dict[str, tuple[bool, Check]]]] = {
    Kind.HELLO: {"pid": (True, _INT), "loop": (True, _STR)},
    Kind.STATUS: {"status": (True, _MAP), "final": (False, _BOOL), "awaiting": (False, _BOOL)},
    Kind.PING: {},
    Kind.BYE: {},
    Kind.PUTS: {
        "q": (True, _STR),
        "seq": (True, _INT),
        "payloads": (True, _BYTES_LIST),
        "metas": (True, _BYTES_LIST),
        "meta": (False, _INT_LIST),
        "since": (True, _INT),
        "epoch": (True, _INT),
    },
    Kind.ACK: {"q": (True, _STR), "loop": (True, _STR), "runs": (True, _runs)},
    Kind.GIVE_BACK: {
        "q": (True, _STR),
        "loop": (True, _STR),
        "ids": (True, _list_of(int, "ints")),
    },
    Kind.SUB: {
        "q": (True, _STR),
        "loop": (True, _STR),
        "credit": (True, _int_between(0, MAX_CREDIT)),
    },
    Kind.RELEASE: {"q": (True, _STR), "loop": (True, _STR)},
    Kind.PONG: {"hub": (True, _STR)},
    Kind.CONFIG: {
        "document": (True, _STR),
        "loop": (True, _STR),
        "replica": (True, _INT),
        "desired": (True, _STATE),
        "maxIterations": (True, _optional(_INT)),
        "sysPath": (True, _list_of(str, "strings")),
        "logFormat": (True, _STR),
        "logLevel": (True, _INT),
    },
    Kind.CONTROL: {"state": (True, _STATE)},
    Kind.MSGS: {
        "q": (True, _STR),
        "ids": (True, _INT_LIST),
        "payloads": (True, _BYTES_LIST),
        "metas": (True, _BYTES_LIST),
        "meta": (False, _INT_LIST),
        "redelivered": (False, _INT_LIST),
    },
    Kind.ACKS: {"q": (True, _STR), "runs": (True, _runs), "refused": (False, _refusals)},
    Kind.ERROR: {"q": (True, _STR), "error": (True, _STR)},
    Kind.RELEASED: {"q": (True, _STR)},
    Kind.RESUBSCRIBE: {},
    Kind.REWIND: {"q": (True, _STR), "seq": (True, _INT)},
}


# -- encoding, decoding, validating ----------------------------------------------------------------


#: Each thread's msgpack packer, made once: ``msgpack.packb`` makes one a call, with its
#: buffer (0.7 us a frame, half of a small frame's encoding).
_packers = threading.local()
#: A packer's buffer stays as large as the largest frame it packed: after a larger frame its
#: thread makes a new one.
_KEEP_BYTES = 2 * BATCH_BYTES


def encode(kind: str, **fields: Any) -> bytes:
    """A frame of ``kind`` (unchecked: what this process sends, the tests check)."""
    return pack({"v": VERSION, "t": kind, **fields})


def envelope(kind: str, **fields: Any) -> dict[str, Any]:
    """The message :func:`encode` makes a frame of, as it is decoded: what a link carries
    (``_local``: both ends in this process, so no frame is made)."""
    return {"v": VERSION, "t": kind, **fields}


def pack(msg: dict[str, Any]) -> bytes:
    """The frame of an :func:`envelope`, packed by this thread's packer."""
    try:
        packer = _packers.pack
    except AttributeError:
        packer = _packers.pack = msgpack.Packer(use_bin_type=True).pack
    frame: bytes = packer(msg)
    if len(frame) > _KEEP_BYTES:
        del _packers.pack
    return frame


def decode(frame: bytes) -> dict[str, Any]:
    """The envelope of a frame, its fields unchecked (see :func:`parse`)."""
    if len(frame) > MAX_FRAME_BYTES:
        raise WireError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise WireError(f"undecodable frame: {type(exc).__name__}: {exc}") from None
    if type(msg) is not dict:
        raise WireError("envelope is not a map")
    if msg.get("v") != VERSION:
        version = msg.get("v")
        shown = version if type(version) is int else repr(version)[:32]
        raise WireError(
            f"wire version {shown} from the peer, this side speaks version {VERSION}: the two "
            "do not talk (run the same ostinato version on both sides)"
        )
    if type(msg.get("t")) is not str:
        raise WireError("envelope has no message type 't'")
    return msg


def _lone_put(msg: dict[str, Any]) -> bool:
    """A puts of one payload and one meta that fits its shape: the lone message's frame,
    checked in one expression (the general check names the field when this says no)."""
    payloads, metas = msg.get("payloads"), msg.get("metas")
    seq, since = msg.get("seq"), msg.get("since")
    return (
        type(msg.get("q")) is str
        and type(seq) is int
        and type(since) is int
        and type(msg.get("epoch")) is int
        and type(payloads) is list
        and len(payloads) == 1
        and type(payloads[0]) is bytes
        and type(metas) is list
        and len(metas) == 1
        and type(metas[0]) is bytes
        and "meta" not in msg
        and since <= seq
    )


def validate(msg: dict[str, Any], accept: frozenset[str] = KINDS) -> None:
    """Check a decoded envelope against its kind's shape; WireError naming kind and field."""
    kind = msg["t"]
    if kind == Kind.PUTS and _lone_put(msg) and kind in accept:
        return
    if (  # a reader's acknowledgement, the other frame of every message, checked in one go
        kind == Kind.ACK
        and type(msg.get("q")) is str
        and type(msg.get("loop")) is str
        and _runs(msg.get("runs")) is None
        and kind in accept
    ):
        return
    fields = FIELDS.get(kind) if kind in accept else None
    if fields is None:
        why = "unknown" if kind not in FIELDS else "not expected here"
        raise WireError(f"message kind {kind[:64]!r} is {why}")
    for name, (required, check) in fields.items():
        if name in msg:
            expected = check(msg[name])
            if expected is not None:
                got = type(msg[name]).__name__
                raise WireError(f"{kind}: field {name!r} must be {expected}, not {got}")
        elif required:
            raise WireError(f"{kind}: field {name!r} is missing")
    if kind == Kind.PUTS or kind == Kind.MSGS:
        _batch(kind, msg)


def parse(frame: bytes, accept: frozenset[str] = KINDS) -> dict[str, Any]:
    """Decode a frame and check it (``accept``: the kinds this receiver takes)."""
    msg = decode(frame)
    validate(msg, accept)
    return msg


# -- batching ------------------------------------------------------------------------------------

R = TypeVar("R", bound=Sequence[Any])


def runs(numbers: Iterable[int]) -> list[list[int]]:
    """Numbers as runs [lo, hi] of consecutive ones, ascending (duplicates once)."""
    if type(numbers) is list and len(numbers) == 1:  # the lone message's
        return [[numbers[0], numbers[0]]]
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and n <= out[-1][1] + 1:
            if n > out[-1][1]:
                out[-1][1] = n
        else:
            out.append([n, n])
    return out


def shared(metas: Sequence[bytes]) -> tuple[list[bytes], list[int] | None]:
    """A batch's metas once each, and each payload's index among them; None instead of the
    indexes when they all share the first, or each has its own (then metas go one a payload).
    Once each by object, not by value: the messages of one writer's run share its meta
    object, and comparing by identity costs no hashing (nor, for the common case of one
    object, a Python step per payload: ``map`` and ``operator.is_`` run in C)."""
    if not metas:
        return [], None
    first = metas[0]
    if all(map(is_, metas, repeat(first))):  # one message, or one writer's list
        return [first], None
    distinct: list[bytes] = []
    index: list[int] = []
    seen: dict[int, int] = {}
    for meta in metas:
        i = seen.get(id(meta))
        if i is None:
            i = seen[id(meta)] = len(distinct)
            distinct.append(meta)
        index.append(i)
    if len(distinct) == len(metas):  # a meta each (puts of separate iterations): no index
        return distinct, None
    return distinct, index


def batches(rows: list[R]) -> Iterator[list[R]]:
    """Puts or deliveries (rows with the payload at 1 and the meta at 2) in runs of at most
    BATCH_BYTES, a frame each; a larger row travels alone. Most often a single run: ``rows``."""
    if not rows:
        return
    if sum([len(row[1]) + len(row[2]) for row in rows]) <= BATCH_BYTES:  # the common case
        yield rows
        return
    start = total = 0
    for i, row in enumerate(rows):
        n = len(row[1]) + len(row[2])
        if total + n > BATCH_BYTES and i > start:
            yield rows[start:i]
            start, total = i, 0
        total += n
    yield rows[start:] if start else rows
