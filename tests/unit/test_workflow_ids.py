"""The workflow IDs relos makes: version-7 UUIDs, distinct, in the order made."""

from __future__ import annotations

import time
import uuid

import pytest

from relos.runtime.ids import new_id, new_ids


@pytest.mark.parametrize("n", [0, 1, 7, 8, 5000])
def test_new_ids_are_distinct_version_7_uuids_in_canonical_form(n: int) -> None:
    ids = new_ids(n)
    assert len(ids) == n and len(set(ids)) == n
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_made_together_sort_in_the_order_they_were_made() -> None:
    ids = new_ids(10_000)  # more than the 12-bit counter: it carries into the time
    assert ids == sorted(ids)


def test_ids_carry_their_creation_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    ms = int(made.replace("-", "")[:12], 16)
    assert before <= ms <= after + 2  # (+ the counter's carry, at most 1)


def test_the_random_part_differs_between_batches() -> None:
    tails = {i[-12:] for _ in range(200) for i in new_ids(1)}
    assert len(tails) == 200
