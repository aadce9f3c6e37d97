"""Sources: iterables, async iterables, NDJSON / JSONL / CSV files (optionally gzipped) → records.

``read_source`` turns whatever the caller handed to ``import_users`` / ``import_companies`` into
one lazy async stream of ``SourceRecord``s, each carrying its position in the source (and its line,
for files). It does not validate records: the pipeline runs ``bulk_record`` on what it yields.
A file line that cannot even be decoded is yielded too, with ``error`` set, so that it becomes a
``Rejection`` rather than disappearing.

Two rules keep the event loop responsive however large the source is:

* Files are opened, read, decompressed and parsed in a worker thread, a block at a time (at most
  1 MiB of input or 500 lines per hop), and only the parsed records cross back to the loop.
  Memory therefore stays bounded by about one block.
* Caller iterables are iterated on the loop itself (a user's generator may not be thread-safe),
  with a checkpoint every 1,000 items or 2 ms of work, whichever comes first.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import inspect
import io
import json
import os
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from typing import IO, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs

from .._errors import ValidationError
from .._models import Company, User
from .._types import RecordKind, SourceFormat

_FORMATS: dict[str, SourceFormat] = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"

# Per hop to the worker thread: read at most about this many bytes, and hand back at most this
# many lines. The hop overhead (~100 µs) stays noise either way. Blocks of lines are kept small
# so that few parsed records are waiting when the garbage collector runs: waiting records get
# promoted, and enough promotions trigger full collections, which pause the event loop too
# (measured: 2,000-line blocks caused 100+ ms pauses in a large test process, 500 did not).
_CHUNK_BYTES = 1 << 20
_BLOCK_LINES = 100
# A line this long cannot be a record (a batch holds at most 50 MB): it is almost certainly not
# NDJSON at all (a JSON array on one line, a binary file). Refusing it bounds memory.
_MAX_LINE_BYTES = 64 << 20
# The raw text kept in a SourceRecord that could not be decoded, so that a rejection report of a
# bad file stays readable and small.
_RAW_CHARS = 1_000

# Caller iterables run on the loop: yield to it this often so that it never stalls for long.
_CHECKPOINT_ITEMS = 1_000
_CHECKPOINT_SECONDS = 0.002

# What a damaged gzip stream raises while being read (BadGzipFile is also an OSError, so these
# are told apart from I/O errors before OSError is considered).
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


@attrs.frozen
class SourceRecord:
    """One record read from a source, with where it came from.

    Attributes:
        position: The record's zero-based index among all the records of the source. Blank
            lines are not records and take no position; records that could not be decoded do.
        line: The one-based line of the file where the record starts, or ``None`` when the
            source was an iterable.
        record: The decoded record: a ``dict`` for a file record, or exactly what the caller's
            iterable yielded. When ``error`` is set, the raw text of the line instead (invalid
            UTF-8 replaced, cut to about 1,000 characters).
        error: Why the raw input could not be decoded into a record, or ``None``.
    """

    position: int
    line: int | None
    record: Any
    error: str | None = None


def read_source(
    source: object,
    kind: RecordKind,
    *,
    format: SourceFormat | None = None,
) -> AsyncGenerator[SourceRecord, None]:
    """Read the records of a source lazily, as an async stream.

    Accepted sources:

    * a sync or async iterable of records (``User`` / ``Company`` objects, mappings, or anything:
      records are passed through untouched, for validation to judge);
    * a path (``str`` or ``os.PathLike``) to a ``.ndjson`` / ``.jsonl`` or ``.csv`` file, each
      optionally ``.gz``-compressed; ``format=`` overrides the suffix;
    * an open binary or text file object (``sys.stdin.buffer``, ``io.BytesIO``, ``io.StringIO``,
      ...), read as NDJSON unless ``format="csv"``; gzip-compressed binary streams are recognised
      by their magic bytes. File objects are not closed: their owner closes them.

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
    and missing trailing cells count as empty.

    The returned async generator opens files only once iterated, and closes them when it ends,
    is closed or is cancelled; wrap it in ``contextlib.aclosing`` when you may stop early. A
    caller's (async) iterator is never closed: it belongs to the caller.

    Args:
        source: What to read (see above).
        kind: ``"user"`` or ``"company"``: which id column a CSV file must have.
        format: ``"ndjson"`` or ``"csv"``, overriding the file suffix (files) or the NDJSON
            default (file objects).

    Returns:
        An async generator of ``SourceRecord``, in source order.

    Raises:
        ValidationError: At once, when ``source`` is not something records can be read from
            (``bytes``, a single record, a path with an unknown suffix and no ``format=``), or
            ``kind`` / ``format`` is not one of their values. While iterating, when a file cannot
            be opened or read, a gzip stream is corrupt, or a CSV header is unusable; the error
            names the file and, where it applies, the line.

    Example:
        ```python
        async with contextlib.aclosing(read_source("users.ndjson.gz", "user")) as records:
            async for item in records:
                print(item.position, item.line, item.error or item.record)
        ```
    """
    if kind not in ("user", "company"):
        raise ValidationError(f"must be 'user' or 'company', got {kind!r:.60}", field="kind")
    if format is not None and format not in ("ndjson", "csv"):
        raise ValidationError(f"must be 'ndjson' or 'csv', got {format!r:.60}", field="format")
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
    if isinstance(source, (str, os.PathLike)):
        name = os.fsdecode(source)
        path_format, compressed = _format_of_path(name)
        chosen = format or path_format
        if chosen is None:
            raise ValidationError(
                f"{name}: cannot tell the format from the file name: use a .ndjson, .jsonl or "
                ".csv suffix (optionally followed by .gz), or pass format='ndjson' or 'csv'",
                field="source",
            )
        return _read_file(_FileSource(name, chosen, kind, path=source, gzipped=compressed))
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
        return _read_file(_FileSource(label, format or "ndjson", kind, stream=source))
    if isinstance(source, AsyncIterable):
        return _read_async_iterable(source)
    if isinstance(source, Iterable):
        return _read_iterable(source)
    raise ValidationError(
        f"must be an iterable of records, an async iterable, a path or a file object, "
        f"got {type(source).__name__}",
        field="source",
    )


def _format_of_path(name: str) -> tuple[SourceFormat | None, bool]:
    """The format a file name implies, and whether it is gzipped (``.gz``)."""
    lowered = name.lower()
    compressed = lowered.endswith(".gz")
    if compressed:
        lowered = lowered[: -len(".gz")]
    return _FORMATS.get(os.path.splitext(lowered)[1]), compressed


class _Pacer:
    """Counts work done on the loop and checkpoints before it turns into a noticeable stall.

    The clock here measures CPU time spent on the loop, not a wait, so it is the process's
    performance counter rather than the event loop's (possibly mocked) clock.
    """

    __slots__ = ("_items", "_since")

    def __init__(self) -> None:
        self._items = 0
        self._since = time.perf_counter()

    def reset(self) -> None:
        self._items = 0
        self._since = time.perf_counter()

    async def tick(self) -> None:
        self._items += 1
        if (
            self._items >= _CHECKPOINT_ITEMS
            or time.perf_counter() - self._since >= _CHECKPOINT_SECONDS
        ):
            await anyio.lowlevel.checkpoint()
            self.reset()


async def _read_iterable(source: Iterable[Any]) -> AsyncGenerator[SourceRecord, None]:
    # On the loop, not in a thread: a caller's generator may touch state that is not thread-safe.
    # The pacer's clock spans both the caller's next() and the consumer's work between items.
    pacer = _Pacer()
    for position, item in enumerate(source):
        yield SourceRecord(position, None, item)
        await pacer.tick()


async def _read_async_iterable(source: AsyncIterable[Any]) -> AsyncGenerator[SourceRecord, None]:
    # An async iterable that never really awaits (one wrapping a list, say) would otherwise
    # starve the loop just like a sync one.
    pacer = _Pacer()
    position = 0
    async for item in source:
        yield SourceRecord(position, None, item)
        position += 1
        await pacer.tick()


async def _read_file(file: _FileSource) -> AsyncGenerator[SourceRecord, None]:
    pacer = _Pacer()
    try:
        await anyio.to_thread.run_sync(file.open)
        while True:
            block = await anyio.to_thread.run_sync(file.next_block)
            if block is None:
                return
            pacer.reset()  # the hop was a checkpoint
            for record in block:
                yield record
                await pacer.tick()
    finally:
        # Synchronous on purpose: closing a file opened for reading does not wait on the disk,
        # and an await here could be cancelled before the file is closed.
        file.close()


class _Rewound(io.RawIOBase):
    """A binary stream that replays the bytes already read from it, then reads on.

    Sniffing the gzip magic bytes needs the first bytes of the stream, and stdin cannot seek
    back. Closing it leaves the underlying stream open: it belongs to the caller.
    """

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)  # a view, so replaying it piece by piece copies nothing
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(view), len(self._head))
            view[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._stream.read(len(view))
        if data is None:
            raise OSError("the stream is non-blocking and has no data ready")
        view[: len(data)] = data
        return len(data)


def _encode_text(text: str) -> bytes:
    """Text read from a text stream, back as UTF-8, with undecodable bytes restored.

    A stream opened with ``errors="surrogateescape"`` carries invalid bytes as lone surrogates:
    encoding them back lets the line be reported as invalid UTF-8 like in a binary file. Any
    other lone surrogate is kept (``surrogatepass``) and fails the same UTF-8 check.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _raw_text(data: bytes) -> str:
    """A bounded, printable rendering of bytes that did not decode."""
    return data[: _RAW_CHARS * 4].decode("utf-8", "replace")[:_RAW_CHARS]


