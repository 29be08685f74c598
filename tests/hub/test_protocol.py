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
    "rewind",
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
    "puts": {
        "q": "q",
        "seq": 1,
        "payloads": [b"payload", b""],
        "metas": [b"m", b""],
        "meta": [0, 1],
        "since": 1,
        "epoch": 7,
    },
    "ack": {"q": "q", "loop": "b", "runs": [[1, 3], [5, 5]]},
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
    "msgs": {
        "q": "q",
        "ids": [7, 8],
        "payloads": [b"payload", b""],
        "metas": [b"meta", b""],
        "meta": [0, 1],
        "redelivered": [1],
    },
    "acks": {"q": "q", "runs": [[1, 1], [3, 9]], "refused": [[2, "refused"]]},
    "error": {"q": "q", "error": "no queue 'q' in this workflow"},
    "released": {"q": "q"},
    "resubscribe": {},
    "rewind": {"q": "q", "seq": 12},
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
    """A frame is a plain map: any msgpack library reads it."""
    frame = encode(Kind.SUB, q="q", loop="b", credit=3)
    expected = {"v": 2, "t": "sub", "q": "q", "loop": "b", "credit": 3}
    assert frame == msgpack.packb(expected, use_bin_type=True)


def test_a_peer_of_the_first_version_is_refused_naming_both_versions() -> None:
    """Version 1 put rows as [seq, payload, meta]: never read as a version 2 batch."""
    old = msgpack.packb(
        {"v": 1, "t": "puts", "q": "q", "items": [[1, b"p", b"m"]]}, use_bin_type=True
    )
    with pytest.raises(WireError) as caught:
        parse(old, TO_HUB)
    assert str(caught.value) == (
        "wire version 1 from the peer, this side speaks version 2: the two do not talk "
        "(run the same ostinato version on both sides)"
    )


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
        ("puts", "payloads", [b"p", "p"]),
        ("puts", "payloads", [b"p", 2**40]),
        ("puts", "metas", [b"m", None]),
        ("puts", "meta", [0, "1"]),
        ("puts", "meta", [0, True]),
        ("puts", "seq", True),
        ("ack", "runs", [[1, "2"]]),
        ("ack", "runs", [[1, True]]),
        ("ack", "runs", [[1]]),
        ("ack", "runs", [[1, 2, 3]]),
        ("ack", "runs", [[3, 2]]),  # lo above hi
        ("ack", "runs", [[-1, 2]]),
        ("ack", "runs", [1, 2]),
        ("giveBack", "ids", [1, "2"]),
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
        ("msgs", "ids", [1, "2"]),
        ("msgs", "payloads", [b"p", None]),
        ("msgs", "redelivered", [True, 1]),
        ("acks", "runs", [[1, 2, 3]]),
        ("acks", "runs", [["1", 2]]),
        ("acks", "refused", [[1]]),
        ("acks", "refused", [["q", 1]]),
        ("acks", "refused", [[1, "e", "x"]]),
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
        (
            msgpack.packb({"v": 1, "t": "ping"}),
            r"^wire version 1 from the peer, this side speaks version 2",
        ),
        (msgpack.packb({"v": "2", "t": "ping"}), r"^wire version '2' from the peer"),
        (msgpack.packb({"t": "ping"}), r"^wire version None from the peer"),
        (msgpack.packb({"v": 2, "t": 3}), "envelope has no message type 't'"),
        (b"\x81\x01\x02", "undecodable frame"),  # an int map key
    ],
)
def test_a_malformed_envelope_is_a_wire_error(frame: bytes, says: str) -> None:
    with pytest.raises(WireError, match=says):
        parse(frame)


def test_an_oversize_frame_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(WireError, match="exceeds"):
        parse(b"\x00" * (_wire.MAX_FRAME_BYTES + 1))


# -- batches -------------------------------------------------------------------------------------

#: A batch whose fields each have their type, but not together: (kind, fields, error).
BATCH_MISFITS = [
    ("puts", {"payloads": []}, "puts: field 'payloads' must not be empty"),
    ("puts", {"since": 2}, "puts: field 'since' must be at most seq (1), not 2"),
    ("puts", {"meta": [0]}, "puts: field 'meta' must have one index per payload (2), not 1"),
    ("puts", {"meta": [0, 2]}, "puts: field 'meta' has index 2, not one of 2 metas"),
    ("puts", {"meta": [0, -1]}, "puts: field 'meta' has index -1, not one of 2 metas"),
    ("puts", {"meta": None}, "puts: field 'meta' must be a list of ints, not NoneType"),
    ("msgs", {"ids": [7]}, "msgs: field 'ids' must have one id per payload (2), not 1"),
    ("msgs", {"redelivered": [2]}, "msgs: field 'redelivered' has position 2, not one of 2"),
    ("msgs", {"metas": []}, "msgs: field 'meta' has index 0, not one of 0 metas"),
]


@pytest.mark.parametrize(("kind", "change", "says"), BATCH_MISFITS)
def test_a_batch_whose_lists_do_not_fit_together_is_a_wire_error(
    kind: str, change: dict[str, Any], says: str
) -> None:
    with pytest.raises(WireError) as caught:
        parse(encode(kind, **{**VALID[kind], **change}))
    assert str(caught.value) == says


def test_a_batch_of_one_meta_leaves_the_indexes_out_but_not_with_more() -> None:
    one = {"q": "q", "seq": 4, "payloads": [b"a", b"b"], "metas": [b"m"], "since": 1, "epoch": 0}
    assert parse(encode("puts", **one))["metas"] == [b"m"]
    each = {**one, "metas": [b"m", b"n"]}  # a meta each payload: no index either
    assert parse(encode("puts", **each))["metas"] == [b"m", b"n"]
    with pytest.raises(
        WireError, match=r"^puts: field 'meta' is missing \(needed with 3 metas for 2 payloads\)$"
    ):
        parse(encode("puts", **{**one, "metas": [b"m", b"n", b"o"]}))


def test_runs_name_every_number_once_ascending() -> None:
    assert _wire.runs([]) == []
    assert _wire.runs([5]) == [[5, 5]]
    assert _wire.runs([1, 2, 3, 4]) == [[1, 4]]
    assert _wire.runs([9, 1, 2, 7, 3, 8, 3]) == [[1, 3], [7, 9]]
    assert _wire.runs(range(0, 20, 2)) == [[n, n] for n in range(0, 20, 2)]


def test_shared_metas_once_each_with_indexes_only_when_needed() -> None:
    a, b = b"meta-a", b"meta-b"
    assert _wire.shared([a, a, a]) == ([a], None)
    assert _wire.shared([a, b, a]) == ([a, b], [0, 1, 0])
    assert _wire.shared([a, b]) == ([a, b], None)  # a meta each: no index
    copy = bytes(bytearray(a))  # equal, another object: kept apart, which is never wrong
    metas, index = _wire.shared([a, copy, a])
    assert metas == [a, a]
    assert index == [0, 1, 0]


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
