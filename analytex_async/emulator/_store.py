"""The inspectable in-memory store: accounts, their users, companies, events and jobs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import attrs

from ._faults import Fault
from ._rules import CompanyRecord, Kind, Record, UserRecord

__all__ = [
    "Account",
    "BulkJob",
    "JobStatus",
    "ReceivedRequest",
    "StoredCompany",
    "StoredUser",
    "TrackedEvent",
]

JobStatus = Literal["queued", "processing", "completed", "failed"]

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


@attrs.define
class BulkJob:
    """A bulk identify job; its state follows the clock, advanced whenever it is observed.

    It is ``queued`` until ``start_at``, then ``processing`` at ``rows_per_minute``, then
    ``completed`` (or ``failed`` once ``fail_after_rows`` rows are done, when that is set).
    Rows are applied to the account's store as they complete.

    Attributes:
        job_id: The job's id.
        kind: ``"users"`` or ``"companies"``.
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
    kind: Kind
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
    records: list[Record] = attrs.field(factory=list, repr=False)

    @property
    def type(self) -> str:
        """The job's ``type`` field: ``"bulk_identify_users"`` or ``"bulk_identify_companies"``."""
        return f"bulk_identify_{self.kind}"

    @property
    def is_terminal(self) -> bool:
        """Whether the job is ``completed`` or ``failed``."""
        return self.status in ("completed", "failed")

    def advance(self, now: float) -> list[Record]:
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
        """The job object the API answers, as of clock reading ``now``."""
        started = self.status != "queued"
        end = self.end_at
        body: dict[str, object] = {
            "job_id": self.job_id,
            "status": self.status,
            "type": self.type,
            "total_rows": self.total_rows,
            "completed_rows": self.completed_rows,
            "submitted_at": wall(self.submitted_at),
            "start_time": wall(self.start_at) if started else None,
            "end_time": wall(end) if end is not None else None,
            "elapsed_time": (
                round((end if end is not None else now) - self.start_at, 3) if started else None
            ),
            "file_size": self.file_size,
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
        events: Tracked events, in arrival order.
        jobs: Bulk jobs by id, in submission order.
        deleted_users: Ids named in accepted ``DELETE /v1/users`` requests, in order.
        deleted_companies: Ids named in accepted ``DELETE /v1/companies`` requests, in order.
    """

    label: str
    users: dict[str, StoredUser] = attrs.Factory(dict)
    companies: dict[str, StoredCompany] = attrs.Factory(dict)
    events: list[TrackedEvent] = attrs.Factory(list)
    jobs: dict[str, BulkJob] = attrs.Factory(dict)
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

    def settle(self, now: float) -> None:
        """Advance every unfinished job to ``now`` and apply the rows it completed."""
        for job in self.jobs.values():
            for record in job.advance(now):
                self.apply(record)

    def running_job(self) -> BulkJob | None:
        """The job that blocks a new submission (call :meth:`settle` first), if any."""
        for job in self.jobs.values():
            if not job.is_terminal:
                return job
        return None
