"""Historical events for ``POST /v1/imports``: the ``Event`` model and the event schema's rules.

The schema (analytex-api.md, "Events bulk import"): every line is one event with an
``event_type``, its required fields, a ``source`` and an ``inserted_at`` timestamp. The SDK
fills ``source="backend-http-import"`` when none is given, always sends ``metadata`` on
identifies (``{}`` when none), sends ``inserted_at`` as ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``,
and refuses what the server would: unknown fields, a ``web-client`` event without its client
fields, metadata that is not primitives only, a naive ``datetime`` (ambiguous). A timestamp
*string* without an offset is read as UTC, as the server reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

import attrs

from ._errors import ValidationError
from ._validation import check_metadata, require_id

EventType = Literal["identify_user", "identify_company", "page_view", "track"]
"""The four kinds of event the import takes."""

SOURCES = frozenset(
    {
        "web-client",
        "backend-http",
        "backend-hubspot",
        "backend-salesforce",
        "backend-segment",
        "backend-http-import",
    }
)
DEFAULT_SOURCE = "backend-http-import"

CLIENT_TEXT_FIELDS = frozenset(
    {
        "hostname",
        "pathname",
        "url",
        "user_agent",
        "country_code",
        "operating_system",
        "browser",
        "browser_language",
        "device_type",
    }
)
CLIENT_NUMBER_FIELDS = frozenset({"screen_width", "screen_height"})
_COMMON = frozenset({"event_type", "source", "inserted_at"})
REQUIRED: Mapping[str, frozenset[str]] = {
    "identify_user": frozenset({"user_id"}),
    "identify_company": frozenset({"company_id"}),
    "page_view": frozenset({"user_id", "hostname", "pathname"}),
    "track": frozenset({"user_id", "event_name"}),
}
ALLOWED: Mapping[str, frozenset[str]] = {
    "identify_user": _COMMON
    | {"user_id", "metadata", "company_id"}
    | CLIENT_TEXT_FIELDS
    | CLIENT_NUMBER_FIELDS,
    "identify_company": _COMMON | {"company_id", "metadata"},
    "page_view": _COMMON | {"user_id", "company_id"} | CLIENT_TEXT_FIELDS | CLIENT_NUMBER_FIELDS,
    "track": _COMMON
    | {"user_id", "event_name", "metadata", "company_id"}
    | CLIENT_TEXT_FIELDS
    | CLIENT_NUMBER_FIELDS,
}
EVENT_FIELDS = frozenset().union(*ALLOWED.values())
"""Every field an event may carry (CSV columns with these names are fields, not metadata)."""


def timestamp(value: object, field: str = "inserted_at", position: int | None = None) -> str:
    """An event time as the SDK sends it: ISO 8601 in UTC, ``+00:00``.

    Args:
        value: A timezone-aware ``datetime``, or an ISO 8601 string (``T`` or a space between
            date and time; no offset means UTC).
        field: The field, for errors.
        position: The record's position, for errors.

    Returns:
        ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``.

    Raises:
        ValidationError: A naive ``datetime``, a string that is not ISO 8601, or another type.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                "a datetime without a timezone is ambiguous: pass an aware datetime "
                "(e.g. datetime.now(timezone.utc)) or an ISO 8601 string",
                field=field,
                position=position,
            )
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"{value!r:.60} is not an ISO 8601 timestamp (e.g. 2024-07-28T08:55:35+00:00)",
                field=field,
                position=position,
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc).isoformat()
    raise ValidationError(
        f"must be an aware datetime or an ISO 8601 string, got {type(value).__name__}",
        field=field,
        position=position,
    )


