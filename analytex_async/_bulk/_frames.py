"""Tables: DataFrames (pandas, polars, through narwhals), Arrow tables and Parquet files.

A table is read a chunk of rows at a time (``_CHUNK_ROWS``), in a worker thread, and its rows
cross back to the event loop as records a block at a time (``_BLOCK_ROWS``), made by
``_cells.RowMaker``. A Parquet file is read in record batches of a chunk each, its column chunks
through a small read buffer, so memory stays bounded by a chunk however large the file is. An
in-memory table is never copied whole: each chunk is a slice.

No table library is imported until a table is read, and the SDK requires none: pandas and polars
frames need the ``dataframe`` extra (narwhals), Parquet files the ``parquet`` extra (pyarrow).
An Arrow table is read with the pyarrow that made it.

Rows keep their zero-based index in the table as ``position``; ``line`` is ``None``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncGenerator, Iterator
from typing import Any, Protocol

from .._errors import ValidationError
from .._types import RecordKind
from ._cells import RowMaker, Unreadable
from ._files import cannot_open, read_blocks
from ._parsers import SourceRecord

DATAFRAME_EXTRA = 'pip install "analytex-async[dataframe]"'
PARQUET_EXTRA = 'pip install "analytex-async[parquet]"'
# Rows taken out of a table per slice. Slicing a pandas frame and boxing its rows costs a fixed
# ~0.1 ms whatever the slice's size, so small slices make pandas frames 3x slower; a slice of
# this many rows of a wide table stays a few MB.
_CHUNK_ROWS = 10_000
# Records handed to the loop per hop. Few records wait at once when the garbage collector runs
# (see ``_parsers._BLOCK_LINES``), and the hop (~100 µs) stays under 10% of a block's work.
_BLOCK_ROWS = 500
# Parquet column chunks are read through a buffer of this size instead of whole: a row group of
# a million rows is then never in memory at once.
_PARQUET_BUFFER_BYTES = 1 << 20
_LIBRARIES = ("pandas", "polars", "pyarrow")


def is_table(source: object) -> bool:
    """Whether ``source`` is a table (a DataFrame, an Arrow table): read by rows, not iterated.

    A table is known by the interfaces every table library offers (the Arrow C stream, the
    DataFrame interchange protocol), or by its library's name, so that no library is imported.

    Args:
        source: What the caller passed.

    Returns:
        ``True`` for pandas, polars and pyarrow objects and any other DataFrame.
    """
    cls = type(source)
    return (
        hasattr(cls, "__arrow_c_stream__")
        or hasattr(cls, "__dataframe__")
        or cls.__module__.partition(".")[0] in _LIBRARIES
    )


def read_table(source: object, kind: RecordKind) -> AsyncGenerator[SourceRecord, None]:
    """Read the rows of a pandas, polars or pyarrow table as records.

    The table's columns are checked at once; its rows are read when the generator is iterated.
    The table must not change while it is read.

    Args:
        source: A DataFrame narwhals reads eagerly (pandas, polars, ...) or a pyarrow ``Table``
            or ``RecordBatch``.
        kind: ``"user"``, ``"company"`` or ``"event"`` (see ``_cells.RowMaker``).

    Returns:
        An async generator of ``SourceRecord``, one per row, in order.

    Raises:
        ValidationError: The extra it needs is not installed, ``source`` is not a table it can
            read (a lazy frame, a series), or the table has no id column (``event_type`` for
            events).
    """
    name = _describe(source)
    if type(source).__module__.partition(".")[0] == "pyarrow":
        rows: _Rows = _arrow_rows(source, name)
    else:
        rows = _frame_rows(source, name)
    return read_blocks(_TableReader(rows, RowMaker(rows.columns, kind, name)))


def read_parquet(
    path: str | os.PathLike[Any], name: str, kind: RecordKind
) -> AsyncGenerator[SourceRecord, None]:
    """Read a Parquet file's rows as records, a record batch at a time.

    Args:
        path: The file.
        name: The file, as the user named it, for error messages.
        kind: ``"user"``, ``"company"`` or ``"event"``.

    Returns:
        An async generator of ``SourceRecord``, one per row; the file is opened on the first
        iteration and closed when the generator ends, is closed or is cancelled.

    Raises:
        ValidationError: At once, when pyarrow is not installed. While iterating, when the file
            cannot be opened, is not Parquet, cannot be read, or has no id column (``event_type``
            for events).
    """
    parquet = _require("pyarrow.parquet", f"reading {name}", PARQUET_EXTRA)
    return read_blocks(_ParquetReader(parquet, path, name, kind))


def parquet_row_count(path: str | os.PathLike[Any]) -> int | None:
    """The number of rows a Parquet file holds, from its footer (no row is read).

    For a progress display's total: exact, and as quick as opening the file.

    Args:
        path: The file.

    Returns:
        The row count, or ``None`` when pyarrow is not installed or the file cannot be read.
    """
    try:
        parquet = importlib.import_module("pyarrow.parquet")
        return int(parquet.read_metadata(path).num_rows)
    except Exception:  # pyarrow's own errors too: the count is only a hint
        return None


class _Rows(Protocol):
    """A table's rows, in chunks of tuples; ``next_chunk`` runs in a worker thread."""

    columns: list[Any]

    def next_chunk(self) -> list[tuple[Any, ...]] | None: ...


