"""The names users choose: workflow IDs, queue and schedule names,
deduplication IDs, partition keys, topics, event and stream keys, executor IDs
and application versions.

Each is stored in at least one index, some of them two to an index entry, and
some travel as PostgreSQL notifications. PostgreSQL refuses an index entry of
more than 2,704 bytes and a notification of more than 8,000, so such a name
has a length limit, checked when it is given, the same on both backends (a
name SQLite took must not be one PostgreSQL refuses after a move).
"""

from __future__ import annotations

from relos import errors

#: The most bytes a name may take in UTF-8: two such names and the numbers
#: beside them fit in one index entry.
MAX_BYTES = 1000


def check(value: str, what: str) -> str:
    """``value`` (a string) if it is at most :data:`MAX_BYTES` long in UTF-8;
    else a ConfigError naming ``what`` ("the workflow ID", "queue name", ...)."""
    if len(value) > MAX_BYTES // 4:  # (at most 4 bytes a character: shorter ones fit)
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            raise errors.ConfigError(
                f"{what} {value[:40]!r}... is {size:,} bytes long in UTF-8, over the "
                f"{MAX_BYTES:,} allowed (it is stored in indexes): use a shorter one, "
                f"such as a hash of it")
    return value
