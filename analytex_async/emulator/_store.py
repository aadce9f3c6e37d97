"""The inspectable in-memory store: accounts, their users, companies, events and jobs."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Literal

import attrs

from ._events import EventRow
from ._faults import Fault
from ._rules import CompanyRecord, Record, UserRecord

__all__ = [
    "Account",
    "BulkJob",
    "IdentifiedUser",
    "ImportedEvent",
    "JobKind",
    "JobRow",
    "JobStatus",
    "ReceivedRequest",
    "StoredCompany",
    "StoredUser",
    "TrackedEvent",
]

JobStatus = Literal["queued", "processing", "completed", "failed"]
JobKind = Literal["users", "companies", "events"]
JobRow = Record | EventRow

# A row finishes at an exact multiple of 60 / rows_per_minute; float arithmetic may land a
# hair below it, which would leave a job "processing" with one row to go at its end time.
_EPSILON = 1e-9


@attrs.define
class StoredUser:
    """A user as the account knows it: metadata merged over every identify and bulk row.

    Attributes:
        user_id: The user's id.
        company_id: The company last associated, if any.
        metadata: Merged metadata (later values overwrite earlier ones, key by key).
    """

    user_id: str
    company_id: str | None = None
    metadata: dict[str, object] = attrs.Factory(dict)


@attrs.define
class StoredCompany:
    """A company as the account knows it.

    Attributes:
        company_id: The company's id.
        metadata: Merged metadata.
    """

    company_id: str
    metadata: dict[str, object] = attrs.Factory(dict)


@attrs.frozen
class TrackedEvent:
    """One accepted ``POST /v1/track``.

    Attributes:
        user_id: Who did it.
        event_name: What they did.
        metadata: The event's metadata.
        time: The emulator clock's reading when it was received.
    """

    user_id: str
    event_name: str
    metadata: dict[str, object]
    time: float


@attrs.frozen
class IdentifiedUser:
    """One identify of a user, real-time or a bulk identify row: an ``identify_user`` event.

    Exports show each as an event (imports of ``identify_user`` events are in
    ``imported_events`` instead).

    Attributes:
        user_id: The user.
        company_id: The company named with it, if any.
        metadata: The metadata sent.
        time: The emulator clock's reading when it was received (or its row processed).
    """

    user_id: str
    company_id: str | None
    metadata: dict[str, object]
    time: float


@attrs.frozen
class ImportedEvent:
    """One event of an import job (``POST /v1/imports``), stored as its row was processed.

    ``identify_user`` and ``identify_company`` events also update the account's users and
    companies, as bulk identify rows do; every event, whatever its type, is kept here.

    Attributes:
        event_type: ``"identify_user"``, ``"identify_company"``, ``"page_view"`` or ``"track"``.
        source: One of the six documented sources, e.g. ``"backend-http-import"``.
        inserted_at: When the event happened, as an aware UTC ``datetime``.
        user_id: The user (``None`` on ``identify_company``).
        company_id: The company, if the event names one.
        event_name: The tracked event's name (``track`` only).
        metadata: The event's metadata (primitives only; ``{}`` when none).
        fields: The client fields it carries (``hostname``, ``pathname``, ``url``,
            ``user_agent``, ``screen_width``, ...); ``hostname`` and ``pathname`` are derived
            from ``url`` when only the URL was given.
        job_id: The import job it came with.
        time: The emulator clock's reading when its row was processed (observed).
    """

    event_type: str
    source: str
    inserted_at: dt.datetime
    user_id: str | None
    company_id: str | None
    event_name: str | None
    metadata: dict[str, object]
    fields: dict[str, object]
    job_id: str
    time: float

    def to_json(self, wall: Callable[[float], str]) -> dict[str, object]:
        """The event as the inspection route ``/_emulator/events`` shows it."""
        body: dict[str, object] = {
            "event_type": self.event_type,
            "source": self.source,
            "inserted_at": self.inserted_at.isoformat(),
        }
        for name, value in (
            ("user_id", self.user_id),
            ("company_id", self.company_id),
            ("event_name", self.event_name),
        ):
            if value is not None:
                body[name] = value
        body["metadata"] = self.metadata
        body.update(self.fields)
        body["job_id"] = self.job_id
        body["time"] = wall(self.time)
        return body


@attrs.frozen
class ReceivedRequest:
    """One request the emulator received, whatever its outcome.

    Attributes:
        method: HTTP method.
        path: The path as sent (still percent-encoded), without the query string.
        time: The emulator clock's reading when the request arrived.
        status: The status answered, or ``None`` when the response was not completed
            (a dropped connection).
        records: Records in the body (1 for identify / track, rows for a bulk submit, ids for a
            delete), ``None`` when the body was rejected before they could be counted.
        body_size: Bytes of body received; for a body refused on its ``Content-Length``
            alone, the declared length.
        account: The account's label (never the API key), ``None`` if unauthenticated.
        headers: Request headers, lower-case names, without ``authorization``.
        fault: The injected fault that applied to it, if any.
        request_id: The ``x-request-id`` the emulator answered (or would have answered,
            for a dropped connection) with.
    """

    method: str
    path: str
    time: float
    status: int | None
    records: int | None
    body_size: int
    account: str | None
    headers: Mapping[str, str] = attrs.field(repr=False)
    fault: Fault | None = attrs.field(default=None, repr=False)
    request_id: str | None = None


@attrs.define
class BulkJob:
    """A bulk identify or events import job; its state follows the clock, advanced when observed.

    It is ``queued`` until ``start_at``, then ``processing`` at ``rows_per_minute``, then
    ``completed`` (or ``failed`` once ``fail_after_rows`` rows are done, when that is set).
    Rows are applied to the account's store as they complete.

    Attributes:
        job_id: The job's id.
        kind: ``"users"`` or ``"companies"`` for a bulk identify, ``"events"`` for an import.
        account: The label of the account that submitted it.
        total_rows: Rows in the submitted batch.
        submitted_at: Clock reading at submission.
        start_at: Clock reading when processing starts.
        rows_per_minute: Processing rate for this job.
        file_size: Bytes of the uploaded file (or of the JSON body).
        filename: The uploaded file's name, ``None`` for a JSON body.
        fail_after_rows: When set, the job fails once this many rows are done.
        failure_reason: The message of a failed job.
        status: The status at the last observation.
        completed_rows: Rows done at the last observation.
        end_at: Clock reading when the job ended, once it has.
    """

    job_id: str
    kind: JobKind
    account: str
    total_rows: int
    submitted_at: float
    start_at: float
    rows_per_minute: float
    file_size: int
    filename: str | None
    fail_after_rows: int | None = None
    failure_reason: str | None = None
    status: JobStatus = "queued"
    completed_rows: int = 0
    end_at: float | None = None
    records: list[JobRow] = attrs.field(factory=list, repr=False)

    @property
    def type(self) -> str:
        """The job's ``type`` field.

        ``"bulk_identify_users"`` or ``"bulk_identify_companies"`` for a bulk identify,
        ``"import"`` for an events import (``POST /v1/imports``).
        """
        return "import" if self.kind == "events" else f"bulk_identify_{self.kind}"

    @property
    def is_import(self) -> bool:
        """Whether this is an events import (its own one-at-a-time slot, apart from bulk)."""
        return self.kind == "events"

    @property
    def is_terminal(self) -> bool:
        """Whether the job is ``completed`` or ``failed``."""
        return self.status in ("completed", "failed")

    def advance(self, now: float) -> list[JobRow]:
        """Bring the job's state to clock reading ``now``.

        Returns:
            The records that completed since the last observation, in order.
        """
        if self.is_terminal or now < self.start_at:
            return []
        target = self.total_rows
        if self.fail_after_rows is not None:
            target = min(self.fail_after_rows, self.total_rows)
        possible = math.floor((now - self.start_at) * self.rows_per_minute / 60.0 + _EPSILON)
        done = min(possible, target)
        finished = self.records[self.completed_rows : done]
        self.completed_rows = done
        if done < target:
            self.status = "processing"
            return finished
        self.end_at = self.start_at + target * 60.0 / self.rows_per_minute
        self.status = "failed" if self.fail_after_rows is not None else "completed"
        self.records = []  # applied; keep the job light
        return finished

    def to_json(self, now: float, wall: Callable[[float], str], link: str) -> dict[str, object]:
        """The job object the API answers, as of clock reading ``now``.

        An import job shows ``total_rows``, ``completed_rows`` and ``file_size`` as numeric
        strings, as the vendor documents the import job; a bulk job shows them as numbers.
        """
        started = self.status != "queued"
        end = self.end_at
        count: Callable[[int], object] = str if self.is_import else int
        body: dict[str, object] = {
            "job_id": self.job_id,
            "status": self.status,
            "type": self.type,
            "total_rows": count(self.total_rows),
            "completed_rows": count(self.completed_rows),
            "submitted_at": wall(self.submitted_at),
            "start_time": wall(self.start_at) if started else None,
            "end_time": wall(end) if end is not None else None,
            "elapsed_time": (
                round((end if end is not None else now) - self.start_at, 3) if started else None
            ),
            "file_size": count(self.file_size),
            "filename": self.filename,
            "links": {"self": link},
        }
        if self.status == "failed":
            body["error"] = self.failure_reason
        return body


@attrs.define
class Account:
    """Everything one API key has sent: each key is its own account.

    Attributes:
        label: A short name derived from the key (``"acct-…"``); the key itself is not kept here.
        users: Users by id.
        companies: Companies by id.
        events: Tracked events (``POST /v1/track``), in arrival order.
        imported_events: Events of import jobs, in the order their rows were processed.
        jobs: Bulk and import jobs by id, in submission order.
        identified: Each identify of a user (real-time or a bulk row), in order.
        deleted_users: Ids named in accepted ``DELETE /v1/users`` requests, in order.
        deleted_companies: Ids named in accepted ``DELETE /v1/companies`` requests, in order.
    """

    label: str
    users: dict[str, StoredUser] = attrs.Factory(dict)
    companies: dict[str, StoredCompany] = attrs.Factory(dict)
    events: list[TrackedEvent] = attrs.Factory(list)
    imported_events: list[ImportedEvent] = attrs.Factory(list)
    jobs: dict[str, BulkJob] = attrs.Factory(dict)
    identified: list[IdentifiedUser] = attrs.Factory(list)
    deleted_users: list[str] = attrs.Factory(list)
    deleted_companies: list[str] = attrs.Factory(list)

    def apply(self, record: Record) -> None:
        """Merge one validated user or company record into the store."""
        if isinstance(record, UserRecord):
            user = self.users.setdefault(record.user_id, StoredUser(record.user_id))
            if record.company_id is not None:
                user.company_id = record.company_id
            user.metadata.update(record.metadata)
        else:
            self._apply_company(record)

    def _apply_company(self, record: CompanyRecord) -> None:
        company = self.companies.setdefault(record.company_id, StoredCompany(record.company_id))
        company.metadata.update(record.metadata)

    def _apply_event(self, row: EventRow, job_id: str, now: float) -> None:
        self.imported_events.append(
            ImportedEvent(
                row.event_type,
                row.source,
                row.inserted_at,
                row.user_id,
                row.company_id,
                row.event_name,
                row.metadata,
                row.fields,
                job_id,
                now,
            )
        )
        if row.event_type == "identify_user" and row.user_id is not None:
            self.apply(UserRecord(row.user_id, row.company_id, row.metadata))
        elif row.event_type == "identify_company" and row.company_id is not None:
            self.apply(CompanyRecord(row.company_id, row.metadata))

    def settle(self, now: float) -> None:
        """Advance every unfinished job to ``now`` and apply the rows it completed."""
        for job in self.jobs.values():
            for record in job.advance(now):
                if isinstance(record, EventRow):
                    self._apply_event(record, job.job_id, now)
                else:
                    self.apply(record)
                    if isinstance(record, UserRecord):
                        self.note_identify(record, now)

    def note_identify(self, record: UserRecord, now: float) -> None:
        """Keep an identify of a user as the event an export shows."""
        self.identified.append(
            IdentifiedUser(record.user_id, record.company_id, dict(record.metadata), now)
        )

    def running_job(self, *, imports: bool = False) -> BulkJob | None:
        """The job that blocks a new submission (call :meth:`settle` first), if any.

        Args:
            imports: Look at the import slot (``POST /v1/imports``) instead of the bulk
                identify slot; each allows one running job of its own.
        """
        for job in self.jobs.values():
            if not job.is_terminal and job.is_import == imports:
                return job
        return None
