"""Cells: one row of a table (DataFrame, Arrow table, Parquet file) becomes one bulk record.

``RowMaker`` knows a table's columns: the id column (``user_id`` or ``company_id``), a user's
``company_id``, an optional ``metadata`` struct (or dict, or map) column, and every other column
as one metadata key. A table of events has an ``event_type`` column and is mapped as a CSV file
of events is (``_records.EventColumns``): the schema's fields are columns of their own. Each cell
becomes what the API takes:

* a null (``None``, NaN, NaT, pandas' ``NA``) leaves its key out;
* ``str``, ``int``, ``float`` and ``bool`` (numpy's and Arrow's scalars included, as Python's);
* a timestamp becomes an ISO 8601 string to the microsecond (one without a zone is taken as UTC
  and written ``+00:00``), a date ``YYYY-MM-DD``, a time of day ``HH:MM:SS[.ffffff]``, a
  ``Decimal`` its string;
* an id must be a string or an integer (written as its decimal string);
* an event's ``inserted_at`` timestamp keeps its zone, so that the event check refuses one
  without (ambiguous, as a naive ``datetime`` is everywhere); a whole float screen size is its
  integer; its other fields are read as metadata cells are, for the event check to judge;
* anything else (lists, bytes, timedeltas, nested structs, a float id) makes the whole row a
  record with ``error`` set, naming the column, so that it becomes a ``Rejection``.

Pure functions of the values: no table library is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from .._errors import ValidationError
from .._events import CLIENT_NUMBER_FIELDS
from .._types import RecordKind
from ._parsers import SourceRecord
from ._records import MISSING, EventColumns

# What a null cell converts to: its key is left out of the record.
_NULL: Any = MISSING
# pandas' missing-value singletons, told by their type's name so that pandas is never imported.
_PANDAS_NULLS = frozenset({"NAType", "NaTType"})
_UTC = "+00:00"
_TAKES = "metadata takes strings, numbers, booleans, timestamps, dates, times and decimals"


class Unreadable:
    """A cell its table library could not hand over as a Python value; ``reason`` says why.

    Args:
        reason: What the library raised.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unreadable: {self.reason}>"


class BadCell(Exception):
    """A cell the API cannot take; ``str()`` says why, naming the column.

    Args:
        column: The column (``metadata.key`` for a key of the ``metadata`` column).
        reason: What is wrong with the value.
    """

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")


