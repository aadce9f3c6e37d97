"""Sources: what the caller hands to an import becomes one lazy async stream of records.

``read_source`` takes whatever was passed to ``import_users``, ``_companies`` or ``_events``
(records, async records, a path, a file object, a table) and picks the reader for it: iterables
here, files in ``_files`` (which parse with ``_parsers``), tables in ``_frames``. Each
``SourceRecord`` carries its position in the source (and its line, for files). Nothing is
validated here: the pipeline runs ``check_record`` on what comes out. A file line that cannot
even be decoded comes out too, with ``error`` set, so that it becomes a ``Rejection`` rather
than disappearing.

Caller iterables are iterated on the loop itself (a user's generator may not be thread-safe),
with a ``Pacer`` giving the loop a turn every 1,000 items or 2 ms of work, whichever comes
first.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from typing import Any

from .._errors import ValidationError
from .._models import Company, User
from .._types import RecordKind, SourceFormat
from ._files import FileSource, read_file
from ._frames import is_table, read_parquet, read_table
from ._pacing import Pacer
from ._parsers import SourceRecord

# SourceRecord is defined with the parsers that make it (they sit below this module), and
# belongs to this module's interface.
__all__ = ["SourceRecord", "read_source"]

_FORMATS: dict[str, SourceFormat] = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}
_PARQUET = ".parquet"


def read_source(
    source: object,
    kind: RecordKind,
    *,
    format: SourceFormat | None = None,
    csv_multiline: bool = False,
) -> AsyncGenerator[SourceRecord, None]:
    """Read the records of a source lazily, as an async stream.

    Accepted sources:

    * a sync or async iterable of records (``User`` / ``Company`` objects, mappings, or anything:
      records are passed through untouched, for validation to judge);
    * a path (``str`` or ``os.PathLike``) to a ``.ndjson`` / ``.jsonl`` or ``.csv`` file, each
      optionally ``.gz``-compressed; ``format=`` overrides the suffix;
    * an open binary or text file object (``sys.stdin.buffer``, ``io.BytesIO``, ``io.StringIO``,
      ...), read as NDJSON unless ``format="csv"``; gzip-compressed binary streams are recognised
      by their magic bytes. File objects are not closed: their owner closes them;
    * a pandas or polars DataFrame (extra ``dataframe``), a pyarrow ``Table`` or
      ``RecordBatch``, or a path to a ``.parquet`` file (extra ``parquet``): see "Tables" below.

    NDJSON: every non-blank line is one record (LF or CRLF; a leading UTF-8 BOM is ignored). A
    line that is not valid UTF-8 or not valid JSON is yielded with ``error`` set; a JSON value
    that is not an object is yielded as is (validation rejects it).

    CSV (dialect ``excel``, UTF-8): the header names the columns and must contain ``user_id``
    (users) or ``company_id`` (companies). A user row becomes
    ``{"user_id": ..., "company_id": ..., "metadata": {...}}`` (``company_id`` only when the
    column exists and the cell is not empty); a company row ``{"company_id": ..., "metadata":
    {...}}``. Every other column is a metadata string. CSV cannot express null, so an empty cell
    is left out of ``metadata`` (it does not clear the property). Rows whose cells are all empty
    or blank are skipped; a row with more cells than the header is yielded with ``error`` set,
    and missing trailing cells count as empty. One physical line is one row: a line that ends
    inside a quoted cell is yielded with ``error`` set ("unclosed quote on line N") and reading
    goes on at the next line. With ``csv_multiline=True`` quoted cells may span lines, up to 100
    lines and 1 MiB per row; a row that runs past either, or is still open at the end of the
    file, is yielded with ``error`` set, naming the line where it opened, and reading goes on
    at the line after that one. A row the csv module cannot read (a cell longer than its field
    size limit) is yielded with ``error`` set too. A CSV file of events needs an ``event_type``
    column instead: see "Events" below.

    Tables (DataFrames, Arrow tables, Parquet files) are read a slice (or a record batch) of
    rows at a time in a worker thread, so a Parquet file is never in memory whole. Column
    ``user_id`` (or ``company_id``) is the id, a user's ``company_id`` column its company, a
    ``metadata`` struct (or dict) column and every other column metadata keys (a column wins
    over a key of the same name in ``metadata``). A null (``None``, NaN, NaT) leaves its key
    out; timestamps become ISO 8601 strings to the microsecond (one without a zone is taken as
    UTC, ``+00:00``), dates ``YYYY-MM-DD``, times of day and ``Decimal`` strings, numpy and
    Arrow scalars Python's own; an integer id its decimal string. A row holding anything else
    (a list, bytes, a timedelta, a nested struct, a float or null id) is yielded with ``error``
    set, naming the column. ``position`` is the row's zero-based index, ``line`` is ``None``.
    A ``.parquet`` path takes no ``format=``.

    Events (``kind="event"``), from a CSV file or a table, need an ``event_type`` column; their
    columns map to an event as ``_records.EventColumns`` says: a column named after one of the
    schema's fields is that field, a ``metadata`` column (a JSON object in CSV, a struct or dict
    in a table) and every other column metadata keys, a missing cell (empty, or null) left out.
    A table's ``inserted_at`` timestamp keeps its zone, or lack of one, for the event check to
    judge; an integer ``user_id`` or ``company_id`` becomes its decimal string.

    The returned async generator opens files only once iterated, and closes them when it ends,
    is closed or is cancelled; wrap it in ``contextlib.aclosing`` when you may stop early. A
    caller's (async) iterator is never closed: it belongs to the caller.

    Args:
        source: What to read (see above).
        kind: ``"user"``, ``"company"`` or ``"event"``: which id column a CSV file or a table
            must have (``user_id``, ``company_id``, ``event_type``).
        format: ``"ndjson"`` or ``"csv"``, overriding the file suffix (files) or the NDJSON
            default (file objects).
        csv_multiline: Read CSV quoted cells that span lines (see above). Ignored for other
            sources: NDJSON records never span lines, and iterables have none.

    Returns:
        An async generator of ``SourceRecord``, in source order.

    Raises:
        ValidationError: At once, when ``source`` is not something records can be read from
            (``bytes``, a single record, a path with an unknown suffix and no ``format=``, a
            table without its id column, a table or ``.parquet`` path whose extra is not
            installed), or ``kind`` / ``format`` / ``csv_multiline`` is not one of their
            values. While iterating, when a file cannot be opened or read, a gzip stream is
            corrupt, a CSV header is unusable, or a Parquet file is not Parquet or lacks its id
            column; the error names the file and, where it applies, the line.

    Example:
        ```python
        import contextlib

        async with contextlib.aclosing(read_source("users.ndjson.gz", "user")) as records:
            async for item in records:
                print(item.position, item.line, item.error or item.record)
        ```
    """
    if kind not in ("user", "company", "event"):
        raise ValidationError(
            f"must be 'user', 'company' or 'event', got {kind!r:.60}", field="kind"
        )
    if format is not None and format not in ("ndjson", "csv"):
        raise ValidationError(f"must be 'ndjson' or 'csv', got {format!r:.60}", field="format")
    if not isinstance(csv_multiline, bool):
        raise ValidationError(
            f"must be True or False, got {csv_multiline!r:.60}", field="csv_multiline"
        )
    if isinstance(source, (bytes, bytearray, memoryview)):
        raise ValidationError(
            f"got {type(source).__name__}: pass a path, a file object or an iterable of records "
            "(wrap bytes in io.BytesIO to read them as a file)",
            field="source",
        )
    if isinstance(source, (Mapping, User, Company)):
        raise ValidationError(
            f"got a single record ({type(source).__name__}): pass an iterable of records, "
            "e.g. a list",
            field="source",
        )
    if is_table(source):
        return read_table(source, kind)
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, kind, format, csv_multiline)
    read = getattr(source, "read", None)
    if callable(read):
        if inspect.iscoroutinefunction(read):
            raise ValidationError(
                f"async file objects ({type(source).__name__}) are not supported: pass the path, "
                "or a file opened with open()",
                field="source",
            )
        stream_name = getattr(source, "name", None)
        label = stream_name if isinstance(stream_name, str) else f"<{type(source).__name__}>"
        return read_file(
            FileSource(label, format or "ndjson", kind, stream=source, csv_multiline=csv_multiline)
        )
    if isinstance(source, AsyncIterable):
        return _read_async_iterable(source)
    if isinstance(source, Iterable):
        return _read_iterable(source)
    raise ValidationError(
        f"must be an iterable of records, an async iterable, a path or a file object, "
        f"got {type(source).__name__}",
        field="source",
    )


def _read_path(
    path: str | os.PathLike[Any],
    kind: RecordKind,
    format: SourceFormat | None,
    csv_multiline: bool,
) -> AsyncGenerator[SourceRecord, None]:
    """The reader for a file named by its path: Parquet, or NDJSON / CSV (see ``read_source``)."""
    name = os.fsdecode(path)
    if name.lower().endswith(_PARQUET):
        if format is not None:
            raise ValidationError(
                f"{name}: a .parquet file is read as Parquet: leave format= out", field="format"
            )
        return read_parquet(path, name, kind)
    path_format, compressed = _format_of_path(name)
    chosen = format or path_format
    if chosen is None:
        raise ValidationError(
            f"{name}: cannot tell the format from the file name: use a .ndjson, .jsonl or "
            ".csv suffix (optionally followed by .gz) or .parquet, or pass format='ndjson' "
            "or 'csv'",
            field="source",
        )
    return read_file(
        FileSource(name, chosen, kind, path=path, gzipped=compressed, csv_multiline=csv_multiline)
    )


def _format_of_path(name: str) -> tuple[SourceFormat | None, bool]:
    """The format a file name implies, and whether it is gzipped (``.gz``)."""
    lowered = name.lower()
    compressed = lowered.endswith(".gz")
    if compressed:
        lowered = lowered[: -len(".gz")]
    return _FORMATS.get(os.path.splitext(lowered)[1]), compressed


async def _read_iterable(source: Iterable[Any]) -> AsyncGenerator[SourceRecord, None]:
    # On the loop, not in a thread: a caller's generator may touch state that is not thread-safe.
    # The pacer's clock spans both the caller's next() and the consumer's work between items.
    pacer = Pacer()
    for position, item in enumerate(source):
        yield SourceRecord(position, None, item)
        await pacer.tick()


async def _read_async_iterable(source: AsyncIterable[Any]) -> AsyncGenerator[SourceRecord, None]:
    # An async iterable that never really awaits (one wrapping a list, say) would otherwise
    # starve the loop just like a sync one.
    pacer = Pacer()
    position = 0
    async for item in source:
        yield SourceRecord(position, None, item)
        position += 1
        await pacer.tick()
