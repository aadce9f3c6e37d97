"""``analytex-async import users`` / ``import companies``: the options, the run, the exit status.

Exit status: 0 all sent (and completed), 1 records rejected, a job failed or the server refused
a batch, 2 usage or configuration error, 3 the API could not be reached or kept failing, 130
interrupted (the summary of what was accepted is printed first, with how to resume).

``--rejects`` is written to a partial file beside it and moved into place when the import ends
(finished, with or without rejections); a run that stops early (Ctrl-C, or an abort: the API
unreachable or refusing a batch) leaves an existing file as it was and says where the partial
one is.
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
from ._import import run_import, validate_only
from ._progress import DRY_RUN_STAGES, STAGES, ImportWatch, counted
from ._rejects import RejectsFile
from ._report import ImportReport, ImportRequest
from ._server_jobs import spotting_http_client
from ._summary import output_console, print_summary, resume_hint


@click.group("import")
def import_group() -> None:
    """Import users or companies from a file or stdin, through the governed bulk pipeline.

    FILE is NDJSON (.ndjson, .jsonl) or CSV (.csv), optionally gzipped (.gz), or - for stdin
    (NDJSON unless --format csv; gzip is recognised). Every record is validated first; invalid
    ones are reported (--rejects saves them), valid ones go in batches at the rate, one job at a
    time. Exit status: 0 all sent (and completed), 1 records rejected or a job failed, 2 usage or
    configuration error, 3 the API could not be reached or kept failing, 130 interrupted.
    """


def _import_options(command: Callable[..., None]) -> Callable[..., None]:
    options: list[Callable[[Callable[..., None]], Callable[..., None]]] = [
        click.argument(
            "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str)
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
            "--journal",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Record each accepted batch in this file; the same command run again with "
            "it resumes where the import stopped.",
        ),
        click.option(
            "--rejects",
            type=click.Path(dir_okay=False, writable=True, path_type=Path),
            metavar="OUT.ndjson",
            help="Write each rejected record, with its reason and line, to this file (replaced "
            "when the import ends; a run stopped early leaves it as it was).",
        ),
        click.option("--no-wait", is_flag=True, help="Return once the last batch is accepted."),
        click.option(
            "--dry-run", is_flag=True, help="Read and validate every record; send nothing."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary."),
        click.option(
            "--format",
            "file_format",
            type=click.Choice(["ndjson", "csv"]),
            help="The format, when the file name does not tell (stdin is NDJSON by default).",
        ),
        click.option(
            "--csv-multiline",
            is_flag=True,
            help="Read CSV quoted cells that span lines (up to 100 lines, 1 MiB a record). "
            "Without it one line is one record, and a line whose quotes do not pair up is "
            "rejected.",
        ),
        click.pass_obj,
    ]
    for option in reversed(options):
        command = option(command)
    return command


@import_group.command("users")
@_import_options
def import_users(settings: Settings, **options: Any) -> None:
    """Import users (user_id, company_id, metadata) from FILE."""
    _import(settings, "user", **options)


@import_group.command("companies")
@_import_options
def import_companies(settings: Settings, **options: Any) -> None:
    """Import companies (company_id, metadata) from FILE."""
    _import(settings, "company", **options)


@import_group.command("events")
@_import_options
def import_events(settings: Settings, **options: Any) -> None:
    """Import historical events (event_type, user_id, ..., inserted_at) from FILE."""
    _import(settings, "event", **options)


async def _import_with_client(
    settings: Settings,
    request: ImportRequest,
    display: ImportDisplay,
    rows_per_minute: float | None,
    rejects: RejectsFile | None,
) -> tuple[ImportReport, int]:
    options = {} if rows_per_minute is None else {"rows_per_minute": rows_per_minute}
    settings.check_key()
    base_url = resolve_base_url(settings.region, settings.base_url)
    async with (
        spotting_http_client(base_url, display.watch) as http_client,
        settings.client(http_client=http_client, **options) as client,
    ):
        display.watch.rows_per_minute = client.rows_per_minute
        try:
            result = await run_import(client, request, display, on_invalid=rejects)
        except ImportAbortedError as exc:
            error = describe(exc, settings)
            return ImportReport.of_result(request, exc.result, error=error), exit_status(exc)
        except ValidationError as exc:
            if exc.result is None or not exc.result.rows_sent:
                raise
            error = describe(exc, settings)
            return ImportReport.of_result(request, exc.result, error=error), USAGE_ERROR
    report = ImportReport.of_result(request, result)
    return report, SUCCESS if report.ok else FAILURE


def _open_rejects(path: Path | None) -> RejectsFile | None:
    """The rejects file, opened now: a path that cannot be written fails before the import."""
    if path is None:
        return None
    try:
        return RejectsFile(path).open()
    except OSError as exc:
        raise CliUsageError(f"cannot write the rejects file {path}: {exc}") from None


def _left_as_it_was(rejects: RejectsFile | None) -> str:
    """What became of the rejects file of a run that did not end (``""`` without one)."""
    if rejects is None:
        return ""
    partial = rejects.abandon()
    if partial is None:
        return f"{rejects.path} was left as it was (no rejected record was found)"
    found = counted(rejects.written, "rejected record")
    return f"{rejects.path} was left as it was; {partial} holds the {found} this run found"


def _import(
    settings: Settings,
    kind: RecordKind,
    *,
    file: str,
    batch_size: int,
    rows_per_minute: float | None,
    journal: Path | None,
    rejects: Path | None,
    no_wait: bool,
    dry_run: bool,
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
        journal=journal,
    )
    watch = ImportWatch(rows_per_minute or 1200.0, wait=not no_wait)
    stages = DRY_RUN_STAGES if dry_run else STAGES
    display = import_display(watch, Console(stderr=True, highlight=False), stages=stages)
    try:
        if dry_run:
            report = run_async(
                None, partial(validate_only, request, display, on_invalid=rejects_file)
            )
            status = SUCCESS if report.ok else FAILURE
        else:
            report, status = run_async(
                settings,
                partial(
                    _import_with_client, settings, request, display, rows_per_minute, rejects_file
                ),
            )
    except KeyboardInterrupt:
        report = ImportReport.of_progress(
            request, watch.progress, watch.elapsed, error="interrupted"
        )
        _report(report, rejects=rejects, as_json=as_json, settings=settings)
        kept = _left_as_it_was(rejects_file)
        click.echo(
            f"\n{PROG}: interrupted: the server had accepted {counted(report.rows_sent, 'row')} "
            f"in {counted(report.batches, 'batch')}; their jobs go on ({PROG} jobs)"
            + (f"; {kept}" if kept else ""),
            err=True,
        )
        if not dry_run:
            click.echo(f"{PROG}: {resume_hint(journal)}", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    except CliError as exc:
        kept = _left_as_it_was(rejects_file)
        if kept:
            raise type(exc)(f"{exc.format_message()}; {kept}") from None
        raise
    except BaseException:
        _left_as_it_was(rejects_file)
        raise
    _finish(report, status, settings, rejects_file, journal=journal, as_json=as_json)


def _finish(
    report: ImportReport,
    status: int,
    settings: Settings,
    rejects: RejectsFile | None,
    *,
    journal: Path | None,
    as_json: bool,
) -> None:
    """Put the rejects file in place if the run ended, print the summary, exit with ``status``."""
    ended = report.error is None
    if rejects is not None and ended:
        try:
            rejects.keep()
        except OSError as exc:
            _left_as_it_was(rejects)
            raise CliUsageError(f"cannot write the rejects file {rejects.path}: {exc}") from None
    path = rejects.path if rejects is not None else None
    _report(report, rejects=path, as_json=as_json, settings=settings)
    if not ended:
        click.echo(f"{PROG}: error: {report.error}", err=True)
        kept = _left_as_it_was(rejects)
        if kept:
            click.echo(f"{PROG}: {kept}", err=True)
        if report.rows_sent:
            click.echo(f"{PROG}: {resume_hint(journal)}", err=True)
    raise click.exceptions.Exit(status)


def _report(
    report: ImportReport, *, rejects: Path | None, as_json: bool, settings: Settings
) -> None:
    if as_json:
        click.echo(settings.redact(json.dumps(report.to_json(), ensure_ascii=False)))
    else:
        print_summary(output_console(), report, rejects=rejects, redact=settings.redact)