class RowMaker:
    """Turns the rows of one table (tuples, in the order of its columns) into records.

    Args:
        columns: The table's column names, in order.
        kind: ``"user"``, ``"company"`` or ``"event"``: which column the table must have
            (``user_id``, ``company_id``, ``event_type``).
        name: The table, as error messages name it.

    Raises:
        ValidationError: The table lacks that column, or ``kind`` is not one a table can hold.
    """

    __slots__ = ("_columns", "_company", "_events", "_id", "_id_name", "_metadata", "_others")

    def __init__(self, columns: Sequence[object], kind: RecordKind, name: str) -> None:
        if kind not in _NEEDED:
            raise ValidationError(
                f"{name}: tables are read for users, companies and events, not {kind!r}",
                field="source",
            )
        # A pandas frame may name its columns with anything; metadata keys are strings.
        self._columns = [str(column) for column in columns]
        self._id_name = _NEEDED[kind]
        if self._id_name not in self._columns:
            found = ", ".join(repr(column) for column in self._columns) or "none"
            raise ValidationError(
                f"{name}: the table has no {self._id_name!r} column, which {kind} records need "
                f"(columns: {found})",
                field="source",
            )
        self._events = EventColumns(self._columns) if kind == "event" else None
        self._id = self._columns.index(self._id_name)
        self._company = (
            self._columns.index("company_id")
            if kind == "user" and "company_id" in self._columns
            else None
        )
        self._metadata = self._columns.index("metadata") if "metadata" in self._columns else None
        taken = {self._id, self._company, self._metadata}
        self._others = [(i, column) for i, column in enumerate(self._columns) if i not in taken]

    def make(self, position: int, row: Sequence[Any]) -> SourceRecord:
        """The record of one row, or the row with ``error`` set when a cell cannot be sent.

        Args:
            position: The row's zero-based index in the table.
            row: Its cells, in the order of the columns.

        Returns:
            A ``SourceRecord`` with ``line=None``: ``{"user_id", "company_id"?, "metadata"?}``,
            ``{"company_id", "metadata"?}`` or an event's fields; when a cell is refused, the
            row as a ``{column: value}`` dict with ``error`` naming the column.
        """
        if self._events is not None:
            return self._event(position, row, self._events)
        return self._user_or_company(position, row)

    def _user_or_company(self, position: int, row: Sequence[Any]) -> SourceRecord:
        try:
            record: dict[str, Any] = {self._id_name: _id(row[self._id], self._id_name)}
            if self._company is not None:
                company = row[self._company]
                if not _is_null(company):
                    record["company_id"] = _id(company, "company_id")
            metadata: dict[str, Any] = {}
            if self._metadata is not None:
                _add_struct(metadata, row[self._metadata])
            for index, column in self._others:
                # The common types first, inline: this loop runs once per cell of the table.
                value = row[index]
                cls = type(value)
                if cls is str or cls is int or cls is bool:
                    metadata[column] = value
                elif cls is float:
                    if not math.isnan(value):
                        metadata[column] = value
                elif cls is datetime:
                    metadata[column] = _timestamp(value)
                elif value is not None:
                    converted = metadata_value(value, column)
                    if converted is not _NULL:
                        metadata[column] = converted
        except BadCell as bad:
            return self._refused(position, row, bad)
        if metadata:
            record["metadata"] = metadata
        return SourceRecord(position, None, record)

    def _event(self, position: int, row: Sequence[Any], columns: EventColumns) -> SourceRecord:
        try:
            return SourceRecord(position, None, columns.record(row, _TABLE_EVENT_CELLS))
        except BadCell as bad:
            return self._refused(position, row, bad)

    def _refused(self, position: int, row: Sequence[Any], bad: BadCell) -> SourceRecord:
        return SourceRecord(position, None, dict(zip(self._columns, row, strict=True)), str(bad))


_NEEDED: dict[str, str] = {"user": "user_id", "company": "company_id", "event": "event_type"}


class _TableEventCells:
    """How a table's cells read as an event's parts (see ``EventColumns``): nulls are missing."""

    def field(self, name: str, cell: object) -> object:
        if _is_null(cell):
            return MISSING
        if name in ("user_id", "company_id"):
            return _id(cell, name)
        if name == "inserted_at":
            return _event_time(cell)
        value = metadata_value(cell, name)
        if name in CLIENT_NUMBER_FIELDS and type(value) is float and value.is_integer():
            # pandas stores an integer column with a null as floats: a mixed table of events
            # leaves screen sizes null on most rows.
            return int(value)
        return value

    def metadata(self, cell: object) -> object:
        metadata: dict[str, Any] = {}
        _add_struct(metadata, cell)
        return metadata

    def key(self, name: str, cell: object) -> object:
        return metadata_value(cell, name)


_TABLE_EVENT_CELLS = _TableEventCells()


def _event_time(cell: object) -> object:
    """An ``inserted_at`` cell for the event check: a timestamp keeps its zone, or its lack.

    Not through ``metadata_value``, which takes a timestamp without a zone as UTC: an event
    time without one is ambiguous, and the event check refuses it, naming the field. A string
    is the check's to parse; any other value is the check's to refuse.
    """
    if isinstance(cell, datetime):
        return _pydatetime(cell)
    if _numpy_name(cell) == "datetime64":  # numpy's has no zone: the check refuses it
        return MISSING if str(cell) == "NaT" else cell.astype("datetime64[us]").item()  # type: ignore[attr-defined]
    if isinstance(cell, Unreadable):
        raise BadCell("inserted_at", f"the value cannot be read: {cell.reason}")
    return cell


