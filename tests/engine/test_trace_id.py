"""Trace ids: 16 lowercase hex digits, distinct, and untouched by the application's random.seed."""

from __future__ import annotations

import random
import re

from ostinato._model._nodes import new_trace_id


def test_trace_ids_are_16_hex_digits_and_distinct() -> None:
    ids = [new_trace_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_seeding_the_random_module_does_not_repeat_trace_ids() -> None:
    random.seed(7)
    first = [new_trace_id() for _ in range(5)]
    random.seed(7)
    assert [new_trace_id() for _ in range(5)] != first
