"""Value classes: what callers pass in (``User``, ``Company``) and what the API hands back.

All are frozen attrs classes. Construction checks what is cheap to check (ids are non-empty
strings, metadata is a mapping); the rules shared with plain-mapping records live in
``_validation``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

import attrs

from ._errors import ValidationError

JSONPrimitive = str | int | float | bool | None
"""The metadata values the bulk API accepts."""


def _non_empty_id(field: str) -> Any:
    def check(_instance: object, _attribute: object, value: object) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(
                f"must be a non-empty string, got {value!r:.60}",
                field=field,
            )

    return check


def _optional_id(field: str) -> Any:
    check = _non_empty_id(field)

    def optional(instance: object, attribute: object, value: object) -> None:
        if value is not None:
            check(instance, attribute, value)

    return optional


def _mapping(_instance: object, _attribute: object, value: object) -> None:
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"must be a mapping, got {type(value).__name__}",
            field="metadata",
        )


def _as_dict(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen
class User:
    """A user profile update, as sent to identify and bulk identify.

    Attributes:
        user_id: The user's unique id in your product (a non-empty string).
        company_id: The id of the company the user belongs to, if any.
        metadata: The profile's properties. The bulk API takes primitives only
            (str, int, finite float, bool, None).

    Examples:
        >>> User("user_001", company_id="company_001", metadata={"plan": "pro"})
        User(user_id='user_001', company_id='company_001', metadata={'plan': 'pro'})
    """

    user_id: str = attrs.field(validator=_non_empty_id("user_id"))
    company_id: str | None = attrs.field(default=None, validator=_optional_id("company_id"))
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict, validator=_mapping)


@attrs.frozen
class Company:
    """A company profile update, as sent to company identify and bulk company identify.

    Attributes:
        company_id: The company's unique id in your product (a non-empty string).
        metadata: The profile's properties. The bulk API takes primitives only.

    Examples:
        >>> Company("company_001", metadata={"name": "Acme"})
        Company(company_id='company_001', metadata={'name': 'Acme'})
    """

    company_id: str = attrs.field(validator=_non_empty_id("company_id"))
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict, validator=_mapping)


def job_id_of(data: Mapping[str, Any]) -> str | None:
    """A job's (or an export's) id in the server's JSON object, as text; ``None`` if unusable.

    Args:
        data: The decoded object (``job_id``, or ``id``; a number is read as its text).

    Returns:
        The id, or ``None``.
    """
    job_id = data.get("job_id", data.get("id"))
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        job_id = str(job_id)
    return job_id if isinstance(job_id, str) and job_id else None


class JobStatus(str, enum.Enum):
    """The state of a background (bulk) job.

    ``COMPLETED`` and ``FAILED`` are terminal. A status the SDK does not know yet parses as
    ``UNKNOWN`` (the server's own word stays in ``Job.raw["status"]``), so a new server-side
    state never crashes a caller. ``str()`` of a status is the API's word, as printed and logged.

    Examples:
        >>> str(JobStatus.COMPLETED), JobStatus.parse("Completed") is JobStatus.COMPLETED
        ('completed', True)
        >>> JobStatus.parse("archived")
        <JobStatus.UNKNOWN: 'unknown'>
    """

    QUEUED = "queued"
    VALIDATING = "validating"
    PROCESSING = "processing"
    PENDING_REFRESH = "pending_refresh"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> JobStatus:
        """Read a status from the server's answer, liberally.

        Args:
            value: The ``status`` field as received.

        Returns:
            The matching member, or ``UNKNOWN``.
        """
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN

    def __str__(self) -> str:
        # The API's own word ("completed"), as people print and log it.
        return self.value

    @property
    def is_terminal(self) -> bool:
        """Whether the job has stopped for good (completed or failed)."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


def _parse_time(value: object) -> datetime | None:
    """Parse an ISO-8601 string or a Unix timestamp; anything else is ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _parse_count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@attrs.frozen
class Job:
    """A background job created by a bulk call.

    Attributes:
        job_id: The server's id for the job (opaque; may contain ``:`` or ``/``).
        status: The job's state.
        type: The kind of job, when the server says (e.g. ``"users"``).
        total_rows: How many rows the job holds, when known.
        completed_rows: How many rows the server has processed so far, when known.
        submitted_at: When the job was submitted, when known.
        raw: The whole object as the server sent it, unknown fields included.
    """

    job_id: str
    status: JobStatus
    type: str | None = None
    total_rows: int | None = None
    completed_rows: int | None = None
    submitted_at: datetime | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def is_terminal(self) -> bool:
        """Whether the job has stopped for good (``completed`` or ``failed``)."""
        return self.status.is_terminal

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Job:
        """Build a job from the server's JSON object, keeping every field it sent.

        Only ``job_id`` is required; every other field may be missing, null or of a surprising
        type and is then ``None``.

        Args:
            data: The decoded JSON object.

        Returns:
            The job.

        Raises:
            ValueError: ``data`` has no usable ``job_id``.
        """
        job_id = job_id_of(data)
        if job_id is None:
            raise ValueError(f"job object without a job_id: {dict(data)!r:.200}")
        kind = data.get("type")
        return cls(
            job_id=job_id,
            status=JobStatus.parse(data.get("status")),
            type=kind if isinstance(kind, str) else None,
            total_rows=_parse_count(data.get("total_rows")),
            completed_rows=_parse_count(data.get("completed_rows")),
            submitted_at=_parse_time(data.get("submitted_at")),
            raw=dict(data),
        )


@attrs.frozen
class Rejection:
    """A record that was not sent, and why.

    Attributes:
        position: The record's zero-based position in the source.
        record: The record as it was read (or the raw text of a file line that did not parse).
        reason: What is wrong with it, naming the field.
        line: The one-based line number, when the source was a file.
    """

    position: int
    record: Any
    reason: str
    line: int | None = None


WaitingFor = Literal["rate", "job", "retry"]
"""What an import is waiting for, in ``ImportProgress.waiting_for``."""


@attrs.frozen
class ImportProgress:
    """A snapshot of a running import, handed to ``on_progress``.

    Attributes:
        rows_read: Records read from the source so far.
        rows_sent: Records in batches the server accepted.
        rows_rejected: Records rejected so far (all of them).
        rows_completed: Records the server reports as processed.
        batches_sent: Batches the server accepted.
        waiting_for: ``None`` while working, else ``"rate"``, ``"job"`` or ``"retry"``.
        rows_skipped: Records skipped because the journal says an earlier run sent them.
        sending_done: Every batch is sent (the source is read to its end): what is left is
            the server's work, so no rate wait is ahead.
    """

    rows_read: int = 0
    rows_sent: int = 0
    rows_rejected: int = 0
    rows_completed: int = 0
    batches_sent: int = 0
    waiting_for: WaitingFor | None = None
    rows_skipped: int = 0
    sending_done: bool = False


@attrs.frozen
class ImportResult:
    """What an import did.

    Attributes:
        rows_read: Records read from the source.
        rows_sent: Records in batches the server accepted.
        rejected: The first 1,000 records that were not sent, with their reasons (a source of
            mostly bad rows cannot grow memory; ``on_invalid`` as a callable sees every one).
        jobs: The jobs of the accepted batches, in their last known state.
        elapsed: Wall time of the import in seconds.
        rows_skipped: Records skipped because the journal says an earlier run sent them.
        rows_rejected: Every record that was not sent, counted (``len(rejected)`` when not
            given).
    """

    rows_read: int = 0
    rows_sent: int = 0
    rejected: list[Rejection] = attrs.field(factory=list)
    jobs: list[Job] = attrs.field(factory=list)
    elapsed: float = 0.0
    rows_skipped: int = 0
    rows_rejected: int = attrs.field(
        default=attrs.Factory(lambda self: len(self.rejected), takes_self=True)
    )

    @property
    def ok(self) -> bool:
        """True when no record was rejected and no job failed."""
        return self.rows_rejected == 0 and all(
            job.status is not JobStatus.FAILED for job in self.jobs
        )
