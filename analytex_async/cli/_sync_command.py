"""``analytex-async sync users`` / ``sync companies``: send only what changed since the last sync.

The import command's pieces do the work here too: the progress display (``_import._shown``),
the rejects file (``--rejects``, moved into place when the run ends) and the summary, followed
by the sync's own counts (new, changed, unchanged, missing, deleted, rejected). Exit status as
for ``import``: 0 all sent and completed, 1 records rejected or a job failed, 2 usage or
configuration error (a state file of another kind or host, or in use by another sync), 3 the API
could not be reached or kept failing, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.markup import escape

from .._bulk._sync import SyncResult
from .._config import resolve_base_url
from .._errors import ImportAbortedError, ValidationError
from .._types import RecordKind, SourceFormat
from ._app import (
    FAILURE,
    INTERRUPTED,
    PROG,
    SUCCESS,
    USAGE_ERROR,
    CliError,
    CliUsageError,
    Settings,
    describe,
    exit_status,
    run_async,
)
from ._display import ImportDisplay, import_display
from ._import import _shown
from ._import_command import _left_as_it_was, _open_rejects, _report
from ._progress import STAGES, ImportWatch, counted
from ._rejects import RejectsFile
from ._report import ImportReport, ImportRequest
from ._server_jobs import spotting_http_client
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


def _sync_options(command: Callable[..., None]) -> Callable[..., None]:
    options: list[Callable[[Callable[..., None]], Callable[..., None]]] = [
        click.argument(
            "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str)
        ),
        click.option(
            "--state",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="The sync state file (SQLite), created on first use; the same every run.",
        ),
        click.option("--full", is_flag=True, help="Send every valid record, changed or not."),
        click.option(
            "--delete-missing",
            is_flag=True,
            help="Delete on the server the ids the state holds and FILE no longer does.",
        ),
        click.option(
            "--batch-size",
            default=10_000,
            show_default=True,
            type=click.IntRange(1, 10_000),
            help="Records per batch at most.",
        ),
        click.option(
            "--rows-per-minute",
            type=click.FloatRange(min=0, min_open=True),
            help="Rows a minute to keep to (the API processes 1,200).  [default: 1200]",
        ),
        click.option(
            "--rejects",
            type=click.Path(dir_okay=False, writable=True, path_type=Path),
            metavar="OUT.ndjson",
            help="Write each rejected record, with its reason and line, to this file.",
        ),
        click.option(
            "--no-wait",
            is_flag=True,
            help="Return once the last batch is accepted (its rows go again next time).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary."),
        click.option(
            "--format",
            "file_format",
            type=click.Choice(["ndjson", "csv"]),
            help="The format, when the file name does not tell (stdin is NDJSON by default).",
        ),
        click.option(
            "--csv-multiline", is_flag=True, help="Read CSV quoted cells that span lines."
        ),
        click.pass_obj,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@sync_group.command("users")
@_sync_options
def sync_users(settings: Settings, **options: Any) -> None:
    """Sync users (user_id, company_id, metadata) from FILE."""
    _sync(settings, "user", **options)


@sync_group.command("companies")
@_sync_options
def sync_companies(settings: Settings, **options: Any) -> None:
    """Sync companies (company_id, metadata) from FILE."""
    _sync(settings, "company", **options)


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


async def _sync_with_client(
    settings: Settings,
    request: ImportRequest,
    display: ImportDisplay,
    sync: dict[str, Any],
    rejects: RejectsFile | None,
) -> tuple[ImportReport, SyncResult | None, int]:
    options = (
        {} if sync["rows_per_minute"] is None else {"rows_per_minute": sync["rows_per_minute"]}
    )
    settings.check_key()
    base_url = resolve_base_url(settings.region, settings.base_url)
    async with (
        spotting_http_client(base_url, display.watch) as http_client,
        settings.client(http_client=http_client, **options) as client,
    ):
        display.watch.rows_per_minute = client.rows_per_minute
        method = client.sync_users if request.kind == "user" else client.sync_companies
        extra: dict[str, Any] = {} if rejects is None else {"on_invalid": rejects}
        try:
            result = await _shown(
                display,
                request,
                lambda: method(
                    request.source,
                    state=sync["state"],
                    full=sync["full"],
                    delete_missing=sync["delete_missing"],
                    batch_size=request.batch_size,
                    wait=request.wait,
                    on_progress=display.update,
                    format=request.format,
                    csv_multiline=request.csv_multiline,
                    **extra,
                ),
                get_job=client.get_job,
            )
        except ImportAbortedError as exc:
            partial_result = exc.result if isinstance(exc.result, SyncResult) else None
            report = ImportReport.of_result(request, exc.result, error=describe(exc, settings))
            return report, partial_result, exit_status(exc)
        except ValidationError as exc:
            if exc.result is None or not exc.result.rows_sent:
                raise
            partial_result = exc.result if isinstance(exc.result, SyncResult) else None
            report = ImportReport.of_result(request, exc.result, error=describe(exc, settings))
            return report, partial_result, USAGE_ERROR
    report = ImportReport.of_result(request, result)
    return report, result, SUCCESS if report.ok else FAILURE


def _sync(
    settings: Settings,
    kind: RecordKind,
    *,
    file: str,
    state: Path,
    full: bool,
    delete_missing: bool,
    batch_size: int,
    rows_per_minute: float | None,
    rejects: Path | None,
    no_wait: bool,
    as_json: bool,
    file_format: SourceFormat | None,
    csv_multiline: bool,
) -> None:
    rejects_file = _open_rejects(rejects)
    source: Path | IO[bytes]
    if file == "-":
        source, label = sys.stdin.buffer, "stdin"
    else:
        source, label = Path(file), file
    request = ImportRequest(
        kind,
        source,
        label,
        batch_size=batch_size,
        wait=not no_wait,
        format=file_format,
        csv_multiline=csv_multiline,
    )
    sync = {
        "state": state,
        "full": full,
        "delete_missing": delete_missing,
        "rows_per_minute": rows_per_minute,
    }
    watch = ImportWatch(rows_per_minute or 1200.0, wait=not no_wait)
    display = import_display(watch, Console(stderr=True, highlight=False), stages=STAGES)
    try:
        report, result, status = run_async(
            settings,
            partial(_sync_with_client, settings, request, display, sync, rejects_file),
        )
    except KeyboardInterrupt:
        report = ImportReport.of_progress(
            request, watch.progress, watch.elapsed, error="interrupted"
        )
        _report(report, rejects=rejects, as_json=as_json, settings=settings)
        kept = _left_as_it_was(rejects_file)
        click.echo(
            f"\n{PROG}: interrupted: the server had accepted {counted(report.rows_sent, 'row')}; "
            f"the state {state} keeps the rows whose jobs were seen completed, and the same "
            "command run again sends the rest" + (f"; {kept}" if kept else ""),
            err=True,
        )
        raise click.exceptions.Exit(INTERRUPTED) from None
    except CliError as exc:
        kept = _left_as_it_was(rejects_file)
        if kept:
            raise type(exc)(f"{exc.format_message()}; {kept}") from None
        raise
    except BaseException:
        _left_as_it_was(rejects_file)
        raise
    _finish(report, result, status, settings, rejects_file, state=state, as_json=as_json)


def _finish(
    report: ImportReport,
    result: SyncResult | None,
    status: int,
    settings: Settings,
    rejects: RejectsFile | None,
    *,
    state: Path,
    as_json: bool,
) -> None:
    """Put the rejects file in place if the run ended, print both summaries, exit."""
    ended = report.error is None
    if rejects is not None and ended:
        try:
            rejects.keep()
        except OSError as exc:
            _left_as_it_was(rejects)
            raise CliUsageError(f"cannot write the rejects file {rejects.path}: {exc}") from None
    path = rejects.path if rejects is not None else None
    counts = sync_counts(result) if result is not None else None
    if as_json:
        body = report.to_json()
        body["sync"] = {"state": str(state), **(counts or {})}
        click.echo(settings.redact(json.dumps(body, ensure_ascii=False)))
    else:
        _report(report, rejects=path, as_json=False, settings=settings)
        if counts is not None:
            _print_counts(counts, state)
    if not ended:
        click.echo(f"{PROG}: error: {report.error}", err=True)
        kept = _left_as_it_was(rejects)
        if kept:
            click.echo(f"{PROG}: {kept}", err=True)
        click.echo(
            f"{PROG}: the state {state} keeps what the server completed; the same command run "
            "again sends the rest",
            err=True,
        )
    raise click.exceptions.Exit(status)


def _print_counts(counts: dict[str, int], state: Path) -> None:
    console = output_console()
    console.print()
    console.print(f"[bold]Sync[/] against {escape(str(state))}", soft_wrap=True)
    notes = {
        "unchanged": " (not sent)",
        "missing": " (in the state, not in the source)",
    }
    for name, value in counts.items():
        console.print(f"  {name:<10} {value:,}{notes.get(name, '')}", soft_wrap=True)