class _TableReader:
    """Blocks of records from a table's chunks of rows (the blocking side)."""

    def __init__(self, rows: _Rows, maker: RowMaker) -> None:
        self._rows = rows
        self._maker = maker
        self._chunk: list[tuple[Any, ...]] = []
        self._offset = 0  # the next row of the chunk
        self._position = 0  # the next row of the table

    def open(self) -> None:
        """Nothing to open: the table is in memory (see ``_ParquetReader``)."""

    def next_block(self) -> list[SourceRecord] | None:
        """The next records, at most ``_BLOCK_ROWS``, or ``None`` after the last row."""
        while self._offset >= len(self._chunk):
            chunk = self._rows.next_chunk()
            if chunk is None:
                return None
            self._chunk, self._offset = chunk, 0
        rows = self._chunk[self._offset : self._offset + _BLOCK_ROWS]
        self._offset += len(rows)
        make = self._maker.make
        first = self._position
        self._position += len(rows)
        return [make(first + i, row) for i, row in enumerate(rows)]

    def close(self) -> None:
        """Drop the chunk in hand."""
        self._chunk = []


class _ParquetReader:
    """A Parquet file's record batches, opened in ``open`` and closed in ``close``."""

    def __init__(
        self, parquet: Any, path: str | os.PathLike[Any], name: str, kind: RecordKind
    ) -> None:
        self._parquet = parquet
        self._path = path
        self._name = name
        self._kind: RecordKind = kind
        self._file: Any = None
        self._table: _TableReader | None = None

    def open(self) -> None:
        """Open the file, read its schema and check its columns.

        Raises:
            ValidationError: The file cannot be opened, is not Parquet, or has no id column.
        """
        try:
            self._file = self._parquet.ParquetFile(
                self._path, buffer_size=_PARQUET_BUFFER_BYTES, pre_buffer=False
            )
        except OSError as exc:
            raise cannot_open(exc, self._name) from exc
        except Exception as exc:  # pyarrow's ArrowInvalid and kin: not a Parquet file
            raise ValidationError(
                f"{self._name}: not a readable Parquet file: {exc}", field="source"
            ) from exc
        # One decoding thread: turning the rows into Python objects is most of the work, and
        # Arrow's pool of threads would add their memory to the peak for little gain.
        batches = self._file.iter_batches(batch_size=_CHUNK_ROWS, use_threads=False)
        rows = _ArrowRows(self._file.schema_arrow.names, batches, self._name)
        self._table = _TableReader(rows, RowMaker(rows.columns, self._kind, self._name))

    def next_block(self) -> list[SourceRecord] | None:
        """The next records (see ``_TableReader.next_block``)."""
        assert self._table is not None  # noqa: S101  # open() ran first
        return self._table.next_block()

    def close(self) -> None:
        """Close the file (if it was opened)."""
        if self._table is not None:
            self._table.close()
        if self._file is not None:
            with contextlib.suppress(Exception):  # nothing was written: closing cannot lose data
                self._file.close()
            self._file = None