def _add_struct(metadata: dict[str, Any], struct: object) -> None:
    """Add the keys of a ``metadata`` cell (a struct, a dict, or a map's pairs) to ``metadata``."""
    if _is_null(struct):
        return
    if isinstance(struct, dict):
        entries: Any = struct.items()
    elif isinstance(struct, list) and all(
        isinstance(pair, tuple) and len(pair) == 2 for pair in struct
    ):
        entries = struct  # an Arrow map read as its (key, value) pairs
    else:
        raise BadCell(
            "metadata", f"must be a struct or a dict of metadata, got {type(struct).__name__}"
        )
    for key, value in entries:
        column = f"metadata.{key}"
        if not isinstance(key, str):
            raise BadCell(column, f"keys must be strings, got {type(key).__name__}")
        converted = metadata_value(value, column)
        if converted is not _NULL:
            metadata[key] = converted


def _is_null(value: object) -> bool:
    if value is None or type(value).__name__ in _PANDAS_NULLS:
        return True
    return isinstance(value, float) and math.isnan(value)


def _id(value: object, column: str) -> str:
    """An id cell as the id string: a string as it is, an integer as its decimal string."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if _is_null(value):
        raise BadCell(column, "the id is missing (null)")
    if isinstance(value, bool) or _numpy_name(value) == "bool":
        raise BadCell(column, f"an id must be a string or an integer, got a bool ({value!r})")
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if _numpy_name(value).startswith(("int", "uint")):
        return str(int(value))  # type: ignore[call-overload]  # a numpy integer
    if isinstance(value, Unreadable):
        raise BadCell(column, f"the value cannot be read: {value.reason}")
    if isinstance(value, float):
        raise BadCell(
            column,
            f"an id must be a string or an integer, got a float ({value!r}); a pandas integer "
            "column with a missing value turns float: use the 'Int64' dtype or strings",
        )
    raise BadCell(column, f"an id must be a string or an integer, got {type(value).__name__}")


def metadata_value(value: object, column: str) -> Any:  # noqa: PLR0911  # one per kind of value
    """One metadata cell as the API takes it, or ``_NULL`` for a null.

    Args:
        value: The cell, as the table library hands it over.
        column: Its column, for the error.

    Returns:
        A ``str``, ``int``, ``float`` or ``bool``, or ``_NULL`` (leave the key out).

    Raises:
        BadCell: The value is not one the API takes.
    """
    if _is_null(value):
        return _NULL
    if isinstance(value, (str, bool)):
        return value if type(value) in (str, bool) else _builtin(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _NULL if value.is_nan() else str(value)
    if isinstance(value, Unreadable):
        raise BadCell(column, f"the value cannot be read: {value.reason}")
    numpy_name = _numpy_name(value)
    if numpy_name and numpy_name != "timedelta64":
        return _numpy_scalar(value, numpy_name, column)
    raise BadCell(column, f"a {type(value).__name__} is not a metadata value ({_TAKES})")


def _builtin(value: str | bool) -> str | bool:
    return bool(value) if isinstance(value, bool) else str(value)


def _pydatetime(value: datetime) -> datetime:
    # pandas' Timestamp may carry nanoseconds: every source is written to the microsecond, so
    # that one table reads the same whichever library holds it.
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if type(value) is not datetime and callable(to_pydatetime):
        converted: datetime = to_pydatetime(warn=False)
        return converted
    return value


def _timestamp(value: datetime) -> str:
    value = _pydatetime(value)
    if value.tzinfo is None:
        return value.isoformat() + _UTC  # what replace(tzinfo=timezone.utc) writes, faster
    return value.isoformat()


def _numpy_name(value: object) -> str:
    """The numpy scalar type's name (``int64``, ``bool``, ``datetime64``), or ``""``."""
    cls = type(value)
    return cls.__name__ if cls.__module__ == "numpy" else ""


def _numpy_scalar(value: Any, numpy_name: str, column: str) -> Any:
    if numpy_name == "datetime64":
        if str(value) == "NaT":
            return _NULL
        # .item() of a nanosecond datetime64 is an int: microseconds give a datetime.
        unit = "D" if str(value.dtype) == "datetime64[D]" else "us"
        return metadata_value(value.astype(f"datetime64[{unit}]").item(), column)
    item = getattr(value, "item", None)
    if callable(item):
        converted = item()
        if _numpy_name(converted) != numpy_name:  # guard against a scalar that stays itself
            return metadata_value(converted, column)
    raise BadCell(column, f"a numpy {numpy_name} is not a metadata value ({_TAKES})")
