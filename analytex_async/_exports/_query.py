"""What a caller asks an export for: the time range, the filters, the format, checked up front.

Everything here runs before any request: a bad range, an unknown format, a filter that is not a
list of strings or a format whose extra is missing is a ``ValidationError`` (or, for the extra,
an ``ImportError`` naming it) and nothing is sent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal

import attrs

from .._errors import ValidationError
from .._models import _parse_time

ExportFormat = Literal["ndjson", "csv", "parquet", "avro"]
FORMATS: tuple[str, ...] = ("ndjson", "csv", "parquet", "avro")
"""The export formats of the appex host (its OpenAPI enum)."""

EXTRAS: Mapping[str, tuple[str, str]] = {
    "parquet": ("pyarrow", "parquet"),
    "avro": ("fastavro", "avro"),
}
"""The module each format's reader needs, and the extra that brings it."""

TimeBound = datetime | date | str
"""A range bound: an aware ``datetime``, a ``date`` (midnight UTC) or an ISO 8601 string."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Fail at once, naming the extra, when an optional module is not installed.

    Args:
        module: The module to find (``"pyarrow"``).
        extra: The extra that installs it (``"parquet"``).
        what: What needs it, for the message.

    Raises:
        ImportError: The module is not installed.
    """
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f'{what} needs {module}, which is not installed: pip install "analytex-async[{extra}]"',
            name=module,
        )


def check_format(value: object) -> str:
    """Check an export format and that its reader's extra is installed.

    Args:
        value: The format asked for.

    Returns:
        The format.

    Raises:
        ValidationError: It is not one of the four formats (field ``format``).
        ImportError: Its extra is missing (``parquet``: pyarrow, ``avro``: fastavro).
    """
    if not isinstance(value, str) or value not in FORMATS:
        known = ", ".join(repr(f) for f in FORMATS)
        raise ValidationError(f"must be one of {known}, got {value!r:.60}", field="format")
    if value in EXTRAS:
        module, extra = EXTRAS[value]
        require_extra(module, extra, f"the {value} format")
    return value


def parse_bound(value: object, field: str) -> datetime:
    """Read a range bound as an aware UTC ``datetime``.

    Args:
        value: An aware ``datetime``, a ``date`` (midnight UTC), or an ISO 8601 string (no
            offset means UTC).
        field: ``"start"`` or ``"end"``, for the message.

    Returns:
        The moment, in UTC.

    Raises:
        ValidationError: A naive ``datetime``, an unreadable string, or another type.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                "must be a timezone-aware datetime (e.g. datetime(..., tzinfo=timezone.utc))",
                field=field,
            )
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc)
    if isinstance(value, str):
        parsed = _parse_time(value)  # no offset: UTC
        if parsed is None:
            raise ValidationError(
                f"is not an ISO 8601 date or date-time: {value!r:.60}", field=field
            )
        return parsed.astimezone(timezone.utc)
    raise ValidationError(
        f"must be a datetime, a date or an ISO 8601 string, got {type(value).__name__}",
        field=field,
    )


def wire_time(moment: datetime) -> str:
    """A moment as the appex host takes it: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC).

    Sub-second parts are dropped from ``start`` by flooring (the range starts no later than
    asked) and from ``end`` by the caller rounding up (see ``ExportQuery.body``).
    """
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strings(value: object, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError("must be a list of strings (not one string)", field=field)
    items = tuple(value)
    for position, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ValidationError(
                f"must hold non-empty strings, got {item!r:.60} at position {position}",
                field=field,
            )
    return items or None


@attrs.frozen
class ExportQuery:
    """A checked export request: what ``start_export`` sends.

    Attributes:
        start: The range's start (inclusive), UTC.
        end: The range's end (exclusive), UTC.
        format: The file format.
        event_types: Only these event types, or ``None`` for all.
        user_ids: Only these users.
        company_ids: Only these companies.
        segment_id: Only users of this segment.
        notify: E-mail addresses to send the links to.
    """

    start: datetime
    end: datetime
    format: str = "ndjson"
    event_types: tuple[str, ...] | None = None
    user_ids: tuple[str, ...] | None = None
    company_ids: tuple[str, ...] | None = None
    segment_id: str | None = None
    notify: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        start: object,
        end: object,
        format: object = "ndjson",
        event_types: object = None,
        user_ids: object = None,
        company_ids: object = None,
        segment_id: object = None,
        notify: object = None,
    ) -> ExportQuery:
        """Check a caller's arguments.

        Raises:
            ValidationError: Any of them is wrong (the message names the field).
            ImportError: The format's extra is missing.
        """
        lower = parse_bound(start, "start")
        upper = parse_bound(end, "end")
        if not lower < upper:
            raise ValidationError(
                f"must be after start ({wire_time(lower)}), got {wire_time(upper)}", field="end"
            )
        if segment_id is not None and (not isinstance(segment_id, str) or not segment_id):
            raise ValidationError(
                f"must be a non-empty string, got {segment_id!r:.60}", field="segment_id"
            )
        if isinstance(notify, str):
            notify = [notify]
        return cls(
            start=lower,
            end=upper,
            format=check_format(format),
            event_types=_strings(event_types, "event_types"),
            user_ids=_strings(user_ids, "user_ids"),
            company_ids=_strings(company_ids, "company_ids"),
            segment_id=segment_id,
            notify=_strings(notify, "notify"),
        )

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/analytics/exports``: empty filters left out.

        The wire has whole seconds: an ``end`` with a fraction of a second is rounded up, so the
        range never loses an event the caller asked for.
        """
        end = self.end
        if end.microsecond:
            end = end.replace(microsecond=0) + timedelta(seconds=1)
        body: dict[str, Any] = {
            "from": wire_time(self.start),
            "to": wire_time(end),
            "format": self.format,
        }
        for key, value in (
            ("event_type", self.event_types),
            ("user_id", self.user_ids),
            ("company_id", self.company_ids),
            ("emails", self.notify),
        ):
            if value:
                body[key] = list(value)
        if self.segment_id is not None:
            body["segment_id"] = self.segment_id
        return body
