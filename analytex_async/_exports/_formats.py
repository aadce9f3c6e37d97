"""Reading exported files: every format comes out as the same events.

An event is a ``dict`` with every field of the vendor's event data schema (``EVENT_FIELDS``):
``metadata`` a ``dict`` (it may arrive as an object or a JSON string), ``inserted_at`` an aware
UTC ``datetime`` (an ISO string, a timestamp or epoch microseconds), ``screen_width`` /
``screen_height`` ints, and an empty cell or a missing field ``None``. Columns the schema does
not name are left out (the schema grows).

The text formats are parsed as their bytes arrive, in batches of events: ``NdjsonReader``
(gzip recognised by its magic bytes) and ``CsvReader`` (a quoted cell may span lines). Parquet
and Avro are read from a spooled file by ``_columnar``. ``sniff`` tells the format from a
file's first bytes, so a file is read by its content, whatever its name.
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

EVENT_FIELDS: tuple[str, ...] = (
    "app_token",
    "event_type",
    "event_name",
    "user_id",
    "company_id",
    "source",
    "inserted_at",
    "hostname",
    "pathname",
    "screen_width",
    "screen_height",
    "device_type",
    "user_agent",
    "operating_system",
    "browser",
    "browser_language",
    "session",
    "country_code",
    "metadata",
)
"""The fields of an exported event, in the vendor's schema order."""
INT_FIELDS = ("screen_width", "screen_height")
"""Fields that are integers; every other field but ``inserted_at`` and ``metadata`` is text."""

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
AVRO_MAGIC = b"Obj\x01"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

FileKind = Literal["ndjson", "csv", "parquet", "avro"]


class ExportFileError(ValueError):
    """A file of an export holds something that is not an event (its position is named)."""


def sniff(head: bytes) -> FileKind:
    """Tell a file's format from its first bytes (after gzip, for the text formats).

    Args:
        head: The file's first bytes (at least 4 when the file has them).

    Returns:
        ``"parquet"``, ``"avro"``, ``"ndjson"`` (a first non-blank byte ``{``), else ``"csv"``.
    """
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(AVRO_MAGIC):
        return "avro"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "ndjson" if text.startswith(b"{") or not text else "csv"


def sniff_raw(head: bytes) -> FileKind:
    """Tell a file's format from its first bytes as downloaded (gzip-compressed or not).

    Args:
        head: The file's first bytes (a few hundred are plenty).

    Returns:
        The format; a gzip stream is NDJSON or CSV, by what it starts with.
    """
    if head.startswith(GZIP_MAGIC):
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, 64)
        except zlib.error:
            return "csv"
    return sniff(head)