class _FileSource:
    """The blocking side of reading one file: ``open`` and ``next_block`` run in a worker thread.

    Everything it opens is kept on the instance as soon as it is open, so that ``close`` (run on
    the loop, in the generator's ``finally``) releases it even if a hop was cancelled mid-way:
    a cancelled hop still runs to its end in its thread, so ``close`` never races with it.
    """

    def __init__(
        self,
        name: str,
        format: SourceFormat,
        kind: RecordKind,
        *,
        path: str | os.PathLike[Any] | None = None,
        stream: Any = None,
        gzipped: bool = False,
    ) -> None:
        self._name = name
        self._format = format
        self._kind = kind
        self._path = path
        self._stream = stream
        # The name ends in .gz, so the content must be gzip; otherwise the magic bytes decide.
        self._gzipped = gzipped
        self._closers: list[Callable[[], object]] = []
        self._parser: _NdjsonParser | _CsvParser | None = None

    def open(self) -> None:
        stream = self._stream
        if self._path is not None:
            try:
                stream = open(self._path, "rb")  # noqa: SIM115  # closed by close()
            except FileNotFoundError as exc:
                raise ValidationError(f"{self._name}: no such file", field="source") from exc
            except OSError as exc:
                raise ValidationError(
                    f"{self._name}: cannot open: {exc.strerror or exc}", field="source"
                ) from exc
            self._closers.append(stream.close)
        try:
            # read(0) tells a text stream from a binary one without consuming anything.
            text_mode = isinstance(stream.read(0), str)
            self._parser = self._open_text(stream) if text_mode else self._open_binary(stream)
        except ValidationError:
            raise
        except (*_GZIP_ERRORS, OSError, ValueError) as exc:
            raise _read_failure(exc, self._name, 0) from exc

    def _open_text(self, stream: IO[str]) -> _NdjsonParser | _CsvParser:
        if self._format == "csv":
            return _CsvParser(stream, self._name, self._kind)

        def read() -> bytes:
            return _encode_text(stream.read(_CHUNK_BYTES))

        return _NdjsonParser(read, self._name)

    def _open_binary(self, stream: IO[bytes]) -> _NdjsonParser | _CsvParser:
        head = _read_bytes(stream)
        while 0 < len(head) < len(_GZIP_MAGIC):  # a pipe may hand over a single byte first
            more = _read_bytes(stream)
            if not more:
                break
            head += more
        gzipped = head.startswith(_GZIP_MAGIC)
        if self._gzipped and not gzipped:
            raise ValidationError(
                f"{self._name}: gzip stream is corrupt after line 0: not a gzip file "
                "(it does not start with the gzip magic bytes)",
                field="source",
                line=1,
            )
        if not gzipped and self._format == "ndjson":
            pending = [head]

            def read_plain() -> bytes:
                return pending.pop() if pending else _read_bytes(stream)

            return _NdjsonParser(read_plain, self._name)
        binary: IO[bytes] | gzip.GzipFile
        if gzipped:
            binary = gzip.GzipFile(fileobj=_Rewound(head, stream), mode="rb")
        else:
            binary = io.BufferedReader(_Rewound(head, stream))
        self._closers.append(binary.close)  # leaves the caller's stream open (see _Rewound)
        if self._format == "csv":
            # surrogateescape: an invalid byte becomes a lone surrogate that the row check
            # finds, instead of an exception that would end the whole file.
            text = io.TextIOWrapper(
                binary, encoding="utf-8-sig", errors="surrogateescape", newline=""
            )
            self._closers.append(text.close)
            return _CsvParser(text, self._name, self._kind)
        # read1: one decompression step per call, so the data before a corrupt spot is handed
        # over before the error surfaces, and the error names the right line.
        read1 = binary.read1

        def read_gzip() -> bytes:
            return bytes(read1(_CHUNK_BYTES))

        return _NdjsonParser(read_gzip, self._name)

    def next_block(self) -> list[SourceRecord] | None:
        assert self._parser is not None  # noqa: S101  # open() ran first
        return self._parser.next_block()

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            # A failed close cannot lose data (nothing was written), and the remaining
            # resources must still be released.
            with contextlib.suppress(OSError, ValueError):
                closer()


