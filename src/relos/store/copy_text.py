"""PostgreSQL's COPY text format for a batch of enqueued workflow rows.

An enqueued batch is rows that differ in two columns only (the workflow ID and
the inputs; a :class:`~relos.store.base.RowBatch`): all the others come from
one call. Such a batch is written here as text, each line the two varying
fields and the shared tail formatted once: one formatted field per column for
the batch, two per row, and no row object. Other rows are formatted field by
field.

The format (``COPY ... FROM STDIN``, text): fields separated by tabs, lines
ended by a newline, NULL as ``\\N``, and in a field's text a backslash, tab,
newline or carriage return escaped by a backslash.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

from relos.store.base import WORKFLOW_COLUMNS, RowBatch, WorkflowRow

#: The columns in the order the lines give them: the two that vary first.
VARYING = ("workflow_id", "inputs")
COLUMNS: tuple[str, ...] = VARYING + tuple(c for c in WORKFLOW_COLUMNS if c not in VARYING)
_SHARED = operator.attrgetter(*COLUMNS[len(VARYING):])
_ALL = operator.attrgetter(*COLUMNS)


def field(value: Any) -> str:
    """One field's text."""
    if value is None:
        return "\\N"
    text = value if type(value) is str else str(value)
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def lines(rows: Sequence[WorkflowRow], chunk: int = 256) -> Iterator[str]:
    """The rows as COPY text (columns in :data:`COLUMNS` order), ``chunk``
    lines per string, so that the server works on the first lines while the
    next are made."""
    if isinstance(rows, RowBatch):
        tail = "\t" + "\t".join(map(field, _SHARED(rows.shared))) + "\n"
        ids, inputs = rows.ids, rows.inputs
        for start in range(0, len(ids), chunk):
            end = start + chunk
            yield "".join([f"{field(i)}\t{field(x)}{tail}"
                           for i, x in zip(ids[start:end], inputs[start:end], strict=True)])
        return
    for start in range(0, len(rows), chunk):
        yield "".join(["\t".join(map(field, _ALL(r))) + "\n" for r in rows[start:start + chunk]])
