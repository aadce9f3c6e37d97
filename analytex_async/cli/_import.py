"""``import users`` / ``import companies`` (and the demo's import): run, check, report.

The import itself is the library's: ``AsyncAnalytex.import_users`` / ``import_companies`` with a
progress display on ``on_progress``. ``--dry-run`` runs the pipeline's own first steps (read the
source, validate each record, encode it, check it fits a batch) and stops before anything is
sent. The report of either is an :class:`ImportReport`, printed for people or as JSON.
"""

from __future__ import annotations

import gzip
import inspect
import io
import json
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import IO, Any, TypeVar

import anyio
import anyio.to_thread
import attrs
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._bulk._batching import Batcher
from .._bulk._records import check_record
from .._bulk._sources import read_source
from .._client import AsyncAnalytex
from .._constants import MAX_RECORDS
from .._models import ImportProgress, ImportResult, Job, JobStatus, Rejection
from .._types import RecordKind, SourceFormat
from ._progress import ImportDisplay, count, counted, duration

T = TypeVar("T")

SHOWN = 10
"""Rejections (and jobs) listed in a summary; the rest are counted (and in ``--rejects``)."""
DRY_RUN_REPORT_EVERY = 500
"""Records between two progress reports of a dry run."""
_GZIP_MAGIC = b"\x1f\x8b"


def journal_supported() -> bool:
    """Whether this version's ``import_users`` takes ``journal=`` (resumable imports)."""
    return "journal" in inspect.signature(AsyncAnalytex.import_users).parameters


@attrs.frozen
class ImportRequest:
    """What to import, and how: the options of ``import users`` / ``import companies``.

    Attributes:
        kind: ``"user"`` or ``"company"``.
        source: A path, or an open binary stream (stdin).
        label: How to name the source in messages (the path, or ``stdin``).
        batch_size: Records per batch at most.
        wait: Wait for the server to complete the jobs.
        format: The file format, when the name does not tell.
        journal: The journal file, for a resumable import.
        total: The number of records, when known ahead (else counted from a file).
    """

    kind: RecordKind
    source: Path | IO[bytes]
    label: str
    batch_size: int = MAX_RECORDS
    wait: bool = True
    format: SourceFormat | None = None
    journal: Path | None = None
    total: int | None = None

    @property
    def what(self) -> str:
        """``"users"`` or ``"companies"``."""
        return "users" if self.kind == "user" else "companies"


@attrs.frozen
class ImportReport:
    """What one run of an import (or a dry run) did, for the summary.

    Attributes:
        what: ``"users"`` or ``"companies"``.
        source: The source's label.
        rows_read: Records read.
        rows_sent: Records the server accepted.
        rows_rejected: Records rejected.
        rejected: The rejections (none when the run was interrupted: only the count is known).
        jobs: The jobs of the accepted batches, in their last known state.
        batches: Batches accepted (or, for a dry run, that would be sent).
        elapsed: Seconds the run took.
        rows_completed: Rows the server completed.
        rows_skipped: Rows skipped because the journal says an earlier run sent them.
        dry_run: Nothing was sent.
        interrupted: The run was stopped by Ctrl-C.
        error: Why the run stopped early, if it did.
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
            rows_rejected=len(result.rejected),
            rejected=list(result.rejected),
            jobs=list(result.jobs),
            batches=len(result.jobs),
            elapsed=result.elapsed,
            rows_completed=sum(_completed_rows(job) for job in result.jobs),
            rows_skipped=result.rows_skipped,
            error=error,
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


def _completed_rows(job: Job) -> int:
    if job.status is JobStatus.COMPLETED and job.total_rows is not None:
        return job.total_rows
    return job.completed_rows or 0


def job_json(job: Job) -> dict[str, Any]:
    """A job as the JSON outputs show it.

    Args:
        job: The job.

    Returns:
        Its id, status, type, row counts and submission time.
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


# -- running ------------------------------------------------------------------------------------