def _read_bytes(stream: IO[bytes]) -> bytes:
    """Read a chunk from a caller's binary stream, with one system call where possible."""
    read1 = getattr(stream, "read1", None)
    data = read1(_CHUNK_BYTES) if read1 is not None else stream.read(_CHUNK_BYTES)
    if data is None:
        raise OSError("the stream is non-blocking and has no data ready")
    return bytes(data)


def _read_failure(exc: BaseException, name: str, lines_done: int) -> ValidationError:
    """The error that ends a file read, naming the last line that was read whole."""
    if isinstance(exc, _GZIP_ERRORS):
        detail = str(exc) or type(exc).__name__
        message = f"{name}: gzip stream is corrupt after line {lines_done}: {detail}"
    else:
        message = f"{name}: cannot read after line {lines_done}: {exc}"
    error = ValidationError(message, field="source", line=lines_done + 1)
    error.__cause__ = exc
    return error


class _NdjsonParser:
    """Splits a byte stream into lines and decodes each, a block of lines per call."""

    def __init__(self, read: Callable[[], bytes], name: str) -> None:
        self._read = read
        self._name = name
        self._lines: list[bytes] = []
        self._next = 0  # index of the next line of self._lines to parse
        self._partial = bytearray()  # the start of a line whose end has not been read yet
        self._line = 0  # the number of the last line parsed
        self._position = 0
        self._eof = False
        self._failure: ValidationError | None = None

    def next_block(self) -> list[SourceRecord] | None:
        """Parse the next block: ``None`` at the end, maybe ``[]`` after a run of blank lines."""
        out: list[SourceRecord] = []
        consumed = 0
        read = 0
        while consumed < _BLOCK_LINES:
            if self._next < len(self._lines):
                line = self._lines[self._next]
                self._next += 1
                consumed += 1
                self._line += 1
                record = self._parse(line)
                if record is not None:
                    out.append(record)
                continue
            if self._eof or read >= _CHUNK_BYTES:
                break
            try:
                chunk = self._read()
                read += len(chunk)
                self._take(chunk)
            except ValidationError as exc:
                self._failure = exc
                self._eof = True
                break
            except (*_GZIP_ERRORS, OSError, ValueError) as exc:
                # Hand over what was parsed first; the failure is raised on the next call.
                self._failure = _read_failure(exc, self._name, self._line)
                self._eof = True
                break
        if out or not self._eof:
            return out
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return None

    def _take(self, chunk: bytes) -> None:
        """Split a chunk into complete lines (only called once the previous ones are parsed)."""
        if not chunk:
            self._eof = True
            self._lines = [bytes(self._partial)] if self._partial else []
            self._partial.clear()
            self._next = 0
            return
        if b"\n" not in chunk:
            self._partial += chunk
            if len(self._partial) > _MAX_LINE_BYTES:
                raise ValidationError(
                    f"{self._name}: line {self._line + 1} is longer than "
                    f"{_MAX_LINE_BYTES >> 20} MiB; is this an NDJSON file "
                    "(one JSON object per line)?",
                    field="source",
                    line=self._line + 1,
                )
            self._lines = []
            self._next = 0
            return
        lines = chunk.split(b"\n")
        if self._partial:
            lines[0] = bytes(self._partial) + lines[0]
        self._partial = bytearray(lines.pop())
        self._lines = lines
        self._next = 0

    def _parse(self, line: bytes) -> SourceRecord | None:
        number = self._line
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._error(
                f"line {number} is not valid UTF-8 "
                f"(byte 0x{line[exc.start]:02x} at offset {exc.start})",
                _raw_text(line),
            )
        if not text or text.isspace():
            return None
        try:
            value = _decode_json(text)
        except json.JSONDecodeError as exc:
            return self._error(f"not valid JSON: {exc.msg} (column {exc.colno})", text)
        except ValueError as exc:  # e.g. an integer longer than Python's digit limit
            return self._error(f"not valid JSON: {exc}", text)
        except RecursionError:
            return self._error("not valid JSON: nested too deeply", text)
        record = SourceRecord(self._position, number, value)
        self._position += 1
        return record

    def _error(self, reason: str, raw: str) -> SourceRecord:
        record = SourceRecord(self._position, self._line, raw[:_RAW_CHARS], reason)
        self._position += 1
        return record


