"""Parquet and Avro exports, and an export as one Arrow table.

A Parquet file is read one row group at a time and an Avro file a block of records at a time,
from a file spooled to disk (both formats need to seek), in a worker thread. ``TableBuilder``
gathers an export into a ``pyarrow.Table`` of the event schema: ``metadata`` a JSON string
column, ``inserted_at`` a UTC timestamp, the screen sizes ``int64``, every other field a
string; a column a file lacks is null, a column the schema lacks is left out.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncGenerator, Callable
from itertools import islice
from pathlib import Path
from typing import Any

import anyio.to_thread

from ._formats import EVENT_FIELDS, INT_FIELDS, ExportFileError, normalize, parse_instant

AVRO_BATCH = 5_000
"""Avro records read in one hop to the worker thread."""


def _module(name: str) -> Any:
    return importlib.import_module(name)


def _normalized(rows: list[dict[str, Any]], where: str, first: int) -> list[dict[str, Any]]:
    events = []
    for offset, row in enumerate(rows):
        try:
            events.append(normalize(row))
        except ValueError as exc:
            raise ExportFileError(f"{where}, record {first + offset}: {exc}") from None
    return events


async def read_parquet(path: Path, where: str) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Read a Parquet file's events, one row group at a time.

    Args:
        path: The spooled file.
        where: The file's name, for error messages.

    Yields:
        The events of each row group.
    """
    try:
        file = await anyio.to_thread.run_sync(open_parquet, path)
    except Exception as exc:  # pyarrow's own errors: a damaged file
        raise ExportFileError(f"{where}: not a readable Parquet file ({exc})") from None
    try:
        first = 0
        for index in range(file.num_row_groups):

            def rows(index: int = index, first: int = first) -> list[dict[str, Any]]:
                return _normalized(
                    file.read_row_group(index, use_threads=False).to_pylist(), where, first
                )

            events = await anyio.to_thread.run_sync(rows)
            first += len(events)
            yield events
    finally:
        file.close()


async def read_avro(path: Path, where: str) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Read an Avro file's events, a few thousand records at a time.

    Args:
        path: The spooled file.
        where: The file's name, for error messages.

    Yields:
        Lists of events, in file order.
    """
    fastavro = _module("fastavro")
    handle = path.open("rb")
    try:
        try:
            records = await anyio.to_thread.run_sync(fastavro.reader, handle)
        except Exception as exc:  # fastavro's own errors: not an Avro container
            raise ExportFileError(f"{where}: not a readable Avro file ({exc})") from None
        first = 0
        while True:

            def take(first: int = first) -> list[dict[str, Any]]:
                return _normalized(list(islice(records, AVRO_BATCH)), where, first)

            events = await anyio.to_thread.run_sync(take)
            if not events:
                return
            first += len(events)
            yield events
    finally:
        handle.close()


def open_parquet(path: Path) -> Any:
    """Open a spooled Parquet file whose reads allocate from the system allocator.

    pyarrow's default pool (mimalloc or jemalloc) keeps the pages a decoded row group used once
    it is freed, so the process grows by a row group's decoding on top of what it keeps; memory
    from ``malloc`` goes back to the system. The table the reads build is what stays.

    Args:
        path: The file.

    Returns:
        A ``pyarrow.parquet.ParquetFile``.
    """
    pa = _module("pyarrow")
    parquet = _module("pyarrow.parquet")
    file = parquet.ParquetFile(str(path), pre_buffer=False)
    try:
        reader = parquet.ParquetReader(memory_pool=pa.system_memory_pool())
        reader.open(str(path), pre_buffer=False)
    except (AttributeError, TypeError):  # a pyarrow without it: the default pool then
        return file
    file.reader.close()
    file.reader = reader
    return file


def arrow_schema() -> Any:
    """The ``pyarrow`` schema of an exported events table."""
    pa = _module("pyarrow")
    fields = []
    for name in EVENT_FIELDS:
        if name == "inserted_at":
            kind = pa.timestamp("us", tz="UTC")
        elif name in INT_FIELDS:
            kind = pa.int64()
        else:
            kind = pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class TableBuilder:
    """Gathers an export's pieces into one ``pyarrow.Table`` of the event schema."""

    def __init__(self) -> None:
        self.pa = _module("pyarrow")
        self.schema = arrow_schema()
        self.pieces: list[Any] = []

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """Add events read from a text or Avro file (``metadata`` becomes JSON text)."""
        rows = [{**event, "metadata": _json_text(event["metadata"])} for event in events]
        self.pieces.append(self.pa.Table.from_pylist(rows, schema=self.schema))

    def add_table(self, table: Any) -> None:
        """Add a row group of a Parquet file, converted to the event schema."""
        self.pieces.append(self.conform(table))

    def conform(self, table: Any) -> Any:
        """A table's columns as the event schema has them (unknown ones left out).

        Args:
            table: A ``pyarrow.Table`` as a Parquet file held it.

        Returns:
            The table in the event schema.
        """
        pa = self.pa
        columns = []
        for field in self.schema:
            if field.name not in table.column_names:
                columns.append(pa.nulls(table.num_rows, field.type))
                continue
            column = table.column(field.name)
            if column.type == field.type:
                columns.append(column)
            else:
                columns.append(self._convert(column, field))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _convert(self, column: Any, field: Any) -> Any:
        pa = self.pa
        kind = column.type
        if field.name == "inserted_at" and pa.types.is_timestamp(kind):
            return column.cast(field.type)  # a zone-less timestamp is taken as UTC
        if field.name == "metadata" and not (pa.types.is_string(kind) or pa.types.is_null(kind)):
            convert: Callable[[object], object] = _json_text
        elif field.name == "inserted_at":
            convert = parse_instant
        elif field.name in INT_FIELDS and not pa.types.is_integer(kind):
            convert = _int_or_none
        else:
            try:
                return column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                convert = _json_text
        try:
            values = [convert(value) for value in column.to_pylist()]
        except ValueError as exc:
            raise ExportFileError(f"column {field.name}: {exc}") from None
        return pa.array(values, type=field.type)

    def table(self) -> Any:
        """The whole table (no copy: its row groups become its chunks)."""
        if not self.pieces:
            return self.schema.empty_table()
        return self.pa.concat_tables(self.pieces)


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    number = float(value) if isinstance(value, str) else value
    if isinstance(number, float) and number.is_integer():
        return int(number)
    if isinstance(number, int):
        return number
    raise ValueError(f"not a whole number: {value!r:.60}")


async def parquet_pieces(path: Path, where: str, builder: TableBuilder) -> None:
    """Add a Parquet file to a table, one row group at a time.

    Args:
        path: The spooled file.
        where: The file's name, for error messages.
        builder: The table being built.
    """
    try:
        file = await anyio.to_thread.run_sync(open_parquet, path)
    except Exception as exc:  # pyarrow's own errors: a damaged file
        raise ExportFileError(f"{where}: not a readable Parquet file ({exc})") from None
    try:
        for index in range(file.num_row_groups):

            def read(index: int = index) -> Any:
                return file.read_row_group(index, use_threads=False)

            piece = await anyio.to_thread.run_sync(read)
            try:
                builder.add_table(piece)
            except ExportFileError as exc:
                raise ExportFileError(f"{where}, row group {index}: {exc}") from None
    finally:
        file.close()