@attrs.frozen
class Event:
    """One historical event for ``import_events``.

    Build events with the four constructors; ``at`` is a timezone-aware ``datetime`` or an
    ISO 8601 string, ``source`` defaults to ``"backend-http-import"``, and ``**fields`` takes
    the schema's optional fields (``company_id``, ``url``, ``user_agent``, ``screen_width``...).

    Attributes:
        event_type: ``"identify_user"``, ``"identify_company"``, ``"page_view"`` or ``"track"``.
        fields: Every other field, as given.

    Examples:
        >>> from datetime import datetime, timezone
        >>> event = Event.track("u1", "Signed Up", "2024-07-28 08:55:35", metadata={"plan": "pro"})
        >>> event_record(event)["inserted_at"]
        '2024-07-28T08:55:35+00:00'
    """

    event_type: str
    fields: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def identify_user(
        cls, user_id: str, metadata: Mapping[str, Any] | None, at: datetime | str, **fields: Any
    ) -> Event:
        """An ``identify_user`` event: the user's profile as it was at ``at``.

        Args:
            user_id: The user's id.
            metadata: Profile properties (primitives only; ``None`` sends ``{}``).
            at: When it happened.
            **fields: Optional fields (``company_id``, client fields, ``source``).

        Returns:
            The event.
        """
        return cls._make("identify_user", fields, user_id=user_id, metadata=metadata, at=at)

    @classmethod
    def identify_company(
        cls, company_id: str, metadata: Mapping[str, Any] | None, at: datetime | str, **fields: Any
    ) -> Event:
        """An ``identify_company`` event.

        Args:
            company_id: The company's id.
            metadata: Company properties (primitives only; ``None`` sends ``{}``).
            at: When it happened.
            **fields: ``source``.

        Returns:
            The event.
        """
        return cls._make(
            "identify_company", fields, company_id=company_id, metadata=metadata, at=at
        )

    @classmethod
    def page_view(
        cls, user_id: str, hostname: str, pathname: str, at: datetime | str, **fields: Any
    ) -> Event:
        """A ``page_view`` event.

        Args:
            user_id: The user's id.
            hostname: The page's host.
            pathname: The page's path.
            at: When it happened.
            **fields: Optional fields (``company_id``, ``url``, client fields, ``source``).

        Returns:
            The event.
        """
        return cls._make(
            "page_view", fields, user_id=user_id, hostname=hostname, pathname=pathname, at=at
        )

    @classmethod
    def track(
        cls,
        user_id: str,
        event_name: str,
        at: datetime | str,
        metadata: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Event:
        """A ``track`` event.

        Args:
            user_id: The user's id.
            event_name: The event's name.
            at: When it happened.
            metadata: Event properties (primitives only).
            **fields: Optional fields (``company_id``, client fields, ``source``).

        Returns:
            The event.
        """
        extra = {"metadata": metadata} if metadata is not None else {}
        return cls._make("track", fields, user_id=user_id, event_name=event_name, at=at, **extra)

    @classmethod
    def _make(cls, event_type: str, optional: Mapping[str, Any], **given: Any) -> Event:
        at = given.pop("at")
        fields = {**optional, **given, "inserted_at": timestamp(at)}
        event = cls(event_type, fields)
        event_record(event)  # refuse a bad event where it is made, not at send time
        return event


def a_event(event_type: str) -> str:
    """An event type with its article, for messages: ``an identify_user event``."""
    article = "an" if event_type[:1] in "aeiou" else "a"
    return f"{article} {event_type} event"


def _text(fields: Mapping[str, Any], name: str, position: int | None) -> str:
    value = fields[name]
    if not isinstance(value, str) or not value.strip():
        shown = "empty" if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValidationError(
            f"must be a non-empty string, got {shown}", field=name, position=position
        )
    return value


def _fields_of(record: object, position: int | None) -> tuple[str, Mapping[str, Any]]:
    if isinstance(record, Event):
        fields: Mapping[str, Any] = {"event_type": record.event_type, **record.fields}
    elif isinstance(record, Mapping):
        fields = record
    else:
        raise ValidationError(
            f"an event must be an Event or a mapping, got {type(record).__name__}",
            position=position,
        )
    event_type = fields.get("event_type")
    if not isinstance(event_type, str) or event_type not in REQUIRED:
        raise ValidationError(
            f"must be one of {', '.join(sorted(REQUIRED))}, got {event_type!r:.40}",
            field="event_type",
            position=position,
        )
    unknown = sorted(str(k) for k in fields if k not in ALLOWED[event_type])
    if unknown:
        takes_none = "" if "metadata" in ALLOWED[event_type] else ", which takes no metadata"
        raise ValidationError(
            f"unknown field(s) {', '.join(map(repr, unknown))} for {a_event(event_type)}"
            f"{takes_none}",
            field=unknown[0],
            position=position,
        )
    # A None counts as missing: a converter's row.get("name") gives None for an absent value,
    # and a None is left off the line, where the server would refuse the whole file for it.
    needed = REQUIRED[event_type] | {"inserted_at"}
    missing = sorted(name for name in needed if fields.get(name) is None)
    if missing:
        given_none = [name for name in missing if name in fields]
        detail = f" ({', '.join(map(repr, given_none))} given as None)" if given_none else ""
        raise ValidationError(
            f"{a_event(event_type)} needs {', '.join(map(repr, missing))}{detail}",
            field=missing[0],
            position=position,
        )
    return event_type, fields


def _wire_field(name: str, value: object, position: int | None) -> object:
    if name in CLIENT_NUMBER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(
                f"must be a whole number of pixels, got {value!r:.40}",
                field=name,
                position=position,
            )
        return value
    if name in ("user_id", "company_id", "event_name"):
        return require_id(value, name, position=position)
    return _text({name: value}, name, position)


def _source(wire: Mapping[str, Any], source: object, position: int | None) -> str:
    source = DEFAULT_SOURCE if source is None else source
    if not isinstance(source, str) or source not in SOURCES:
        raise ValidationError(
            f"must be one of {', '.join(sorted(SOURCES))}, got {source!r:.40}",
            field="source",
            position=position,
        )
    if source == "web-client":
        # A url stands for hostname and pathname (the server derives them), not the agent.
        needed = ("user_agent",) if "url" in wire else ("hostname", "pathname", "user_agent")
        lacking = [n for n in needed if n not in wire]
        if lacking:
            raise ValidationError(
                f"a web-client event needs user_agent, and hostname and pathname or a url; "
                f"missing {', '.join(map(repr, lacking))}",
                field=lacking[0],
                position=position,
            )
    return source


def event_record(record: object, *, position: int | None = None) -> dict[str, Any]:
    """Check one event and return its wire form (one NDJSON line's object).

    Args:
        record: An ``Event`` or a mapping with the schema's field names.
        position: The record's position, for errors.

    Returns:
        The event with ``source`` filled in, ``inserted_at`` in UTC, ``metadata`` checked
        (and ``{}`` on identifies that had none).

    Raises:
        ValidationError: The event breaks the schema; the message names the field.
    """
    event_type, fields = _fields_of(record, position)
    wire: dict[str, Any] = {"event_type": event_type}
    for name, value in fields.items():
        if name not in _SPECIAL and value is not None:
            wire[name] = _wire_field(name, value, position)
    wire["source"] = _source(wire, fields.get("source"), position)
    wire["inserted_at"] = timestamp(fields["inserted_at"], position=position)
    if "metadata" in ALLOWED[event_type]:
        metadata = check_metadata(fields.get("metadata"), primitives_only=True, position=position)
        if metadata or event_type in ("identify_user", "identify_company"):
            wire["metadata"] = metadata
    return wire


_SPECIAL = frozenset({"event_type", "metadata", "inserted_at", "source"})
