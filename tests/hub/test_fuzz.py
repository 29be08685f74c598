"""Fuzzing the hub's ROUTER (docs/messaging.md): a malformed frame is dropped and counted and never
takes the hub down, while well-behaved clients keep being served.

A DEALER throws >10 000 frames at ``hub.endpoint`` (the ipc:// address process loops use):
random bytes, truncated envelopes, envelopes with wrong field types, huge integers, nested
garbage, multi-part messages, oversize frames. Between bursts a real writer and a real reader
(HubClient) must still get a put acknowledged and the message delivered. Fixed seed.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import zmq

from ostinato._messaging import _wire as _wire
from ostinato._messaging._client import HubClient, Inbox
from ostinato._messaging._hub import Hub
from ostinato._messaging._wire import WireError, decode, encode
from ostinato._model._spec import QueueSpec

SEED = 20240611
FRAMES = 12_000
BURST = 500
WAIT = 10.0

#: The wire's frame limit, whatever this version calls it: a larger frame is malformed.
FRAME_LIMIT: int = next(
    getattr(_wire, name)
    for name in ("MAX_FRAME_BYTES", "MAX_CONTROL_BYTES")
    if hasattr(_wire, name)
)

#: Every kind of the protocol, both directions (the hub refuses those it never receives), and
#: kinds that do not exist.
KINDS = [*sorted(_wire.KINDS), "?", "", "x" * 300]
#: A plausible value per field of the other kinds; each is replaced by junk half the time.
PLAUSIBLE: dict[str, Any] = {
    "pid": 1,
    "loop": "x",
    "status": {"name": "x", "replica": 0},
    "final": False,
    "awaiting": True,
    "hub": "h",
    "document": "{}",
    "replica": 0,
    "desired": "running",
    "maxIterations": None,
    "sysPath": [],
    "logFormat": "json",
    "logLevel": 20,
    "state": "paused",
    "items": [],
    "runs": [[1, 2]],
    "refused": [],
    "seq": 1,
    "payloads": [b"p"],
    "metas": [b""],
    "meta": [0],
    "redelivered": [],
    "since": 1,
    "epoch": 1,
    "error": "e",
    "q": "fz",
    "ids": [1],
}
NAMES = ["fz", "nope", "", "x" * 300, "good"]  # "good" only gets frames that cannot put into it


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def nested(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice([0, "s", b"b", None, 1.5, True])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def junk(rng: random.Random) -> Any:
    """A value of a random type: what a field should not be (sometimes it is, by luck)."""
    return rng.choice(
        [
            None,
            True,
            -1,
            0,
            7,
            2**64 - 1,
            -(2**63),
            1.5,
            float("nan"),
            "text",
            "",
            b"",
            b"\xff" * rng.randint(1, 40),
            [],
            [1, 2],
            {"a": 1},
            nested(rng, rng.randint(1, 30)),
            msgpack.ExtType(5, b"ext"),
        ]
    )


def not_int(rng: random.Random) -> Any:
    while True:
        value = junk(rng)
        if not isinstance(value, int):
            return value


def bad_batch(rng: random.Random) -> dict[str, Any]:
    """The fields of a puts frame that the hub must refuse before it puts anything: each field
    has its type, or not, but the batch never holds together."""
    n = rng.randint(1, 6)
    payloads: Any = [os.urandom(rng.randint(0, 20)) for _ in range(n)]
    metas: Any = [b"m%d" % i for i in range(rng.randint(1, 3))]
    seq = rng.randint(0, 2**62)
    fields: dict[str, Any] = {
        "seq": seq,
        "payloads": payloads,
        "metas": metas,
        "since": seq - rng.randint(0, 5),
        "epoch": rng.randint(0, 2**32),
    }
    if len(metas) > 1:
        fields["meta"] = [rng.randrange(len(metas)) for _ in range(n)]
    flaw = rng.randrange(10)
    if flaw == 0:
        fields["payloads"] = []
    elif flaw == 1:
        payloads[rng.randrange(n)] = rng.choice(["str", None, 1, 2**40, [b"x"], True])
    elif flaw == 2:
        fields["metas"] = rng.choice([[], None, "m", [b"m", 2**63], [[b"m"]]])
    elif flaw == 3:
        fields["meta"] = [rng.choice([-1, len(metas), 2**63, "0", None]) for _ in range(n)]
    elif flaw == 4:
        fields["meta"] = [0] * (n + rng.choice([-n, 1, 5]))
    elif flaw == 5:
        fields["metas"] = [b"a"] * (n + 1)
        fields.pop("meta", None)  # more metas than payloads and no index
    elif flaw == 6:
        fields["seq"] = rng.choice([not_int(rng), None, "1", True])
    elif flaw == 7:
        del fields[rng.choice(["seq", "payloads", "metas", "since", "epoch"])]
    elif flaw == 8:
        fields["since"] = seq + rng.randint(1, 2**62)  # an oldest unacknowledged after seq
    else:
        fields["payloads"] = junk(rng) if rng.random() < 0.5 else {"p": b"x"}
        if isinstance(fields["payloads"], list) and all(
            isinstance(x, bytes) for x in fields["payloads"]
        ):
            fields["payloads"] = [None]  # junk that happened to be a list of bytes
    return fields


def bad_runs(rng: random.Random) -> Any:
    """Runs of an ack that do not hold: lo above hi, negative, not pairs, not ints."""
    return rng.choice(
        [
            [[5, 4]],
            [[-1, 3]],
            [[1]],
            [[1, 2, 3]],
            [1, 2],
            [["1", 2]],
            [[1, None]],
            [[True, 2]],
            [[2**63, 1]],
            [[1, 2], [4]],
            [None],
            [[]],
            None,
            "runs",
            7,
            {"1": 2},
        ]
    )


def structured(rng: random.Random) -> bytes:
    """A well-formed envelope with fields of the wrong type, missing, or naming nothing."""
    kind = rng.choice(["puts", "puts", "sub", "ack", *KINDS])
    fields: dict[str, Any] = {}
    if kind == "puts":
        name = rng.choice(NAMES)
        if name == "good" or rng.random() < 0.6:  # nothing may reach the good reader
            fields = bad_batch(rng)
        else:
            n = rng.randint(1, 5)
            seq = rng.randint(0, 2**62)
            fields = {
                "seq": seq,
                "payloads": [os.urandom(rng.randint(0, 50)) for _ in range(n)],
                "metas": [b""],
                "since": seq,
                "epoch": rng.randint(0, 9),
            }
        fields["q"] = name if rng.random() < 0.9 else junk(rng)
    elif kind == "sub":
        fields = {
            "q": rng.choice(["fz", "nope", "good", junk(rng)]),
            "loop": rng.choice(["x", "", "zz", junk(rng)]),  # never "reader": no stealing
            "credit": rng.choice([0, 3, -4, 10**6, "7", "x", None, [1], 1.5, float("nan")]),
        }
    elif kind == "ack":
        fields = {
            "q": rng.choice(["fz", "good", "nope", junk(rng)]),
            "loop": rng.choice(["x", "reader", junk(rng)]),
            "runs": bad_runs(rng) if rng.random() < 0.5 else [[0, rng.randint(0, 2**62)]],
        }
    else:
        names = list(_wire.FIELDS.get(kind, {"status": None, "state": None}))
        fields = {n: PLAUSIBLE[n] if rng.random() < 0.5 else junk(rng) for n in names}
    if fields.get("q") == "good" and kind == "puts":
        return encode(kind, **fields)  # a missing field could make a bad batch whole
    for key in list(fields):
        if rng.random() < 0.1:
            del fields[key]  # a missing field
    return encode(kind, **fields)


def frame(rng: random.Random) -> tuple[list[bytes], bool]:
    """One fuzz message (its frames) and whether the hub is sure to count it malformed."""
    r = rng.random()
    if r < 0.25:
        data = os.urandom(rng.randint(0, 300))
    elif r < 0.45:
        whole = structured(rng)
        data = whole[: rng.randint(0, len(whole) - 1)]  # truncated
    elif r < 0.80:
        data = structured(rng)
    elif r < 0.85:  # msgpack that is no envelope: huge ints, arrays, maps of the wrong shape
        data = packb(
            rng.choice(
                [
                    2**64 - 1,
                    -(2**63),
                    [2**64 - 1] * 10,
                    {"v": 2**64 - 1, "t": "puts"},
                    {"v": 1, "t": 2**63},
                    {"v": "1", "t": "ping"},
                    {"t": "ping"},
                    [encode("ping")],
                ]
            )
        )
    elif r < 0.88:  # int map keys (strict_map_key refuses them), deep nesting
        data = rng.choice(
            [
                b"\x81\x01\x02",
                b"\x91" * 5000 + b"\xc0",  # arrays nested deeper than the decoder goes
                packb(nested(rng, 200)),
            ]
        )
    elif r < 0.93:  # ext types and timestamps (ext -1) where maps should be
        data = rng.choice(
            [
                packb(msgpack.ExtType(rng.randint(0, 127), os.urandom(rng.randint(0, 20)))),
                b"\xd6\xff" + os.urandom(4),
                b"\xd7\xff" + os.urandom(8),
                packb({"v": 2, "t": "puts", "q": "fz", "seq": 1, "payloads": [b"p"]})[:-1]
                + b"\xd6\xff"
                + os.urandom(4),
            ]
        )
    else:  # multi-part: the ROUTER sees more than [identity, frame]
        parts = [os.urandom(rng.randint(0, 30)) for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.5:
            parts[0] = encode("ping")
        return parts, True
    try:
        decode(data)
    except WireError:
        return [data], True
    return [data], False


# -- well-behaved clients ----------------------------------------------------------------------


class Good:
    """A writer and a reader, both HubClients, that must keep working through the fuzz."""

    def __init__(self, hub: Hub) -> None:
        self.writer = HubClient(hub.endpoint, b"good-writer", loop="writer", heartbeat=0.2)
        self.reader = HubClient(hub.endpoint, b"good-reader", loop="reader", heartbeat=0.2)
        self.writer.start()
        self.reader.start()
        self.inbox: Inbox = self.reader.subscribe("good", 8)
        self.n = 0

    def round_trip(self) -> None:
        self.n += 1
        token = b"token-%d" % self.n
        self.writer.put("good", token, b"meta").result(WAIT)  # acknowledged
        deadline = time.monotonic() + WAIT
        while True:
            item = self.inbox.take()
            if item is None:
                assert time.monotonic() < deadline, f"{token!r} never delivered"
                time.sleep(0.001)
                continue
            self.reader.ack("good", item[0])
            if item[1] == token:
                assert item[2] == b"meta"
                return

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


@pytest.fixture
def hub(caplog: pytest.LogCaptureFixture) -> Iterator[Hub]:
    caplog.set_level(logging.ERROR, logger="ostinato.hub")  # one warning per bad frame
    caplog.set_level(logging.ERROR, logger="ostinato.client")
    hub = Hub(
        [
            QueueSpec.model_validate({"name": "good", "mode": "broadcast"}),
            QueueSpec.model_validate({"name": "fz", "mode": "work", "capacity": 50}),
        ],
        {"good": ["reader"], "fz": ["x"]},
    )
    yield hub
    hub.close()


@pytest.fixture
def dealer() -> Iterator[Callable[[bytes], zmq.Socket[Any]]]:
    ctx = zmq.Context()
    sockets: list[zmq.Socket[Any]] = []

    def make(identity: bytes) -> zmq.Socket[Any]:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 0)
        sockets.append(sock)
        return sock

    yield make
    for sock in sockets:
        sock.close(linger=0)
    ctx.term()


def drain(sock: zmq.Socket[Any]) -> list[bytes]:
    out = []
    while sock.poll(0):
        out.append(sock.recv())
    return out


def sync(sock: zmq.Socket[Any], marker: str, hub: Hub) -> None:
    """Wait until the hub has handled everything this socket sent: it handles one peer's frames
    in order, and answers a subscription to an unknown queue with an error naming it."""
    sock.send(encode("sub", q=marker, loop="x", credit=1))
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert hub._thread.is_alive(), "the hub thread died"
        if not sock.poll(50):
            continue
        try:
            msg = decode(sock.recv())
        except WireError:
            continue
        if msg.get("t") == "error" and msg.get("q") == marker:
            return
    raise AssertionError(f"the hub never answered {marker!r}")


def test_fuzzed_frames_are_dropped_counted_and_clients_keep_being_served(
    hub: Hub, dealer: Callable[[bytes], zmq.Socket[Any]]
) -> None:
    rng = random.Random(SEED)
    fuzz = dealer(b"fuzz")
    fuzz.connect(hub.endpoint)
    good = Good(hub)
    try:
        good.round_trip()
        before = hub.malformed
        sure = 0
        for i in range(FRAMES):
            parts, malformed = frame(rng)
            fuzz.send_multipart(parts)
            sure += malformed
            if i == FRAMES // 2:  # one frame over the wire's limit, mid-fuzz
                fuzz.send(
                    encode(
                        "puts",
                        q="fz",
                        seq=1,
                        payloads=[b"x" * FRAME_LIMIT],
                        metas=[b""],
                        since=1,
                        epoch=1,
                    )
                )
                sure += 1
            if i % BURST == BURST - 1:
                drain(fuzz)
                good.round_trip()  # interleaved: the good clients are served mid-fuzz
                assert hub._thread.is_alive()
        sync(fuzz, "end-of-fuzz", hub)
        good.round_trip()
        assert hub._thread.is_alive()
        grew = hub.malformed - before
        assert grew >= sure > FRAMES // 3, (grew, sure)
        assert grew <= FRAMES + 1  # the fuzz frames and the oversize one, nothing else
        # Frames that could not be routed put nothing into the good queue: the reader only
        # ever got the tokens (checked in round_trip) and nothing waits there now.
        status = hub.queue_status()["good"]
        assert status["enqueued"] == good.n
        assert status["depth"] == 0
    finally:
        good.close()


BATCH_FRAMES = 10_000


def bad_batch_frame(rng: random.Random) -> bytes:
    """A data-path frame the hub must refuse, every one: a puts that does not hold together, an
    ack whose runs do not hold, a give-back of no ids, or a hub-to-loop batch sent the wrong
    way."""
    kind = rng.choice(["puts", "puts", "puts", "ack", "giveBack", "msgs", "acks"])
    if kind == "puts":
        fields = {**bad_batch(rng), "q": rng.choice(NAMES)}
    elif kind == "ack":
        fields = {"q": rng.choice(["fz", "good"]), "loop": "x", "runs": bad_runs(rng)}
    elif kind == "giveBack":
        ids = rng.choice([[1, "2"], None, [[1]], "x", [1.5], [None]])
        fields = {"q": "fz", "loop": "x", "ids": ids}
    elif kind == "msgs":
        fields = {"q": "good", "ids": [1], "payloads": [b"p"], "metas": [b""]}
    else:
        fields = {"q": "good", "runs": [[1, 1]]}
    return encode(kind, **fields)


def test_ten_thousand_malformed_batch_frames_are_each_counted_and_clients_keep_being_served(
    hub: Hub, dealer: Callable[[bytes], zmq.Socket[Any]]
) -> None:
    rng = random.Random(SEED + 1)
    fuzz = dealer(b"fuzz-batches")
    fuzz.connect(hub.endpoint)
    fuzz.send(encode("sub", q="fz", loop="x", credit=5))  # a consumer: its acks are looked at
    good = Good(hub)
    try:
        good.round_trip()
        before = hub.malformed
        for i in range(BATCH_FRAMES):
            fuzz.send(bad_batch_frame(rng))
            if i % BURST == BURST - 1:
                drain(fuzz)
                good.round_trip()  # interleaved: the good clients are served mid-fuzz
                assert hub._thread.is_alive()
        sync(fuzz, "end-of-batch-fuzz", hub)
        good.round_trip()
        assert hub.malformed - before == BATCH_FRAMES  # each one refused, nothing else
        assert hub.queue_status()["good"]["enqueued"] == good.n
        assert hub.queue_status()["good"]["depth"] == 0
        assert hub.queue_status()["fz"]["enqueued"] == 0
    finally:
        good.close()


# -- frames that used to kill the hub (regressions) --------------------------------------------

CRASHERS = {
    "sub-credit-infinity": encode("sub", q="fz", loop="x", credit=float("inf")),
    "puts-meta-int-2**63": encode(
        "puts", q="fz", seq=1, payloads=[b"p"], metas=[2**63], since=1, epoch=1
    ),
    "puts-meta-int-2**40": encode(
        "puts", q="fz", seq=1, payloads=[b"p"], metas=[2**40], since=1, epoch=1
    ),
    "ack-run-of-2**62": encode("ack", q="fz", loop="x", runs=[[0, 2**62]]),
}


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_a_frame_that_makes_a_field_conversion_overflow_does_not_kill_the_hub(
    hub: Hub, dealer: Callable[[bytes], zmq.Socket[Any]], name: str
) -> None:
    """Found by this suite: int(inf) / bytes(2**63) raised OverflowError, bytes(2**40)
    MemoryError, outside the exceptions the hub caught: its thread died."""
    sock = dealer(b"crasher")
    sock.connect(hub.endpoint)
    sock.send(CRASHERS[name])
    sync(sock, "after-crasher", hub)
    assert hub._thread.is_alive()


def test_a_put_whose_meta_is_an_int_is_refused_not_expanded(
    hub: Hub, dealer: Callable[[bytes], zmq.Socket[Any]]
) -> None:
    """Found by this suite: bytes(meta) turned an int n into n zero bytes (a 30-byte frame
    queued 10 MB)."""
    sock = dealer(b"expander")
    sock.connect(hub.endpoint)
    before = hub.malformed
    sock.send(encode("puts", q="fz", seq=1, payloads=[b"p"], metas=[10_000_000], since=1, epoch=1))
    sync(sock, "after-expander", hub)
    assert hub._thread.is_alive()
    assert hub.queue_status()["fz"]["enqueued"] == 0
    assert hub.malformed == before + 1


@pytest.mark.parametrize("kind", sorted(_wire.KINDS))
def test_a_malformed_frame_of_every_kind_is_counted_and_the_hub_serves_on(
    hub: Hub, dealer: Callable[[bytes], zmq.Socket[Any]], kind: str
) -> None:
    """Each field of the kind wrong in turn (or, for a kind without fields, the kind sent the
    wrong way, or to the hub at all): every frame counted, none fatal."""
    from tests.hub.test_protocol import VALID

    frames = [
        encode(kind, **{**VALID[kind], name: msgpack.ExtType(1, b"?")}) for name in VALID[kind]
    ]
    if kind in _wire.FROM_HUB:
        frames.append(encode(kind, **VALID[kind]))  # the hub never receives these
    sock = dealer(b"kinds-" + kind.encode())
    sock.connect(hub.endpoint)
    before = hub.malformed
    for data in frames:
        sock.send(data)
    sync(sock, f"after-{kind}", hub)
    assert hub._thread.is_alive()
    assert hub.malformed == before + len(frames)


def test_a_peer_of_another_wire_version_is_refused_in_one_line_naming_both(
    hub: Hub, dealer: Callable[[bytes], zmq.Socket[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ostinato.hub")
    sock = dealer(b"old-peer")
    sock.connect(hub.endpoint)
    before = hub.malformed
    old = {"v": 1, "t": "puts", "q": "fz", "items": [[1, b"p", b""]]}  # version 1's rows
    sock.send(packb(old))
    sync(sock, "after-old-peer", hub)
    assert hub.malformed == before + 1
    assert hub.queue_status()["fz"]["enqueued"] == 0  # never misread as a put
    said = [r.getMessage() for r in caplog.records if "wire version 1" in r.getMessage()]
    assert len(said) == 1
    assert "this side speaks version 2" in said[0]
    assert "\n" not in said[0]
