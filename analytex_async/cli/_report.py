"""What an import is asked to do (:class:`ImportRequest`) and what it did (:class:`ImportReport`).

The report is what the summary prints, for people or as JSON; it is built from the library's
``ImportResult``, from a dry run's own count, or (after Ctrl-C) from the last progress report.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Literal

import attrs

from .._constants import MAX_RECORDS
from .._models import ImportProgress, ImportResult, Job, JobStatus, Rejection
from .._types import RecordKind, SourceFormat

Action = Literal["import", "sync"]
"""The command a run belongs to: it names the run in the summary's title."""


@attrs.frozen
class ImportRequest:
    """What to import, and how: the options of ``import`` (and ``sync``) commands.

    Attributes:
        kind: ``"user"``, ``"company"`` or ``"event"``.
        source: A path, or an open binary stream (stdin).
        label: How to name the source in messages (the path, or ``stdin``).
        batch_size: Records per batch at most.
        wait: Wait for the server to complete the jobs.
        format: The file format, when the name does not tell.
        csv_multiline: Read CSV quoted cells that span lines.
        journal: The journal file, for a resumable import.
        total: The number of records, when known ahead (else counted from a file).
        action: ``"import"``, or ``"sync"`` for a sync.
    """

    kind: RecordKind
    source: Path | IO[bytes]
    label: str
    batch_size: int = MAX_RECORDS
    wait: bool = True
    format: SourceFormat | None = None
    csv_multiline: bool = False
    journal: Path | None = None
    total: int | None = None
    action: Action = "import"

    @property
    def what(self) -> str:
        """``"users"``, ``"companies"`` or ``"events"``."""
        return {"user": "users", "company": "companies", "event": "events"}[self.kind]


@attrs.frozen
class ImportReport:
    """What one run of an import (or a dry run) did, for the summary.

    Attributes:
        what: ``"users"``, ``"companies"`` or ``"events"``.
        source: The source's label.
        rows_read: Records read.
        rows_sent: Records the server accepted.
        rows_rejected: Records rejected, all of them.
        rejected: The first rejections (the library keeps 1,000; none when the run was
            interrupted, where only the count is known).
        jobs: The jobs of the accepted batches, in their last known state.
        batches: Batches accepted (or, for a dry run, that would be sent).
        elapsed: Seconds the run took.
        rows_completed: Rows the server completed.
        rows_skipped: Rows skipped because the journal says an earlier run sent them.
        dry_run: Nothing was sent.
        interrupted: The run was stopped by Ctrl-C.
        error: Why the run stopped early, if it did.
        action: ``"import"``, or ``"sync"`` for a sync.
    """

    what: str
    source: str
    rows_read: int
    rows_sent: int
    rows_rejected: int
    rejected: list[Rejection]
    jobs: list[Job]
    batches: int
    elapsed: float
    rows_completed: int = 0
    rows_skipped: int = 0
    dry_run: bool = False
    interrupted: bool = False
    error: str | None = None
    action: Action = "import"

    @classmethod
    def of_result(
        cls, request: ImportRequest, result: ImportResult, *, error: str | None = None
    ) -> ImportReport:
        """The report of a finished (or aborted) import.

        Args:
            request: The import's request.
            result: The library's result.
            error: Why it stopped early, if it did.
        """
        return cls(
            what=request.what,
            source=request.label,
            rows_read=result.rows_read,
            rows_sent=result.rows_sent,
            rows_rejected=result.rows_rejected,
            rejected=list(result.rejected),
            jobs=list(result.jobs),
            batches=len(result.jobs),
            elapsed=result.elapsed,
            rows_completed=sum(completed_rows(job) for job in result.jobs),
            rows_skipped=result.rows_skipped,
            error=error,
            action=request.action,
        )

    @classmethod
    def of_progress(
        cls, request: ImportRequest, progress: ImportProgress, elapsed: float, *, error: str
    ) -> ImportReport:
        """The report of an interrupted import, from its last progress report.

        Args:
            request: The import's request.
            progress: The last report of the pipeline.
            elapsed: Seconds it ran.
            error: What stopped it.
        """
        return cls(
            what=request.what,
            source=request.label,
            rows_read=progress.rows_read,
            rows_sent=progress.rows_sent,
            rows_rejected=progress.rows_rejected,
            rejected=[],
            jobs=[],
            batches=progress.batches_sent,
            elapsed=elapsed,
            rows_completed=progress.rows_completed,
            rows_skipped=progress.rows_skipped,
            interrupted=True,
            error=error,
            action=request.action,
        )

    @property
    def failed_jobs(self) -> list[Job]:
        """The jobs that ended ``failed``."""
        return [job for job in self.jobs if job.status is JobStatus.FAILED]

    @property
    def ok(self) -> bool:
        """Whether every record went through: none rejected, no job failed, no early stop."""
        return (
            not self.rows_rejected
            and not self.failed_jobs
            and not self.interrupted
            and self.error is None
        )

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary (``--json``)."""
        return {
            "kind": self.what,
            "source": self.source,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "error": self.error,
            "rows_read": self.rows_read,
            "rows_valid": self.rows_read - self.rows_rejected,
            "rows_sent": self.rows_sent,
            "rows_skipped": self.rows_skipped,
            "rows_rejected": self.rows_rejected,
            "rows_completed": self.rows_completed,
            "batches": self.batches,
            "elapsed": round(self.elapsed, 3),
            "jobs": [job_json(job) for job in self.jobs],
            "rejected": [
                {"position": r.position, "line": r.line, "reason": r.reason} for r in self.rejected
            ],
        }


def completed_rows(job: Job) -> int:
    """The rows a job has done: all of them once it completed, whatever its last counts said.

    Args:
        job: The job's latest known state.
    """
    if job.status is JobStatus.COMPLETED and job.total_rows is not None:
        return job.total_rows
    return job.completed_rows or 0


def job_json(job: Job) -> dict[str, Any]:
    """A job as the JSON outputs show it.

    Args:
        job: The job.

    Returns:
        Its id, status (the server's own word for a status this SDK does not know), type, row
        counts and submission time.
    """
    return {
        "job_id": job.job_id,
        "status": job.raw.get("status", job.status.value)
        if job.status is JobStatus.UNKNOWN
        else job.status.value,
        "type": job.type,
        "total_rows": job.total_rows,
        "completed_rows": job.completed_rows,
        "submitted_at": job.submitted_at.isoformat() if job.submitted_at else None,
    }