# The decoder's C scanner: set in JSONDecoder.__init__, absent from the type stubs.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode_json(text: str) -> Any:
    """``json.loads``, without its per-call overhead in the common case.

    The C scanner decodes a line that starts with its value directly; a line with leading white
    space, trailing garbage or an error goes through ``json.loads``, which accepts or explains it.
    The scanner holds the GIL for a whole call, so sharing it between threads is safe.
    """
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return json.loads(text)
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)
    return value


class _CsvParser:
    """Reads CSV rows and turns them into record dicts, a block of rows per call."""

    def __init__(self, lines: Iterable[str], name: str, kind: RecordKind) -> None:
        self._rows = csv.reader(lines, dialect="excel")
        self._name = name
        self._kind = kind
        self._id_column = "user_id" if kind == "user" else "company_id"
        self._header: list[str] | None = None
        self._id_index = 0
        self._company_index: int | None = None
        self._metadata: list[tuple[int, str]] = []
        self._position = 0
        self._eof = False
        self._failure: ValidationError | None = None

    def next_block(self) -> list[SourceRecord] | None:
        """Parse the next block: ``None`` at the end, maybe ``[]`` after a run of blank rows."""
        out: list[SourceRecord] = []
        consumed = 0
        while consumed < _BLOCK_LINES and not self._eof:
            start = self._rows.line_num + 1
            try:
                row = next(self._rows)
            except StopIteration:
                self._eof = True
                if self._header is None:
                    raise ValidationError(
                        f"{self._name}: the file is empty: a CSV file needs a header row with "
                        f"a {self._id_column!r} column",
                        field="source",
                        line=1,
                    ) from None
                break
            except csv.Error as exc:
                # The csv module cannot resynchronise after this (e.g. a field over its size
                # limit), so the rest of the file cannot be trusted.
                self._failure = ValidationError(
                    f"{self._name}: not valid CSV: {exc}",
                    field="source",
                    line=max(self._rows.line_num, start),
                )
                self._failure.__cause__ = exc
                self._eof = True
                break
            except (*_GZIP_ERRORS, OSError, ValueError) as exc:
                # line_num counts the lines the reader received whole.
                self._failure = _read_failure(exc, self._name, self._rows.line_num)
                self._eof = True
                break
            consumed += 1
            if not any(cell.strip() for cell in row):
                continue  # blank lines, or rows of empty cells: no data, not a record
            if self._header is None:
                self._set_header(row, start)
            else:
                out.append(self._record(row, start))
        if out or not self._eof:
            return out
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return None

    def _set_header(self, row: list[str], line: int) -> None:
        # A BOM survives in a text stream opened without utf-8-sig.
        names = [cell.strip() for cell in row]
        names[0] = names[0].lstrip("\ufeff").strip()
        found = ", ".join(repr(_raw_text(_encode_text(name))) for name in names)
        if _bad_cell(names) is not None:
            raise ValidationError(
                f"{self._name}: the header is not valid UTF-8 (columns: {found})",
                field="source",
                line=line,
            )
        if "" in names:
            raise ValidationError(
                f"{self._name}: header column {names.index('') + 1} has no name (columns: {found})",
                field="source",
                line=line,
            )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValidationError(
                f"{self._name}: duplicate header column(s) "
                f"{', '.join(map(repr, duplicates))} (columns: {found})",
                field="source",
                line=line,
            )
        if self._id_column not in names:
            raise ValidationError(
                f"{self._name}: the header has no {self._id_column!r} column, which {self._kind} "
                f"records need (columns: {found})",
                field="source",
                line=line,
            )
        self._header = names
        self._id_index = names.index(self._id_column)
        if self._kind == "user" and "company_id" in names:
            self._company_index = names.index("company_id")
        taken = {self._id_index, self._company_index}
        self._metadata = [(i, name) for i, name in enumerate(names) if i not in taken]

    def _record(self, row: list[str], line: int) -> SourceRecord:
        assert self._header is not None  # noqa: S101  # rows come after the header
        width = len(self._header)
        if len(row) > width:
            return self._error(f"row has {len(row)} fields, header has {width}", row, line)
        bad = _bad_cell(row)
        if bad is not None:
            return self._error(
                f"line {line} is not valid UTF-8 (in column {self._header[bad]!r})", row, line
            )
        if len(row) < width:
            row = row + [""] * (width - len(row))
        record: dict[str, Any] = {self._id_column: row[self._id_index]}
        if self._company_index is not None and row[self._company_index]:
            record["company_id"] = row[self._company_index]
        record["metadata"] = {name: row[i] for i, name in self._metadata if row[i]}
        result = SourceRecord(self._position, line, record)
        self._position += 1
        return result

    def _error(self, reason: str, row: list[str], line: int) -> SourceRecord:
        buffer = io.StringIO()
        csv.writer(buffer, dialect="excel").writerow(row)
        raw = _raw_text(_encode_text(buffer.getvalue().rstrip("\r\n")))
        record = SourceRecord(self._position, line, raw, reason)
        self._position += 1
        return record


def _bad_cell(cells: list[str]) -> int | None:
    """The index of the first cell holding a lone surrogate (an undecodable byte), if any."""
    for index, cell in enumerate(cells):
        if not cell.isascii():
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                return index
    return None
