"""What the command line prints on stdout: an import's summary and the jobs table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._models import Job, Rejection
from ._app import in_cli_words
from ._progress import count, counted, duration
from ._report import ImportReport

SHOWN = 10
"""Rejections (and jobs) listed in a summary; the rest are counted (and in ``--rejects``)."""


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


_DONE = {"import": "Imported", "sync": "Synced"}


def _title(report: ImportReport) -> str:
    source = escape(report.source)
    run = f"{report.action} of {report.what} from {source}"
    if report.dry_run:
        title = f"Dry run of {report.what} from {source}: nothing was sent"
    elif report.interrupted:
        title = f"Interrupted: {run}"
    elif report.error is not None:
        title = f"Stopped: {run}"
    else:
        title = f"{_DONE[report.action]} {report.what} from {source}"
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
    if rejects is not None and not report.interrupted and report.error is None:
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
    """Print the summary of an import, a sync or a dry run, for people.

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
            reason = redact(in_cli_words(rejection.reason))
            console.print(Text(f"  {where(rejection)}: {reason}"), soft_wrap=True)
        more = report.rows_rejected - min(len(report.rejected), shown)
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
    return (
        "without --journal a re-run sends every record again (profile updates are "
        "idempotent: nothing is duplicated); pass --journal PATH to make an import resumable"
    )