class _ArrowRows:
    """Rows of Arrow record batches: each column converted whole, then zipped into rows."""

    def __init__(self, columns: list[str], batches: Iterator[Any], name: str) -> None:
        self.columns: list[Any] = columns
        self._batches = batches
        self._name = name

    def next_chunk(self) -> list[tuple[Any, ...]] | None:
        try:
            batch = next(self._batches, None)
        except Exception as exc:  # a damaged file: pyarrow raises its own errors
            raise ValidationError(f"{self._name}: cannot read: {exc}", field="source") from exc
        if batch is None:
            return None
        return list(zip(*(_column_values(column) for column in batch.columns), strict=True))


def _column_values(column: Any) -> list[Any]:
    """An Arrow array as Python values; a value that has none is an ``Unreadable`` marker."""
    pyarrow = importlib.import_module("pyarrow")
    kind = column.type
    if pyarrow.types.is_timestamp(kind) and kind.unit == "ns":
        # To the microsecond, like every other source (and without pandas' Timestamp).
        column = column.cast(pyarrow.timestamp("us", kind.tz), safe=False)
    try:
        return list(column.to_pylist(maps_as_pydicts="strict"))
    except Exception:  # a value Python cannot hold: find it, cell by cell
        return [_scalar_value(scalar) for scalar in column]


def _scalar_value(scalar: Any) -> Any:
    try:
        return scalar.as_py(maps_as_pydicts="strict")
    except Exception as exc:  # becomes a rejection of this row alone
        return Unreadable(f"{type(exc).__name__}: {exc}")


def _arrow_rows(source: Any, name: str) -> _Rows:
    to_batches = getattr(source, "to_batches", None)
    if not callable(to_batches):  # a RecordBatch is its own only batch
        if type(source).__name__ != "RecordBatch":
            raise ValidationError(
                f"cannot read a {name}: pass a pyarrow Table or RecordBatch, or a DataFrame",
                field="source",
            )
        return _ArrowRows(list(source.schema.names), iter([source]), name)
    return _ArrowRows(list(source.schema.names), iter(to_batches(max_chunksize=_CHUNK_ROWS)), name)


def _frame_rows(source: object, name: str) -> _Rows:
    narwhals = _require("narwhals", f"reading a {name}", DATAFRAME_EXTRA)
    try:
        frame = narwhals.from_native(source, eager_only=True)
    except Exception as exc:  # narwhals says why in its own words (TypeError, ...)
        raise ValidationError(
            f"cannot read a {name}: pass a pandas or polars DataFrame or a pyarrow Table "
            f"(collect a lazy frame first): {exc}",
            field="source",
        ) from exc
    return _FrameRows(frame)


class _FrameRows:
    """Rows of a narwhals DataFrame, a slice of ``_CHUNK_ROWS`` at a time."""

    def __init__(self, frame: Any) -> None:
        self.columns: list[Any] = list(frame.columns)
        self._frame = frame
        self._height: int = len(frame)
        self._start = 0

    def next_chunk(self) -> list[tuple[Any, ...]] | None:
        if self._start >= self._height:
            return None
        stop = self._start + _CHUNK_ROWS
        rows: list[tuple[Any, ...]] = self._frame[self._start : stop].rows()
        self._start = stop
        return rows


def _require(module: str, purpose: str, install: str) -> Any:
    """Import an optional dependency, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module.partition(".")[0]
        raise ValidationError(
            f"{purpose} needs {missing}, which is not installed: {install}", field="source"
        ) from None


def _describe(source: object) -> str:
    """``pandas DataFrame``, ``polars DataFrame``, ``pyarrow Table``: a table, as users say."""
    cls = type(source)
    return f"{cls.__module__.partition('.')[0]} {cls.__name__}"
