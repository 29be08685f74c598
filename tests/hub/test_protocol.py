"""The wire protocol (``ostinato._messaging._wire``): every kind named once, round-trips, and a
malformed field gives a one-line WireError naming the kind and the field."""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

import msgpack
import pytest

from ostinato import DesiredState
from ostinato._messaging import _wire as _wire
from ostinato._messaging._wire import (
    BATCH_BYTES,
    FIELDS,
    FROM_HUB,
    KINDS,
    SHAPES,
    TO_HUB,
    Kind,
    WireError,
    batches,
    encode,
    parse,
)

#: Every kind there is. Adding one is deliberate: name it in Kind, give it a shape and its
#: fields, say who receives it, and add it here and to VALID.
ALL_KINDS = {
    "hello",
    "status",
    "ping",
    "bye",
    "puts",
    "ack",
    "giveBack",
    "sub",
    "release",
    "pong",
    "config",
    "control",
    "msgs",
    "acks",
    "error",
    "released",
    "resubscribe",
}

#: A valid message of every kind, as the runtime sends it.
VALID: dict[str, dict[str, Any]] = {
    "hello": {"pid": 42, "loop": "a"},
    "status": {"status": {"name": "a", "state": "running"}, "final": False, "awaiting": True},
    "ping": {},
    "bye": {},
    "puts": {"q": "q", "items": [[1, b"payload", b"meta"], [2, b"", b""]]},
    "ack": {"q": "q", "loop": "b", "ids": [1, 2, 3]},
    "giveBack": {"q": "q", "loop": "b", "ids": [4, 5]},
    "sub": {"q": "q", "loop": "b", "credit": 64},
    "release": {"q": "q", "loop": "b"},
    "pong": {"hub": "0123abcd"},
    "config": {
        "document": "{}",
        "loop": "a",
        "replica": 0,
        "desired": "paused",
        "maxIterations": None,
        "sysPath": ["/x"],
        "logFormat": "text",
        "logLevel": 20,
    },
    "control": {"state": "paused"},
    "msgs": {"q": "q", "items": [[7, b"payload", b"meta", False], [8, b"", b"", True]]},
    "acks": {"items": [["q", 1], ["q", 2, "refused"]]},
    "error": {"q": "q", "error": "no queue 'q' in this workflow"},
    "released": {"q": "q"},
    "resubscribe": {},
}


def test_every_kind_is_named_once_and_has_a_shape_and_a_receiver() -> None:
    names = {v for k, v in vars(Kind).items() if k.isupper()}
    assert names == ALL_KINDS
    assert len([k for k in vars(Kind) if k.isupper()]) == len(ALL_KINDS)  # no two names for one
    assert set(SHAPES) == ALL_KINDS
    assert set(FIELDS) == ALL_KINDS
    assert KINDS == ALL_KINDS
    assert TO_HUB | FROM_HUB == KINDS
    assert not TO_HUB & FROM_HUB
    assert set(VALID) == ALL_KINDS


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_the_checked_fields_are_the_typed_shape(kind: str) -> None:
    shape = SHAPES[kind]
    fields = FIELDS[kind]
    assert set(fields) == set(get_type_hints(shape))
    assert {n for n, (required, _) in fields.items() if required} == shape.__required_keys__


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_every_kind_round_trips(kind: str) -> None:
    frame = encode(kind, **VALID[kind])
    accept = TO_HUB if kind in TO_HUB else FROM_HUB
    assert parse(frame, accept) == {"v": _wire.VERSION, "t": kind, **VALID[kind]}


def test_optional_fields_may_be_left_out_and_unknown_ones_are_let_through() -> None:
    assert parse(encode("status", status={}))["status"] == {}
    assert parse(encode("ping", extra=1))["extra"] == 1


def test_the_wire_bytes_are_those_of_a_plain_msgpack_map() -> None:
    """Old and new peers interoperate: a frame is the same map it always was."""
    frame = encode(Kind.SUB, q="q", loop="b", credit=3)
    expected = {"v": 1, "t": "sub", "q": "q", "loop": "b", "credit": 3}
    assert frame == msgpack.packb(expected, use_bin_type=True)


def test_a_kind_sent_the_wrong_way_or_unknown_is_refused() -> None:
    with pytest.raises(WireError, match=r"^message kind 'msgs' is not expected here$"):
        parse(encode("msgs", **VALID["msgs"]), TO_HUB)
    with pytest.raises(WireError, match=r"^message kind 'puts' is not expected here$"):
        parse(encode("puts", **VALID["puts"]), FROM_HUB)
    with pytest.raises(WireError, match=r"^message kind 'nope' is unknown$"):
        parse(encode("nope"))


#: Fields that carry a desired state: a string, one of DesiredState's values.
STATE_FIELDS = ("state", "desired")


def test_desired_states_on_the_wire_are_the_spec_s_vocabulary() -> None:
    """One vocabulary end to end: the spec, POST /control, the status and the wire."""
    assert set(get_args(_wire.State)) == {s.value for s in DesiredState}
    for state in DesiredState:
        assert parse(encode(Kind.CONTROL, state=state.value), FROM_HUB)["state"] == state
        config = {**VALID["config"], "desired": state.value}
        assert parse(encode(Kind.CONFIG, **config), FROM_HUB)["desired"] == state
    with pytest.raises(
        WireError, match=r"^control: field 'state' must be 'running' or 'paused' or 'stopped'"
    ):
        parse(encode(Kind.CONTROL, state="resume"), FROM_HUB)