def parse_instant(value: object) -> datetime | None:
    """An ``inserted_at`` as an aware UTC ``datetime``.

    Args:
        value: An ISO 8601 string (``Z``, an offset, or none for UTC), a ``datetime`` (naive
            is UTC), or a number of seconds since the epoch (microseconds when it is larger
            than any date in seconds could be).

    Returns:
        The moment, or ``None`` for ``None`` and ``""``.

    Raises:
        ValueError: Anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        if value.utcoffset() == timedelta(0) and value.tzinfo is timezone.utc:
            return value
        return value.astimezone(timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = _parse_odd_fraction(text)
        return parse_instant(parsed)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1_000_000 if abs(value) > 1e11 else value
        return EPOCH + timedelta(seconds=seconds)
    raise ValueError(f"inserted_at is not a date-time: {value!r:.60}")


def _parse_odd_fraction(text: str) -> datetime:
    # Python 3.10 reads 3 or 6 fractional digits only: pad or cut any other count.
    head, dot, rest = text.partition(".")
    if not dot:
        raise ValueError(f"inserted_at is not a date-time: {text!r:.60}")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    fraction, tail = rest[:digits], rest[digits:]
    return datetime.fromisoformat(f"{head}.{fraction[:6].ljust(6, '0')}{tail}")


def parse_metadata(value: object) -> dict[str, Any]:
    """``metadata`` as a ``dict``, from an object or a JSON string; empty or null is ``{}``.

    Raises:
        ValueError: A string that is not a JSON object, or another type.
    """
    if isinstance(value, dict):
        return value
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, bytes)):
        try:
            decoded = json.loads(value)
        except ValueError:
            raise ValueError(f"metadata is not JSON: {value!r:.60}") from None
        if decoded is None:
            return {}
        if isinstance(decoded, dict):
            return decoded
    raise ValueError(f"metadata is not an object: {value!r:.60}")


def _whole(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if number.is_integer():
                return int(number)
    raise ValueError(f"{name} is not a whole number: {value!r:.60}")


_BLANK: dict[str, Any] = dict.fromkeys(EVENT_FIELDS)
_UTC = timezone.utc


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One exported row as an event: every schema field, typed, empty cells ``None``.

    The common case (a row of schema fields, ``metadata`` an object, ``inserted_at`` an ISO
    string in UTC) takes a few C-level steps: this runs once per exported event.

    Args:
        raw: The row as the file holds it (unknown fields are left out).

    Returns:
        The event.

    Raises:
        ValueError: ``metadata``, ``inserted_at`` or a screen size cannot be read.
    """
    event = _BLANK.copy()
    event.update(raw)
    if len(event) != len(_BLANK):
        event = {name: event[name] for name in EVENT_FIELDS}  # unknown columns left out
    if "" in event.values():
        for name, value in event.items():
            if value == "":
                event[name] = None
    metadata = event["metadata"]
    if type(metadata) is not dict:
        event["metadata"] = parse_metadata(metadata)
    moment = event["inserted_at"]
    try:
        parsed = datetime.fromisoformat(moment)  # Python 3.11+ reads "Z" too
    except (TypeError, ValueError):
        event["inserted_at"] = parse_instant(moment)
    else:
        event["inserted_at"] = parsed if parsed.tzinfo is _UTC else parse_instant(parsed)
    for name in INT_FIELDS:
        value = event[name]
        if value is not None and type(value) is not int:
            event[name] = _whole(value, name)
    return event


def _failed(where: str, position: int, exc: Exception) -> ExportFileError:
    return ExportFileError(f"{where}, record {position}: {exc}")


PIECE = 128 * 1024
"""Bytes of decompressed text parsed at a time: a bound on a batch of events in memory."""


