"""The JSON bodies of the API's calls: built from the caller's arguments, checked and sized.

Every check happens here, before anything is sent, so a bad argument raises ``ValidationError``
in the caller whether the body goes out now (an awaited call) or later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._constants import MAX_RECORDS, MAX_REQUEST_BYTES
from ._errors import ValidationError
from ._models import Company, User
from ._transport import bytes_body, encode_json
from ._types import BodyFactory, RecordKind
from ._validation import bulk_record, check_metadata, company_reference, require_id

BulkRecord = User | Company | Mapping[str, Any]
"""A record for the bulk calls: a model object or a mapping with the API's field names."""


def sized_json(body: object, field: str, *, hint: str = "") -> BodyFactory:
    """``checked_json``'s bytes as a body factory replaying them on every attempt."""
    return bytes_body(checked_json(body, field, hint=hint), "application/json")


def checked_json(body: object, field: str, *, hint: str = "") -> bytes:
    """Encode a checked JSON body, refusing one the API would answer with 413.

    Args:
        body: The checked body.
        field: The field to name when it is too large.
        hint: What to do instead, appended to the message.

    Returns:
        The encoded body.

    Raises:
        ValidationError: The encoded body is over the API's 50 MB.
    """
    content = encode_json(body)
    if len(content) > MAX_REQUEST_BYTES:
        raise ValidationError(
            f"the request body is {len(content):,} bytes, over the API's "
            f"{MAX_REQUEST_BYTES:,}-byte limit{hint}",
            field=field,
        )
    return content


def _with_metadata(body: dict[str, Any], metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    props = check_metadata(metadata, primitives_only=False)
    if props:
        body["metadata"] = props
    return body


def identify_body(
    user_id: str,
    metadata: Mapping[str, Any] | None,
    company: str | Company | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The body of ``POST /v1/identify``.

    Args:
        user_id: The user's id.
        metadata: Profile properties.
        company: The user's company, as ``identify`` takes it.

    Returns:
        The checked body.
    """
    body = _with_metadata({"user_id": require_id(user_id, "user_id")}, metadata)
    if company is not None:
        body["company"] = company_reference(company)
    return body


def identify_company_body(company_id: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The body of ``POST /v1/companies/identify``.

    Args:
        company_id: The company's id.
        metadata: Profile properties.

    Returns:
        The checked body.
    """
    return _with_metadata({"company_id": require_id(company_id, "company_id")}, metadata)


def track_body(user_id: str, event_name: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The body of ``POST /v1/track``.

    Args:
        user_id: The user's id.
        event_name: The event's name.
        metadata: Event properties.

    Returns:
        The checked body.
    """
    body = {
        "user_id": require_id(user_id, "user_id"),
        "event_name": require_id(event_name, "event_name"),
    }
    return _with_metadata(body, metadata)


def bulk_json_body(key: str, records: Iterable[BulkRecord]) -> tuple[BodyFactory, int]:
    """The body of a JSON bulk call: ``{"users": [...]}`` or ``{"companies": [...]}``.

    Args:
        key: ``"users"`` or ``"companies"``.
        records: Up to 10,000 records.

    Returns:
        The body, encoded, and how many records it holds.

    Raises:
        ValidationError: A record is invalid (naming its position and field), there are none,
            more than 10,000, or the body exceeds 50 MB.
    """
    if isinstance(records, (str, bytes, Mapping, User, Company)):
        raise ValidationError(
            f"pass a list of records, not a single {type(records).__name__}", field=key
        )
    kind: RecordKind = "user" if key == "users" else "company"
    wire = []
    for position, record in enumerate(records):
        if position >= MAX_RECORDS:
            raise ValidationError(
                f"more than {MAX_RECORDS:,} records in one bulk call; use "
                f"import_{key}() to send any number in governed batches",
                field=key,
                position=position,
            )
        wire.append(bulk_record(record, kind, position=position))
    if not wire:
        raise ValidationError("at least one record is needed", field=key)
    return sized_json({key: wire}, key, hint=f"; use import_{key}() to split it"), len(wire)


def delete_body(key: str, ids: Iterable[str]) -> BodyFactory:
    """The body of ``DELETE /v1/users`` or ``/v1/companies``: ``{"users": [ids]}``.

    Args:
        key: ``"users"`` or ``"companies"``.
        ids: The ids to delete.

    Returns:
        The body, encoded.

    Raises:
        ValidationError: An id is not a non-empty string, or there are none.
    """
    if isinstance(ids, (str, bytes)):
        raise ValidationError(f"pass a list of ids, not a single {type(ids).__name__}")
    checked = [require_id(i, key, position=n) for n, i in enumerate(ids)]
    if not checked:
        raise ValidationError("at least one id is needed", field=key)
    return sized_json({key: checked}, key)