#: For every kind with fields: (field, a wrong value, what the error says it must be).
NOT_INT = [None, "1", 1.5, True, b"1", [1], {"a": 1}]
NOT_STR = [None, 1, b"q", ["q"], {"q": 1}, True]


def _bad_values() -> list[tuple[str, str, Any]]:
    """(kind, field, value): a wrong value of every field of every kind."""
    cases: list[tuple[str, str, Any]] = []
    for kind, fields in sorted(FIELDS.items()):
        for name in fields:
            good = VALID[kind][name]
            if good is None:  # maxIterations: an int or nil
                bad = ["3", 1.5, True, [1]]
            elif isinstance(good, str) and name not in STATE_FIELDS:
                bad = NOT_STR
            elif type(good) is int:
                bad = NOT_INT
            elif type(good) is bool:
                bad = [0, 1, None, "true"]
            else:
                bad = [None, 1, "x"]
            cases += [(kind, name, value) for value in bad]
    # Rows and lists of the data path, field by field.
    cases += [
        ("puts", "items", [[1, b"p"]]),
        ("puts", "items", [[1, b"p", b"m", b"x"]]),
        ("puts", "items", [["1", b"p", b"m"]]),
        ("puts", "items", [[1, "p", b"m"]]),
        ("puts", "items", [[1, b"p", 2**40]]),
        ("puts", "items", [[True, b"p", b"m"]]),
        ("puts", "items", [b"abc"]),
        ("puts", "items", {"a": 1}),
        ("ack", "ids", [1, "2"]),
        ("ack", "ids", [1, True]),
        ("ack", "ids", [[1]]),
        ("sub", "credit", -1),
        ("sub", "credit", 1_000_001),
        ("sub", "credit", float("inf")),
        ("config", "sysPath", ["a", 1]),
        ("config", "maxIterations", "3"),
        ("control", "state", "explode"),
        ("control", "state", 1),
        # The words of the old commands are not states.
        ("control", "state", "pause"),
        ("control", "state", "resume"),
        ("control", "state", "stop"),
        ("config", "desired", "run"),
        ("msgs", "items", [[1, b"p", b"m"]]),
        ("msgs", "items", [[1, b"p", b"m", 1]]),
        ("msgs", "items", [[1, b"p", None, False]]),
        ("acks", "items", [["q"]]),
        ("acks", "items", [["q", 1, 2]]),
        ("acks", "items", [[1, 1]]),
        ("acks", "items", [["q", 1, "e", "x"]]),
        ("status", "status", []),
    ]
    return cases


@pytest.mark.parametrize(("kind", "field", "value"), _bad_values())
def test_a_field_of_the_wrong_type_names_kind_and_field(kind: str, field: str, value: Any) -> None:
    fields = {**VALID[kind], field: value}
    with pytest.raises(WireError) as caught:
        parse(encode(kind, **fields))
    message = str(caught.value)
    assert message.startswith(f"{kind}: field {field!r} must be ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("kind", "field"),
    [(k, f) for k, fields in sorted(FIELDS.items()) for f, (req, _) in fields.items() if req],
)
def test_a_missing_field_names_kind_and_field(kind: str, field: str) -> None:
    fields = {k: v for k, v in VALID[kind].items() if k != field}
    with pytest.raises(WireError, match=rf"^{kind}: field '{field}' is missing$"):
        parse(encode(kind, **fields))


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (b"\xc1", "undecodable frame"),
        (msgpack.packb([1, 2]), "envelope is not a map"),
        (msgpack.packb({"v": 2, "t": "ping"}), "unsupported envelope version 2"),
        (msgpack.packb({"v": 1, "t": 3}), "envelope has no message type 't'"),
        (b"\x81\x01\x02", "undecodable frame"),  # an int map key
    ],
)
def test_a_malformed_envelope_is_a_wire_error(frame: bytes, says: str) -> None:
    with pytest.raises(WireError, match=says):
        parse(frame)


def test_an_oversize_frame_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(WireError, match="exceeds"):
        parse(b"\x00" * (_wire.MAX_FRAME_BYTES + 1))


# -- batching ------------------------------------------------------------------------------------


def test_rows_that_fit_go_in_one_batch_the_list_itself() -> None:
    rows = [(i, b"p" * 100, b"m") for i in range(1000)]
    assert [b is rows for b in batches(rows)] == [True]
    assert list(batches([])) == []


def test_batches_stay_within_batch_bytes_and_a_large_row_travels_alone() -> None:
    half = BATCH_BYTES // 2
    rows = [
        [1, b"a" * half, b""],
        [2, b"b" * half, b""],  # exactly full: still the first batch
        [3, b"c", b"m"],
        [4, b"d" * (2 * BATCH_BYTES), b""],  # alone
        [5, b"e" * (half - 10), b"m" * 20],  # payload and meta count
        [6, b"f" * (half - 5), b""],
    ]
    got = [[row[0] for row in batch] for batch in batches(rows)]
    assert got == [[1, 2], [3], [4], [5], [6]]
    assert [row for batch in batches(rows) for row in batch] == rows
