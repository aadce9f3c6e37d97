"""What a valid record is: the one place the SDK's input rules live.

Every check raises ``ValidationError`` naming the field and, when the caller passes it, the
record's position, so that a bad row in a million is found at once. Each function returns the
record in its wire form (a plain ``dict`` ready for ``json.dumps``), so callers never encode
something that was not checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from ._errors import ValidationError
from ._models import Company, User
from ._types import RecordKind

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 32
"""How deeply real-time metadata may nest; deeper is almost certainly a reference cycle."""


_USER_FIELDS = frozenset({"user_id", "company_id", "metadata"})
_COMPANY_FIELDS = frozenset({"company_id", "metadata"})


def require_id(value: object, field: str, *, position: int | None = None) -> str:
    """Check that an id is a non-empty string.

    Args:
        value: The id as given.
        field: Its field name, for the error.
        position: The record's position, for the error.

    Returns:
        The id.

    Raises:
        ValidationError: It is not a string, or is empty or only white space.
    """
    if not isinstance(value, str):
        raise ValidationError(
            f"must be a string, got {type(value).__name__}", field=field, position=position
        )
    if not value.strip():
        raise ValidationError("must not be empty", field=field, position=position)
    _check_text(value, field, position)
    return value


def _check_text(value: str, field: str, position: int | None) -> None:
    # A lone surrogate cannot be encoded as UTF-8: catch it here, where we know the field,
    # rather than as an encoding crash in the middle of a batch.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                "contains a lone surrogate, which UTF-8 cannot encode",
                field=field,
                position=position,
            ) from None


def _check_number(value: int | float, field: str, position: int | None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(
            f"{value!r} is not a JSON number (only finite floats are allowed)",
            field=field,
            position=position,
        )
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not (INT64_MIN <= value <= INT64_MAX)
    ):
        raise ValidationError(
            "integer does not fit in 64 bits; send it as a string",
            field=field,
            position=position,
        )


def _wire_value(
    value: object, field: str, position: int | None, *, primitives_only: bool, depth: int
) -> Any:
    """Check one metadata value and return it as it is sent (converted where the API says)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, (bool, str, int, float)):
        if isinstance(value, str):
            _check_text(value, field, position)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_number(value, field, position)
        return value
    converted = _as_text(value)
    if converted is not None:
        return converted
    if primitives_only:
        raise ValidationError(
            f"bulk metadata takes primitives only (str, int, float, bool, None), "
            f"got {type(value).__name__}",
            field=field,
            position=position,
        )
    if depth >= MAX_DEPTH:
        raise ValidationError(
            f"nested more than {MAX_DEPTH} levels deep", field=field, position=position
        )
    if isinstance(value, Mapping):
        return _wire_entries(value, field, position, primitives_only=False, depth=depth + 1)
    if isinstance(value, (list, tuple)):
        return [
            _wire_value(item, f"{field}[{n}]", position, primitives_only=False, depth=depth + 1)
            for n, item in enumerate(value)
        ]
    raise ValidationError(
        f"{type(value).__name__} is not JSON-serialisable (send str, int, float, bool, None, "
        "datetime, date, Decimal or an Enum)",
        field=field,
        position=position,
    )


def _as_text(value: object) -> str | None:
    """Dates, times of day with a date, and decimals as the API's strings; else ``None``.

    A ``datetime`` without a zone is taken as UTC (written ``+00:00``), as everywhere in the
    SDK: the API documents ISO 8601 strings, and a string without an offset would be read as
    UTC on the server anyway.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return None


def _wire_entries(
    value: Mapping[Any, Any],
    field: str,
    position: int | None,
    *,
    primitives_only: bool,
    depth: int,
) -> dict[str, Any]:
    wire: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValidationError(
                f"keys must be strings, got {type(key).__name__} {key!r:.40}",
                field=field,
                position=position,
            )
        _check_text(key, field, position)
        wire[key] = _wire_value(
            item, f"{field}.{key}", position, primitives_only=primitives_only, depth=depth
        )
    return wire


def check_metadata(
    value: object,
    *,
    primitives_only: bool,
    position: int | None = None,
    field: str = "metadata",
) -> dict[str, Any]:
    """Check a metadata mapping.

    Args:
        value: The metadata as given (``None`` means none).
        primitives_only: Whether only primitives are allowed (bulk calls), or nested JSON
            objects and arrays too (real-time calls).
        position: The record's position, for errors.
        field: The field name, for errors.

    Returns:
        The metadata as a new ``dict`` in its wire form: ``datetime`` and ``date`` values as
        ISO 8601 strings, ``Decimal`` as its string, an ``Enum`` as its value.

    Raises:
        ValidationError: It is not a mapping, has a non-string key, or holds a value the API
            does not take.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"must be a mapping, got {type(value).__name__}", field=field, position=position
        )
    if primitives_only and _plain_primitives(value):
        return dict(value)
    return _wire_entries(value, field, position, primitives_only=primitives_only, depth=1)