class _Gunzip:
    """Decompresses a gzip stream (several members too) piece by piece, or passes bytes on.

    ``feed`` yields the output in pieces of at most ``PIECE`` bytes, so a highly compressed
    chunk never becomes one large buffer.
    """

    def __init__(self) -> None:
        self._inflate: zlib._Decompress | None = None
        self._decided = False
        self._head = b""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if not self._decided:
            self._head += chunk
            if len(self._head) < 2:
                return
            chunk, self._head = self._head, b""
            self._decided = True
            if chunk.startswith(GZIP_MAGIC):
                self._inflate = zlib.decompressobj(wbits=31)
        if self._inflate is None:
            for start in range(0, len(chunk), PIECE):
                yield chunk[start : start + PIECE]
            return
        data = chunk
        while data:
            out: bytes = self._inflate.decompress(data, PIECE)
            data = self._inflate.unconsumed_tail
            if self._inflate.eof and self._inflate.unused_data:  # a further gzip member
                data = self._inflate.unused_data + data
                self._inflate = zlib.decompressobj(wbits=31)
            if out:
                yield out

    def flush(self) -> bytes:
        if not self._decided:
            self._decided = True
            return self._head
        if self._inflate is None:
            return b""
        if not self._inflate.eof:
            raise ExportFileError("the gzip stream ends before its end (a truncated file)")
        tail: bytes = self._inflate.flush()
        return tail


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class NdjsonReader:
    """Reads NDJSON events as bytes arrive: one JSON object per line, gzip by magic bytes.

    Args:
        where: The file's name, for error messages.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self._gunzip = _Gunzip()
        self._rest = b""
        self._position = 0

    def feed(self, chunk: bytes) -> Iterator[list[dict[str, Any]]]:
        """Take the next bytes; yield the events of the lines they complete, in batches."""
        for data in self._gunzip.feed(chunk):
            cut = data.rfind(b"\n")
            if cut < 0:
                self._rest += data
                continue
            block = self._rest + data[: cut + 1]
            self._rest = data[cut + 1 :]
            yield self._events(block)

    def close(self) -> list[dict[str, Any]]:
        """The end of the file: return the events of its last line."""
        tail = self._rest + self._gunzip.flush()
        self._rest = b""
        return self._events(tail)

    def _events(self, block: bytes) -> list[dict[str, Any]]:
        try:
            text = block.decode()
        except UnicodeDecodeError as exc:
            raise _failed(self.where, self._position, exc) from None
        events = []
        position = self._position
        for line in text.split("\n"):
            try:
                row, end = _scan(line, 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(line):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)  # white space around it, or the error's message
                except ValueError as error:
                    raise _failed(self.where, position, error) from None
            if type(row) is not dict:
                raise _failed(self.where, position, ValueError("the line is not a JSON object"))
            try:
                events.append(normalize(row))
            except ValueError as exc:
                raise _failed(self.where, position, exc) from None
            position += 1
        self._position = position
        return events


class CsvReader:
    """Reads CSV events as bytes arrive: a header row, then one event per record.

    A record may span lines inside quotes: lines are gathered until the quotes balance.

    Args:
        where: The file's name, for error messages.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self._gunzip = _Gunzip()
        self._decode = _utf8_decoder()
        self._rest = ""
        self._pending: list[str] = []
        self._quotes = 0
        self._header: list[str] | None = None
        self._position = 0

    def feed(self, chunk: bytes) -> Iterator[list[dict[str, Any]]]:
        """Take the next bytes; yield the events of the records they complete, in batches."""
        for data in self._gunzip.feed(chunk):
            text = self._decode(data, False)
            if not text:
                continue
            lines = (self._rest + text).split("\n")
            self._rest = lines.pop()
            yield self._records(lines)

    def close(self) -> list[dict[str, Any]]:
        """The end of the file: return the events of its last records."""
        text = self._rest + self._decode(self._gunzip.flush(), True)
        self._rest = ""
        events = self._records(text.split("\n"))
        if self._pending:
            raise _failed(self.where, self._position, ValueError("a quoted cell is not closed"))
        return events

    def _records(self, lines: list[str]) -> list[dict[str, Any]]:
        complete: list[str] = []
        for line in lines:
            self._pending.append(line)
            self._quotes += line.count('"')
            if self._quotes % 2 == 0:
                complete.append("\n".join(self._pending))
                self._pending = []
                self._quotes = 0
        events = []
        for row in csv.reader(complete):
            if not row or row == [""]:
                continue
            if self._header is None:
                self._header = [name.strip().lstrip("\ufeff") for name in row]
                continue
            position = self._position
            self._position += 1
            try:
                events.append(normalize(dict(zip(self._header, row, strict=False))))
            except ValueError as exc:
                raise _failed(self.where, position, exc) from None
        return events


def _utf8_decoder() -> Any:
    import codecs  # noqa: PLC0415 - only the CSV reader decodes text

    return codecs.getincrementaldecoder("utf-8-sig")().decode


TextReader = NdjsonReader | CsvReader


async def read_text(
    chunks: AsyncIterator[bytes], kind: FileKind, where: str
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Read an NDJSON or CSV file's events, in batches, as its bytes arrive.

    Args:
        chunks: The file's bytes, gzip-compressed or not.
        kind: ``"ndjson"`` or ``"csv"``.
        where: The file's name, for error messages.

    Yields:
        Lists of events, in file order.
    """
    reader: TextReader = NdjsonReader(where) if kind == "ndjson" else CsvReader(where)
    async for chunk in chunks:
        for events in reader.feed(chunk):
            if events:
                yield events
    events = reader.close()
    if events:
        yield events
