"""Records: a flat row as an event, the verdict on each record, and which iterables are read.

``EventColumns`` is the one mapping of a flat row (a CSV file's, a table's) to an event record;
each source only says how one of its cells reads (``EventCells``). ``check_record`` is the one
verdict on what an import sends.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeGuard, TypeVar

from .._errors import ValidationError
from .._events import ALLOWED, EVENT_FIELDS, event_record
from .._models import Company, User
from .._types import RecordKind
from .._validation import bulk_record
from ._batching import Batcher, encode_record


def plain_iterable(source: object) -> TypeGuard[Iterable[object]]:
    """Whether ``source`` is a caller's sync iterable of records (not a file, path or record)."""
    return (
        isinstance(source, Iterable)
        and not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike, Mapping))
        and not isinstance(source, (User, Company, AsyncIterable))
        and not callable(getattr(source, "read", None))
    )


def check_record(
    record: object, kind: RecordKind, batcher: Batcher, error: str | None = None
) -> bytes | str:
    """The pipeline's verdict on one record: its NDJSON line, or why it is rejected.

    The one place the import (and the command line's dry run) decides what is sent: the
    source's decoding error, the validation rules, the encoding, and the size a batch allows.

    Args:
        record: The record as the source yielded it.
        kind: ``"user"`` or ``"company"``.
        batcher: The batcher whose limits apply.
        error: Why the source could not decode it, if it could not.

    Returns:
        The encoded line to send, or the reason it cannot be sent.
    """
    if error is not None:
        return error
    try:
        wire = event_record(record) if kind == "event" else bulk_record(record, kind)
        line = encode_record(wire)
    except ValidationError as exc:
        return str(exc)
    if not batcher.fits_alone(line):
        return (
            f"the encoded record is {len(line):,} bytes, more than a request may carry "
            f"({batcher.max_bytes:,} bytes)"
        )
    return line


MISSING: Any = object()
"""What a cell with no value reads as (an empty CSV cell, a null): its field or key is left out."""

Cell_contra = TypeVar("Cell_contra", contravariant=True)


class EventCells(Protocol[Cell_contra]):
    """How one source's cells read, by the part of the event they fill.

    Each method returns the value to put in the record, or ``MISSING`` to leave it out; a cell
    the source cannot read at all may raise (the source makes its row a rejection).
    """

    def field(self, name: str, cell: Cell_contra) -> object:
        """A cell of a column named after one of the schema's fields."""

    def metadata(self, cell: Cell_contra) -> object:
        """The ``metadata`` column's cell: a ``dict`` of keys, or a value the check refuses."""

    def key(self, name: str, cell: Cell_contra) -> object:
        """A cell of any other column: one metadata key."""


class EventColumns:
    """The columns of a flat row (a CSV header, a table's columns) as the parts of an event.

    A column named after one of the schema's fields (``event_type``, ``user_id``,
    ``inserted_at``, ``screen_width``, ...) is that field; a ``metadata`` column holds metadata
    keys; every other column is one metadata key, and wins over a key of the same name in the
    ``metadata`` column (for an event that takes no metadata, a ``page_view``, such a column
    stays a field of its own name, which the event check refuses by that name). A missing cell
    leaves its field or key out, so rows of different event types can share one file, each
    filling only its own columns. ``metadata`` is set only when
    it holds something: an identify without any is sent ``{}`` by the event check, and any
    other event without metadata takes none.

    Args:
        columns: The column names, in the order of a row's cells.
    """

    __slots__ = ("_fields", "_keys", "_metadata")

    def __init__(self, columns: Sequence[str]) -> None:
        self._fields = [
            (index, name)
            for index, name in enumerate(columns)
            if name in EVENT_FIELDS and name != "metadata"
        ]
        self._metadata = columns.index("metadata") if "metadata" in columns else None
        taken = {index for index, _ in self._fields} | {self._metadata}
        self._keys = [(index, name) for index, name in enumerate(columns) if index not in taken]

    def record(self, row: Sequence[Cell_contra], cells: EventCells[Cell_contra]) -> dict[str, Any]:
        """The event record of one row, for ``event_record`` to check.

        Args:
            row: The row's cells, in the order of the columns.
            cells: How the source's cells read.

        Returns:
            ``{field: value, ..., "metadata": {...}}`` with the missing cells left out.
        """
        record: dict[str, Any] = {}
        for index, name in self._fields:
            value = cells.field(name, row[index])
            if value is not MISSING:
                record[name] = value
        metadata: Any = MISSING
        if self._metadata is not None:
            metadata = cells.metadata(row[self._metadata])
        keys: dict[str, Any] = {}
        for index, name in self._keys:
            value = cells.key(name, row[index])
            if value is not MISSING:
                keys[name] = value
        event_type = record.get("event_type")
        allowed = ALLOWED.get(event_type) if isinstance(event_type, str) else None
        if keys and allowed is not None and "metadata" not in allowed:
            # An event that takes no metadata (a page_view): its extra columns are not metadata
            # keys but fields it does not have, and the event check names them as such.
            record.update(keys)  # not schema fields: they cannot clash with one
            keys = {}
        if metadata is MISSING or metadata is None:
            metadata = keys
        elif isinstance(metadata, dict):
            metadata = {**metadata, **keys}
        # Anything else (a JSON list, text that is not JSON) is kept as it is: the event check
        # refuses it, naming the field.
        if metadata or not isinstance(metadata, dict):
            record["metadata"] = metadata
        return record
