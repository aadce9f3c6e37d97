"""What a valid events import file is: the event schema, timestamps, NDJSON and CSV files.

``POST /v1/imports`` takes one file of historical events, each with an ``event_type``
(``identify_user``, ``identify_company``, ``page_view``, ``track``), a ``source`` and an
``inserted_at``. Every problem becomes an :class:`ApiError` naming the line and the field, as
bulk NDJSON errors do.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping
from typing import Literal, cast
from urllib.parse import urlsplit

import attrs

from ._errors import ApiError
from ._multipart import FilePart
from ._rules import (
    Position,
    decode_utf8,
    json_type,
    loads_strict,
    read_metadata,
    read_ndjson_objects,
    required_string,
    too_many_records,
)

__all__ = [
    "CSV_FIELD_COLUMNS",
    "EVENT_TYPES",
    "SOURCES",
    "EventRow",
    "EventType",
    "is_csv",
    "parse_inserted_at",
    "read_event",
    "read_event_file",
    "read_events_csv",
    "read_events_ndjson",
]

EventType = Literal["identify_user", "identify_company", "page_view", "track"]

EVENT_TYPES: tuple[EventType, ...] = ("identify_user", "identify_company", "page_view", "track")
SOURCES = (
    "web-client",
    "backend-http",
    "backend-hubspot",
    "backend-salesforce",
    "backend-segment",
    "backend-http-import",
)
_TEXT_FIELDS = (
    "hostname",
    "pathname",
    "url",
    "user_agent",
    "country_code",
    "operating_system",
    "browser",
    "browser_language",
    "device_type",
)
_NUMBER_FIELDS = ("screen_width", "screen_height")
CSV_FIELD_COLUMNS = frozenset(
    {"event_type", "user_id", "company_id", "event_name", "source", "inserted_at"}
    | set(_TEXT_FIELDS)
    | set(_NUMBER_FIELDS)
)
"""CSV columns that are event fields; every other column is a metadata key."""

_METADATA_PREFIX = "metadata."
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?)?"
)


@attrs.frozen
class EventRow:
    """One validated event of an import file.

    ``fields`` holds the client fields the event carries (``hostname``, ``pathname``, ``url``,
    ``user_agent``, ``screen_width``, ...), with ``hostname`` and ``pathname`` derived from
    ``url`` when only the URL was given.
    """

    event_type: EventType
    source: str
    inserted_at: dt.datetime
    user_id: str | None
    company_id: str | None
    event_name: str | None
    metadata: dict[str, object]
    fields: dict[str, object]


def parse_inserted_at(text: str) -> dt.datetime | None:
    """Read an ISO 8601 timestamp (``T`` or a space between date and time); ``None`` if invalid.

    A timestamp without an offset is UTC; the result is always an aware UTC ``datetime``.
    Fractions of a second past microseconds are cut, not rounded.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = dt.timezone.utc
    if offset is not None and offset not in ("Z", "z"):
        digits = offset[1:].replace(":", "")
        delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if delta >= dt.timedelta(hours=24):
            return None
        zone = dt.timezone(delta if offset[0] == "+" else -delta)
    try:
        moment = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return moment.astimezone(dt.timezone.utc)


def _choice(item: Mapping[str, object], field: str, allowed: tuple[str, ...], pos: Position) -> str:
    value = item.get(field)
    listed = ", ".join(allowed)
    if value is None:
        pos.fail(field, f"missing_{field}", f"is required: one of {listed}")
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value) if isinstance(value, str) else json_type(value)
        pos.fail(field, f"invalid_{field}", f"must be one of {listed}, got {shown}")
    return value


def _inserted_at(item: Mapping[str, object], pos: Position) -> dt.datetime:
    value = item.get("inserted_at")
    if value is None:
        pos.fail("inserted_at", "missing_inserted_at", "is required: an ISO 8601 timestamp")
    moment = parse_inserted_at(value) if isinstance(value, str) else None
    if moment is None:
        shown = repr(value) if isinstance(value, str) else json_type(value)
        pos.fail(
            "inserted_at",
            "invalid_inserted_at",
            f"must be an ISO 8601 timestamp such as 2024-07-28T08:55:35Z, got {shown}",
        )
    return moment


def _optional_id(item: Mapping[str, object], field: str, pos: Position) -> str | None:
    value = item.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        pos.fail(field, f"invalid_{field}", "must be a non-empty string when present")
    return value


def _client_fields(item: Mapping[str, object], pos: Position) -> dict[str, object]:
    fields: dict[str, object] = {}
    for name in _TEXT_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            pos.fail(name, f"invalid_{name}", f"must be a string, got {json_type(value)}")
        if value:
            fields[name] = value
    for name in _NUMBER_FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            pos.fail(name, f"invalid_{name}", "must be a whole number of pixels, 0 or more")
        fields[name] = value
    url = fields.get("url")
    if isinstance(url, str):
        # As the real server does: a URL stands in for the hostname and pathname it holds.
        parts = urlsplit(url)
        if parts.hostname:
            fields.setdefault("hostname", parts.hostname)
            fields.setdefault("pathname", parts.path or "/")
    return fields


def _require_field(fields: Mapping[str, object], name: str, why: str, pos: Position) -> None:
    if name not in fields:
        pos.fail(name, f"missing_{name}", f"is required {why}")


