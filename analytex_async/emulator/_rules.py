"""What a valid request body is: JSON decoding, records, NDJSON lines.

Every problem becomes an :class:`ApiError` with status 400 (or 413 for too many records), so
a malformed body can never reach the store or turn into a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Literal, NoReturn

import attrs

from ._errors import ApiError

__all__ = [
    "CompanyRecord",
    "EventRecord",
    "Kind",
    "Position",
    "Record",
    "UserRecord",
    "decode_json",
    "decode_utf8",
    "json_type",
    "loads_strict",
    "read_bulk_json",
    "read_bulk_ndjson",
    "read_company_identify",
    "read_delete_ids",
    "read_identify",
    "read_metadata",
    "read_ndjson_objects",
    "read_track",
    "required_string",
    "too_many_records",
]

Kind = Literal["users", "companies"]


@attrs.frozen
class UserRecord:
    """A validated user: id, optional company id, metadata to merge."""

    user_id: str
    company_id: str | None
    metadata: dict[str, object]


@attrs.frozen
class CompanyRecord:
    """A validated company: id and metadata to merge."""

    company_id: str
    metadata: dict[str, object]


@attrs.frozen
class EventRecord:
    """A validated tracked event."""

    user_id: str
    event_name: str
    metadata: dict[str, object]


Record = UserRecord | CompanyRecord


@attrs.frozen
class Position:
    """Where in a body a record sits, for messages and ``details``.

    ``label`` prefixes messages (``"line 3"``, ``"users[2]"``, or empty for a one-record body);
    ``details`` is merged into the error's details (``{"line": 3}``).
    """

    label: str = ""
    details: Mapping[str, object] = attrs.field(factory=dict)

    def fail(self, field: str, error_code: str, problem: str) -> NoReturn:
        """Raise a 400 naming this position and ``field``."""
        prefix = f"{self.label}: " if self.label else ""
        raise ApiError(
            400, error_code, f"{prefix}{field} {problem}", {**self.details, "field": field}
        )


_BODY = Position()


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),  # before int: bool is a subclass of int
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: object) -> str:
    """Name the JSON type of a decoded value, for messages."""
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)
# One decoder for every call: ``json.loads`` with an option builds a new one each time, which
# cost more than the parsing itself on a 10,000-line upload (the emulator's own share of an
# end-to-end import's time while no job runs).


def loads_strict(text: str) -> object:
    """Strict JSON: no NaN / Infinity. Raises ValueError or RecursionError."""
    if text.startswith("\ufeff"):  # as json.loads says it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _STRICT_JSON.decode(text)


def decode_utf8(data: bytes, *, per_line: bool) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f"line {line}: " if per_line else ""
        raise ApiError(
            400,
            "invalid_utf8",
            f"{where}the body is not valid UTF-8 (byte offset {exc.start})",
            {"line": line, "offset": exc.start},
        ) from None


def decode_json(body: bytes) -> object:
    """Decode a JSON request body strictly (UTF-8, no NaN, bounded nesting)."""
    if not body:
        raise ApiError(400, "invalid_json", "the body is empty; a JSON object is expected")
    text = decode_utf8(body, per_line=False)
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "invalid_json",
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            {"line": exc.lineno, "column": exc.colno},
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def _object(doc: object, what: str = "the body") -> dict[str, object]:
    if not isinstance(doc, dict):
        raise ApiError(
            400, "invalid_payload", f"{what} must be a JSON object, got {json_type(doc)}"
        )
    return doc


def required_string(record: Mapping[str, object], field: str, pos: Position) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value:
        if field not in record:
            got = "missing"
        elif isinstance(value, str):
            got = "got an empty string"
        else:
            got = f"got {json_type(value)}"
        pos.fail(field, f"missing_{field}", f"is required and must be a non-empty string ({got})")
    return value


def read_metadata(
    record: Mapping[str, object], pos: Position, *, primitives_only: bool
) -> dict[str, object]:
    value = record.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        pos.fail("metadata", "invalid_metadata", f"must be an object, got {json_type(value)}")
    if primitives_only:
        for key, item in value.items():
            if isinstance(item, dict | list):
                pos.fail(
                    f"metadata.{key}",
                    "non_primitive_metadata",
                    "must be a string, number, boolean or null in bulk calls, "
                    f"got {json_type(item)}",
                )
            if isinstance(item, float) and not math.isfinite(item):  # pragma: no cover
                pos.fail(f"metadata.{key}", "non_primitive_metadata", "must be finite")
    return dict(value)


def read_identify(doc: object) -> tuple[UserRecord, CompanyRecord | None]:
    """Validate a ``POST /v1/identify`` body."""
    body = _object(doc)
    user_id = required_string(body, "user_id", _BODY)
    metadata = read_metadata(body, _BODY, primitives_only=False)
    company = body.get("company")
    if company is None:
        return UserRecord(user_id, None, metadata), None
    if not isinstance(company, dict):
        _BODY.fail("company", "invalid_company", f"must be an object, got {json_type(company)}")
    company_id = company.get("id")
    if not isinstance(company_id, str) or not company_id:
        _BODY.fail("company.id", "company_without_id", "is required and must be a non-empty string")
    extra = {key: value for key, value in company.items() if key != "id"}
    return UserRecord(user_id, company_id, metadata), CompanyRecord(company_id, extra)


def read_company_identify(doc: object) -> CompanyRecord:
    """Validate a ``POST /v1/companies/identify`` body."""
    body = _object(doc)
    return CompanyRecord(
        required_string(body, "company_id", _BODY),
        read_metadata(body, _BODY, primitives_only=False),
    )


def read_track(doc: object) -> EventRecord:
    """Validate a ``POST /v1/track`` body."""
    body = _object(doc)
    return EventRecord(
        required_string(body, "user_id", _BODY),
        required_string(body, "event_name", _BODY),
        read_metadata(body, _BODY, primitives_only=False),
    )


def _bulk_record(kind: Kind, item: object, pos: Position) -> Record:
    if not isinstance(item, dict):
        pos.fail("record", "invalid_record", f"must be a JSON object, got {json_type(item)}")
    metadata = read_metadata(item, pos, primitives_only=True)
    if kind == "companies":
        return CompanyRecord(required_string(item, "company_id", pos), metadata)
    user_id = required_string(item, "user_id", pos)
    company_id = item.get("company_id")
    if company_id is not None and (not isinstance(company_id, str) or not company_id):
        pos.fail("company_id", "invalid_company_id", "must be a non-empty string when present")
    return UserRecord(user_id, company_id, metadata)


def too_many_records(count: int, max_records: int) -> ApiError:
    return ApiError(
        413,
        "too_many_records",
        f"{count} records in one request; at most {max_records} are accepted",
        {"records": count, "max_records": max_records},
    )


def read_bulk_json(kind: Kind, doc: object, *, max_records: int) -> list[Record]:
    """Validate a JSON bulk body: ``{"users": [...]}`` or ``{"companies": [...]}``."""
    body = _object(doc)
    items = body.get(kind)
    if not isinstance(items, list):
        raise ApiError(
            400,
            "invalid_payload",
            f'the body must be an object with a "{kind}" array, '
            f"got {json_type(items) if kind in body else 'no such key'}",
            {"field": kind},
        )
    if not items:
        raise ApiError(400, "empty_batch", f'"{kind}" is empty; send at least one record')
    if len(items) > max_records:
        raise too_many_records(len(items), max_records)
    return [
        _bulk_record(kind, item, Position(f"{kind}[{index}]", {"index": index}))
        for index, item in enumerate(items)
    ]


def read_ndjson_objects(
    data: bytes, *, max_records: int
) -> list[tuple[Position, dict[str, object]]]:
    r"""Split an NDJSON file into its JSON objects, each with its position (line numbers from 1).

    ``\r\n`` line ends are accepted, and so are blank lines at the end of the file; a blank
    line anywhere else, a line that is not JSON or not a JSON object, is an error naming its line.
    """
    text = decode_utf8(data, per_line=True)
    lines = text.split("\n")  # not splitlines(): U+2028 and friends are valid inside JSON strings
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ApiError(400, "empty_batch", "the file has no records")
    if len(lines) > max_records:
        raise too_many_records(len(lines), max_records)
    objects: list[tuple[Position, dict[str, object]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ApiError(
                400, "invalid_ndjson_line", f"line {number}: the line is blank", {"line": number}
            )
        try:
            item = loads_strict(line)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise ApiError(
                400,
                "invalid_ndjson_line",
                f"line {number}: not valid JSON ({reason})",
                {"line": number},
            ) from None
        if not isinstance(item, dict):
            raise ApiError(
                400,
                "invalid_ndjson_line",
                f"line {number}: expected a JSON object, got {json_type(item)}",
                {"line": number},
            )
        objects.append((Position(f"line {number}", {"line": number}), item))
    return objects


def read_bulk_ndjson(kind: Kind, data: bytes, *, max_records: int) -> list[Record]:
    """Validate a bulk NDJSON file: one user or company object per line."""
    return [
        _bulk_record(kind, item, pos)
        for pos, item in read_ndjson_objects(data, max_records=max_records)
    ]


def read_delete_ids(kind: Kind, doc: object) -> list[str]:
    """Validate a delete body: ``{"users": [id, ...]}`` or ``{"companies": [id, ...]}``."""
    body = _object(doc)
    ids = body.get(kind)
    if not isinstance(ids, list) or not ids:
        raise ApiError(
            400,
            "invalid_payload",
            f'the body must be an object with a non-empty "{kind}" array of ids',
            {"field": kind},
        )
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not value:
            Position(f"{kind}[{index}]", {"index": index}).fail(
                "id", "invalid_id", f"must be a non-empty string, got {json_type(value)}"
            )
    return list(ids)
