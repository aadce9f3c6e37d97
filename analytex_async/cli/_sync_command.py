"""``analytex-async sync users`` / ``sync companies``: send only what changed since the last sync.

The options, the progress display, the rejects file (``--rejects``, moved into place when the run
ends) and the run itself are the import command's (``_file_command``); what is the sync's own
here: ``--state``, ``--full``, ``--delete-missing``, the library call, and the sync's counts
after the summary (new, changed, unchanged, missing, deleted, rejected). Exit status as for
``import``: 0 all sent and completed, 1 records rejected or a job failed, 2 usage or
configuration error (a state of another kind or host, or in use by another sync), 3 the API
could not be reached or kept failing, 130 interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import click
from rich.markup import escape

from .._bulk._sync import SyncResult
from .._client import AsyncAnalytex
from .._models import ImportResult
from .._redis_sync_state import is_redis_url
from ..governors._redis_base import safe_url
from ._display import ImportDisplay
from ._file_command import FileCommand, add_file_commands, file_options, print_report
from ._import import RejectionSink, library_options, showing_progress
from ._report import ImportReport
from ._summary import output_console


@click.group("sync")
def sync_group() -> None:
    """Sync users or companies from a file: send only what changed since the last sync.

    The state file (--state) holds a digest of every record as the server last completed it;
    records whose digest matches are not sent. Give the same --state every run: one file per
    kind and API host. Exit status as for import: 0 all sent (and completed), 1 records
    rejected or a job failed, 2 usage or configuration error (a state file in use or of another
    kind), 3 the API could not be reached or kept failing, 130 interrupted.
    """


_sync_options = file_options(
    rejects_help="Write each rejected record, with its reason and line, to this file.",
    no_wait_help="Return once the last batch is accepted (its rows go again next time).",
    csv_multiline_help="Read CSV quoted cells that span lines.",
    after_file=[
        click.option(
            "--state",
            required=True,
            callback=lambda _context, _param, value: _state_option(value),
            help="The sync state file (SQLite), created on first use, or a redis:// URL "
            "shared by every host (?name= in it separates states); the same every run.",
        ),
        click.option("--full", is_flag=True, help="Send every valid record, changed or not."),
        click.option(
            "--delete-missing",
            is_flag=True,
            help="Delete on the server the ids the state holds and FILE no longer does.",
        ),
    ],
)


def _state_option(value: str) -> Path | str:
    """``--state``: a Redis URL as it is, anything else a path."""
    if is_redis_url(value):
        return value
    path = Path(value)
    if path.is_dir():
        raise click.BadParameter(f"{value!r} is a directory, not a state file")
    return path


def state_label(state: Path | str) -> str:
    """The state as messages show it: a Redis URL without its password."""
    return safe_url(state) if isinstance(state, str) else str(state)


def sync_counts(result: SyncResult) -> dict[str, int]:
    """The sync's counts, as the summary names them."""
    return {
        "new": result.rows_new,
        "changed": result.rows_changed,
        "unchanged": result.rows_unchanged,
        "missing": result.rows_missing,
        "deleted": result.rows_deleted,
        "rejected": result.rows_rejected,
    }


@attrs.frozen(kw_only=True)
class _SyncFile(FileCommand):
    """One ``sync`` run: the library's ``sync_*`` call against a state file."""

    state: Path | str
    full: bool
    delete_missing: bool

    action = "sync"

    async def send(
        self, client: AsyncAnalytex, display: ImportDisplay, on_invalid: RejectionSink | None
    ) -> ImportResult:
        request = self.request
        method = client.sync_users if request.kind == "user" else client.sync_companies
        options = library_options(request, display, on_invalid)
        return await showing_progress(
            display,
            request,
            lambda: method(
                request.source,
                state=self.state,
                full=self.full,
                delete_missing=self.delete_missing,
                **options,
            ),
            get_job=client.get_job,
        )

    def accepted(self, report: ImportReport) -> str:
        return (
            f"; the state {state_label(self.state)} keeps the rows whose jobs were seen "
            "completed, and the same command run again sends the rest"
        )

    def hint_after_stop(self, report: ImportReport) -> str | None:
        return (
            f"the state {state_label(self.state)} keeps what the server completed; the same "
            "command run again sends the rest"
        )

    def summarize(
        self, report: ImportReport, result: ImportResult | None, rejects: Path | None
    ) -> None:
        counts = sync_counts(result) if isinstance(result, SyncResult) else None
        if self.as_json:
            body = report.to_json()
            body["sync"] = {"state": state_label(self.state), **(counts or {})}
            click.echo(self.settings.redact(json.dumps(body, ensure_ascii=False)))
            return
        print_report(report, rejects=rejects, as_json=False, settings=self.settings)
        if counts is not None:
            _print_counts(counts, state_label(self.state))


add_file_commands(
    sync_group,
    _sync_options,
    _SyncFile,
    {
        "users": ("user", "Sync users (user_id, company_id, metadata) from FILE."),
        "companies": ("company", "Sync companies (company_id, metadata) from FILE."),
    },
)


def _print_counts(counts: dict[str, int], state: str) -> None:
    console = output_console()
    console.print()
    console.print(f"[bold]Sync[/] against {escape(state)}", soft_wrap=True)
    notes = {
        "unchanged": " (not sent)",
        "missing": " (in the state, not in the source)",
    }
    for name, value in counts.items():
        console.print(f"  {name:<10} {value:,}{notes.get(name, '')}", soft_wrap=True)