def _plain_primitives(value: Mapping[Any, Any]) -> bool:
    """The bulk fast path: ASCII string keys and exact primitive values, nothing to report.

    ``False`` means "look closer": the full check then names the problem, or accepts what this
    quick test leaves to it (non-ASCII text, subclasses of str or int).
    """
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def _fields_of(record: object, kind: RecordKind, position: int | None) -> Mapping[str, Any]:
    if isinstance(record, User) and kind == "user":
        return {
            "user_id": record.user_id,
            "company_id": record.company_id,
            "metadata": record.metadata,
        }
    if isinstance(record, Company) and kind == "company":
        return {"company_id": record.company_id, "metadata": record.metadata}
    if isinstance(record, Mapping):
        allowed = _USER_FIELDS if kind == "user" else _COMPANY_FIELDS
        if allowed.issuperset(record):
            return record
        unknown = sorted(str(key) for key in record if key not in allowed)
        if unknown:
            raise ValidationError(
                f"unknown field(s) {', '.join(map(repr, unknown))}: a {kind} record has "
                f"{', '.join(sorted(allowed))} (put profile properties under 'metadata')",
                field=unknown[0],
                position=position,
            )
        return record
    expected = "User" if kind == "user" else "Company"
    raise ValidationError(
        f"a {kind} record must be a {expected} or a mapping, got {type(record).__name__}",
        position=position,
    )


def bulk_record(record: object, kind: RecordKind, *, position: int | None = None) -> dict[str, Any]:
    """Check one bulk record and return its wire form.

    Args:
        record: A ``User`` / ``Company`` or a mapping with the API's field names.
        kind: ``"user"`` or ``"company"``.
        position: The record's position, for errors.

    Returns:
        ``{"user_id", "company_id"?, "metadata"?}`` or ``{"company_id", "metadata"?}``;
        empty and ``None`` optional fields are left out.

    Raises:
        ValidationError: The record breaks a rule; the message names the field.
    """
    if type(record) is dict:
        plain = _plain_wire(record, kind)
        if plain is not None:
            return plain
    fields = _fields_of(record, kind, position)
    wire: dict[str, Any] = {}
    if kind == "user":
        wire["user_id"] = require_id(fields.get("user_id"), "user_id", position=position)
        company_id = fields.get("company_id")
        if company_id is not None:
            wire["company_id"] = require_id(company_id, "company_id", position=position)
    else:
        wire["company_id"] = require_id(fields.get("company_id"), "company_id", position=position)
    metadata = check_metadata(fields.get("metadata"), primitives_only=True, position=position)
    if metadata:
        wire["metadata"] = metadata
    return wire


def company_reference(value: object) -> dict[str, Any]:
    """Check the ``company`` argument of ``identify`` and return its wire form.

    Args:
        value: A company id, a ``Company``, or a mapping with an ``id`` (or ``company_id``,
            sent as ``id``) and other properties.

    Returns:
        ``{"id": ..., **properties}``.

    Raises:
        ValidationError: There is no usable ``id``, or a property is not JSON.
    """
    if isinstance(value, str):
        return {"id": require_id(value, "company.id")}
    if isinstance(value, Company):
        props = check_metadata(value.metadata, primitives_only=False, field="company")
        props.pop("id", None)
        return {"id": value.company_id, **props}
    if isinstance(value, Mapping):
        if "id" not in value and "company_id" in value:
            # One public schema names it company_id; the API takes id (analytex-api.md).
            value = {"id": value["company_id"]} | {
                k: v for k, v in value.items() if k != "company_id"
            }
        if "id" not in value:
            raise ValidationError("a company object must have an 'id'", field="company.id")
        props = check_metadata(value, primitives_only=False, field="company")
        require_id(props["id"], "company.id")
        return props
    raise ValidationError(
        f"must be a company id, a Company or a mapping with an 'id', got {type(value).__name__}",
        field="company",
    )


def _plain_id(value: object) -> bool:
    return type(value) is str and value.isascii() and not value.isspace() and value != ""


def _plain_wire(record: dict[str, Any], kind: RecordKind) -> dict[str, Any] | None:
    """The fast path of ``bulk_record`` for a plain dict; ``None`` means "check it fully"."""
    if not (_USER_FIELDS if kind == "user" else _COMPANY_FIELDS).issuperset(record):
        return None
    wire: dict[str, Any] = {}
    if kind == "user":
        user_id = record.get("user_id")
        if not _plain_id(user_id):
            return None
        wire["user_id"] = user_id
    company_id = record.get("company_id")
    if company_id is not None or kind == "company":
        if not _plain_id(company_id):
            return None
        wire["company_id"] = company_id
    metadata = record.get("metadata")
    if metadata is not None:
        if type(metadata) is not dict or not _plain_primitives(metadata):
            return None
        if metadata:
            wire["metadata"] = dict(metadata)
    return wire