async def _shown(
    display: ImportDisplay, request: ImportRequest, work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` with the display showing, and the source counted for the ETA meanwhile."""
    outcome: list[T] = []
    failure: Exception | None = None
    stop_counting = threading.Event()
    display.watch.restart()
    with display:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(display.keep_showing)
            if request.total is not None:
                display.set_total(request.total)
            elif isinstance(request.source, Path):
                tasks.start_soon(_count_for, display, request, stop_counting)
            try:
                outcome.append(await work())
            except Exception as exc:
                # Kept out of the task group, which would wrap it in an exception group.
                failure = exc
            finally:
                stop_counting.set()
                tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return outcome[0]


async def _count_for(display: ImportDisplay, request: ImportRequest, stop: threading.Event) -> None:
    assert isinstance(request.source, Path)  # noqa: S101 - the caller checked
    total = await anyio.to_thread.run_sync(
        count_records, request.source, request.format, stop, abandon_on_cancel=True
    )
    if total is not None:
        display.set_total(total)


def count_records(path: Path, format: SourceFormat | None, stop: threading.Event) -> int | None:
    """Count the records of a file quickly, for the progress display's total and ETA.

    Counts non-blank lines (less the header for CSV), reading the file a MiB at a time and
    giving up as soon as ``stop`` is set. Exact for NDJSON; an estimate for CSV files whose
    quoted cells span lines. The import itself never relies on it.

    Args:
        path: The file (gzip-compressed or not).
        format: ``"ndjson"`` or ``"csv"``; ``None`` to tell from the name.
        stop: Set when the count is no longer wanted.

    Returns:
        The number of records, or ``None`` when stopped or the file cannot be read.
    """
    name = path.name.lower().removesuffix(".gz")
    is_csv = format == "csv" or (format is None and name.endswith(".csv"))
    records = 0
    tail = b""
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if compressed else raw
            while True:
                if stop.is_set():
                    return None
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                records += sum(1 for line in lines if line.strip())
    except (OSError, EOFError, zlib.error):
        return None
    records += 1 if tail.strip() else 0
    return max(records - 1, 0) if is_csv else records


async def run_import(
    client: AsyncAnalytex, request: ImportRequest, display: ImportDisplay
) -> ImportResult:
    """Import the request's source through the library's pipeline, showing progress.

    Args:
        client: The client to import with.
        request: What to import and how.
        display: Where progress shows; its ``update`` is the ``on_progress`` callback.

    Returns:
        The library's result.

    Raises:
        ValidationError: The source cannot be read.
        ImportAbortedError: A batch failed for good.
    """
    options: dict[str, Any] = {
        "batch_size": request.batch_size,
        "wait": request.wait,
        "on_progress": display.update,
        "format": request.format,
    }
    if request.journal is not None:
        options["journal"] = request.journal
    method = client.import_users if request.kind == "user" else client.import_companies
    return await _shown(display, request, lambda: method(request.source, **options))


async def validate_only(request: ImportRequest, display: ImportDisplay) -> ImportReport:
    """Read and validate every record as an import would, and send nothing.

    Each record goes through the pipeline's own steps: ``read_source`` (decoding),
    ``bulk_record`` (the validation rules), ``encode_record`` and the batcher's size check; the
    batcher also counts the batches an import would send.

    Args:
        request: What to check.
        display: Where progress shows.

    Returns:
        The report: rows read and rejected (with reasons) and the batches that would be sent.

    Raises:
        ValidationError: The source cannot be read.
    """
    started = anyio.current_time()
    return await _shown(display, request, lambda: _check_all(request, display, started))


async def _check_all(
    request: ImportRequest, display: ImportDisplay, started: float
) -> ImportReport:
    batcher = Batcher(max_records=request.batch_size)
    rows_read = 0
    batches = 0
    rejected: list[Rejection] = []
    source = read_source(request.source, request.kind, format=request.format)
    async with aclosing(source) as items:
        async for item in items:
            rows_read += 1
            checked = check_record(item.record, request.kind, batcher, item.error)
            if isinstance(checked, str):
                rejected.append(Rejection(item.position, item.record, checked, item.line))
            elif batcher.add(item.position, checked) is not None:
                batches += 1
            if rows_read % DRY_RUN_REPORT_EVERY == 0:
                display.update(ImportProgress(rows_read=rows_read, rows_rejected=len(rejected)))
    if batcher.flush() is not None:
        batches += 1
    display.update(ImportProgress(rows_read=rows_read, rows_rejected=len(rejected)))
    return ImportReport(
        what=request.what,
        source=request.label,
        rows_read=rows_read,
        rows_sent=0,
        rows_rejected=len(rejected),
        rejected=rejected,
        jobs=[],
        batches=batches,
        elapsed=anyio.current_time() - started,
        dry_run=True,
    )


# -- reporting ----------------------------------------------------------------------------------


def write_rejects(path: Path, rejected: Iterable[Rejection]) -> None:
    """Write the rejected records as NDJSON: one object per record, in source order.

    Each object holds ``position`` (zero-based, among the source's records), ``line`` (one-based
    line in the file; ``null`` when unknown), ``reason`` and ``record`` (the record as read, or
    the raw text of a line that did not decode).

    Args:
        path: The file to (over)write.
        rejected: The rejections.
    """
    with path.open("w", encoding="utf-8") as out:
        for rejection in rejected:
            entry = {
                "position": rejection.position,
                "line": rejection.line,
                "reason": rejection.reason,
                "record": rejection.record,
            }
            out.write(json.dumps(entry, ensure_ascii=False, default=repr) + "\n")


def seconds(value: float) -> str:
    """An elapsed time for people: ``5.9 s`` under a minute, else ``H:MM:SS``."""
    return f"{value:.1f} s" if value < 60 else duration(value)


def where(rejection: Rejection) -> str:
    """Where a rejected record is: its line in the file, else its position."""
    if rejection.line is not None:
        return f"line {rejection.line:,}"
    return f"record {rejection.position:,}"


def job_states(jobs: Iterable[Job]) -> str:
    """How many jobs are in each state: ``4 completed, 1 failed``."""
    states: dict[str, int] = {}
    for job in jobs:
        states[job.status.value] = states.get(job.status.value, 0) + 1
    return ", ".join(f"{n:,} {state}" for state, n in states.items()) or "none"


def output_console() -> Console:
    """A console on stdout; wide when stdout is not a terminal, so that logs keep whole lines."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def jobs_table(jobs: list[Job], redact: Callable[[str], str], *, submitted: bool = True) -> Table:
    """The jobs as a table: id, status, rows done of total, submission time.

    Args:
        jobs: The jobs.
        redact: Removes the API key from server-provided text.
        submitted: Show when each job was submitted.
    """
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("JOB ID", no_wrap=True)
    table.add_column("STATUS")
    table.add_column("ROWS", justify="right")
    if submitted:
        table.add_column("SUBMITTED (UTC)")
    for job in jobs:
        status = job.status.value
        style = {"completed": "green", "failed": "red"}.get(status, "yellow")
        rows = "-"
        if job.total_rows is not None:
            rows = f"{count(job.completed_rows or 0)} / {count(job.total_rows)}"
        cells: list[str | Text] = [escape(redact(job.job_id)), Text(status, style=style), rows]
        if submitted:
            moment = job.submitted_at
            cells.append(moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-")
        table.add_row(*cells)
    return table


def _title(report: ImportReport) -> str:
    source = escape(report.source)
    if report.dry_run:
        title = f"Dry run of {report.what} from {source}: nothing was sent"
    elif report.interrupted:
        title = f"Interrupted: import of {report.what} from {source}"
    elif report.error is not None:
        title = f"Stopped: import of {report.what} from {source}"
    else:
        title = f"Imported {report.what} from {source}"
    return f"[bold]{title}[/] ({seconds(report.elapsed)})"


def _counts(report: ImportReport, rejects: Path | None) -> list[tuple[str, str]]:
    rows = [("read", counted(report.rows_read, "row"))]
    batches = counted(report.batches, "batch")
    if report.dry_run:
        valid = report.rows_read - report.rows_rejected
        rows.append(("valid", f"{counted(valid, 'row')}, {batches} to send"))
    else:
        rows.append(("sent", f"{counted(report.rows_sent, 'row')} in {batches}"))
        if report.rows_skipped:
            skipped = counted(report.rows_skipped, "row")
            rows.append(("skipped", f"{skipped} (the journal: an earlier run sent them)"))
    rejected = counted(report.rows_rejected, "row")
    if rejects is not None and not report.interrupted:
        rejected += f", written to {escape(str(rejects))}"
    rows.append(("rejected", f"[red]{rejected}[/]" if report.rows_rejected else rejected))
    if report.jobs:
        rows.append(("jobs", job_states(report.jobs)))
    elif report.interrupted:
        rows.append(("completed", f"{counted(report.rows_completed, 'row')} by the server"))
    return rows


def print_summary(
    console: Console,
    report: ImportReport,
    *,
    rejects: Path | None,
    redact: Callable[[str], str],
    shown: int = SHOWN,
) -> None:
    """Print the summary of an import (or a dry run) for people.

    Args:
        console: Where to print (stdout).
        report: What the run did.
        rejects: Where the rejected records were written, if they were.
        redact: Removes the API key from server-provided text.
        shown: Rejections and jobs listed at most (failed jobs first).
    """
    console.print(_title(report), soft_wrap=True)
    for name, value in _counts(report, rejects):
        console.print(f"  {name:<10} {value}", soft_wrap=True)
    if report.jobs:
        failed = report.failed_jobs
        listed = failed + [job for job in report.jobs if job not in failed]
        console.print()
        console.print(jobs_table(listed[:shown], redact, submitted=False))
        if len(listed) > shown:
            console.print(f"  ... and {len(listed) - shown:,} more: analytex-async jobs")
    if report.rejected:
        console.print()
        console.print(f"[bold]Rejected records[/] ({count(report.rows_rejected)}):")
        for rejection in report.rejected[:shown]:
            console.print(Text(f"  {where(rejection)}: {redact(rejection.reason)}"), soft_wrap=True)
        more = len(report.rejected) - shown
        if more > 0:
            hint = "" if rejects is not None else " (--rejects FILE saves them all)"
            console.print(f"  ... and {more:,} more{hint}")


def resume_hint(journal: Path | None) -> str:
    """How to pick up an import that stopped early.

    Args:
        journal: The import's journal, if it had one.
    """
    if journal is not None:
        return (
            f"to resume, run the same command again: the journal {journal} skips what the "
            "server accepted"
        )
    if journal_supported():
        return (
            "without --journal a re-run sends every record again (profile updates are "
            "idempotent: nothing is duplicated); pass --journal PATH to make an import resumable"
        )
    return (
        "a re-run sends every record again (profile updates are idempotent: nothing is "
        "duplicated, only the time is spent again)"
    )