def read_event(item: Mapping[str, object], pos: Position) -> EventRow:
    """Validate one event against the schema of its ``event_type``."""
    event_type = cast(EventType, _choice(item, "event_type", EVENT_TYPES, pos))
    if event_type == "identify_company":
        # Other keys of a company event are ignored by the server, the client fields included.
        return EventRow(
            event_type,
            _choice(item, "source", SOURCES, pos),
            _inserted_at(item, pos),
            user_id=None,
            company_id=required_string(item, "company_id", pos),
            event_name=None,
            metadata=read_metadata(item, pos, primitives_only=True),
            fields={},
        )
    user_id = required_string(item, "user_id", pos)
    event_name = required_string(item, "event_name", pos) if event_type == "track" else None
    source = _choice(item, "source", SOURCES, pos)
    inserted_at = _inserted_at(item, pos)
    company_id = _optional_id(item, "company_id", pos)
    fields = _client_fields(item, pos)
    if event_type == "page_view":
        for name in ("hostname", "pathname"):
            _require_field(fields, name, "on a page_view (or a url holding it)", pos)
    if source == "web-client":
        for name in ("hostname", "pathname"):
            _require_field(fields, name, "on a web-client event (or a url holding it)", pos)
        _require_field(fields, "user_agent", "on a web-client event", pos)
    # page_view defines no metadata: like any field the API does not define, it is ignored.
    metadata = read_metadata(item, pos, primitives_only=True) if event_type != "page_view" else {}
    return EventRow(
        event_type, source, inserted_at, user_id, company_id, event_name, metadata, fields
    )


def read_events_ndjson(data: bytes, *, max_records: int) -> list[EventRow]:
    """Validate an NDJSON events file: one event object per line, line numbers from 1."""
    return [
        read_event(item, pos) for pos, item in read_ndjson_objects(data, max_records=max_records)
    ]


def _csv_error(line: int, error_code: str, problem: str) -> ApiError:
    return ApiError(400, error_code, f"line {line}: {problem}", {"line": line})


def _csv_rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Split CSV text into its header and its non-blank rows, each with its starting line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    blank: int | None = None
    line = 0
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                blank = start if blank is None else blank
                continue
            if blank is not None:
                raise _csv_error(blank, "invalid_csv_row", "the line is blank")
            if header is None:
                header = cells
            else:
                rows.append((start, cells))
    except csv.Error as exc:
        # Named by the line its row starts on: an unclosed quote is found only lines later.
        raise _csv_error(line + 1, "invalid_csv_row", f"not valid CSV ({exc})") from None
    if header is None:
        raise ApiError(400, "empty_batch", "the file has no header row and no records")
    names = [name.strip() for name in header]
    for name in names:
        if not name or names.count(name) > 1:
            problem = "an empty column name" if not name else f"the column {name!r} twice"
            raise _csv_error(1, "invalid_csv_header", f"the header row has {problem}")
    return names, rows


def _csv_item(names: list[str], cells: list[str], pos: Position, line: int) -> dict[str, object]:
    if len(cells) > len(names):
        raise _csv_error(
            line, "invalid_csv_row", f"{len(cells)} cells for {len(names)} header columns"
        )
    item: dict[str, object] = {}
    from_json: dict[str, object] = {}
    from_columns: dict[str, object] = {}
    for name, cell in zip(names, cells, strict=False):  # short rows: the rest are empty
        if cell == "":  # CSV cannot say null: an empty cell is a value left out
            continue
        if name in CSV_FIELD_COLUMNS:
            item[name] = cell
        elif name == "metadata":
            try:
                decoded = loads_strict(cell)
            except (ValueError, RecursionError):
                decoded = cell
            if not isinstance(decoded, dict):
                pos.fail("metadata", "invalid_metadata", "must hold a JSON object")
            from_json = decoded
        else:
            from_columns[name.removeprefix(_METADATA_PREFIX)] = cell
    if from_json or from_columns:
        item["metadata"] = {**from_json, **from_columns}
    return item


def read_events_csv(data: bytes, *, max_records: int) -> list[EventRow]:
    """Validate a CSV events file: a header row, then one event per row.

    Columns named like an event field (``event_type``, ``user_id``, ``inserted_at``,
    ``hostname``, ...) are that field; a ``metadata`` column holds a JSON object; a
    ``metadata.<key>`` column, or any other column, is a metadata key whose value is the cell's
    text. Empty cells are left out. Errors name the line the row starts on (the header is
    line 1).
    """
    text = decode_utf8(data, per_line=True).removeprefix("\ufeff")
    names, rows = _csv_rows(text)
    if not rows:
        raise ApiError(400, "empty_batch", "the file has no records")
    if len(rows) > max_records:
        raise too_many_records(len(rows), max_records)
    events: list[EventRow] = []
    for line, cells in rows:
        pos = Position(f"line {line}", {"line": line})
        events.append(read_event(_csv_item(names, cells, pos, line), pos))
    return events


def is_csv(part: FilePart) -> bool:
    """Whether an uploaded file is CSV: by its name (``.csv``) or its part's Content-Type."""
    media = (part.content_type or "").split(";")[0].strip().lower()
    named_csv = part.filename is not None and part.filename.lower().endswith(".csv")
    return named_csv or media in ("text/csv", "application/csv")


def read_event_file(part: FilePart, *, max_records: int) -> list[EventRow]:
    """Validate an uploaded events file, CSV or NDJSON (see :func:`is_csv`)."""
    if is_csv(part):
        return read_events_csv(part.data, max_records=max_records)
    return read_events_ndjson(part.data, max_records=max_records)
