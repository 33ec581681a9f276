"""The workflow IDs a bulk enqueue makes: random version-4 UUIDs, all distinct."""

from __future__ import annotations

import uuid

import pytest

from relos.runtime.queueing import _new_ids


@pytest.mark.parametrize("n", [0, 1, 7, 8, 5000])
def test_new_ids_are_distinct_version_4_uuids_in_canonical_form(n: int) -> None:
    ids = _new_ids(n)
    assert len(ids) == n and len(set(ids)) == n
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_every_variant_digit_occurs() -> None:
    """The variant digit takes the four values 8, 9, a, b (two random bits)."""
    assert {text[19] for text in _new_ids(2000)} == set("89ab")
