"""The command line's commands (click). Every error is one line on stderr, never the key.

Exit status: 0 success; 1 the work ran but records were rejected, a job failed or the server
failed; 2 usage or configuration error (bad option, missing file, no or wrong API key);
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio  # the command line runs on asyncio: only its CancelledError is named
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import anyio
import attrs
import click
from rich.console import Console

from .._client import AsyncAnalytex
from .._config import is_loopback_host
from .._errors import (
    AnalytexError,
    AuthenticationError,
    ConfigurationError,
    ImportAbortedError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from .._models import Job, JobStatus
from .._types import SourceFormat
from .._version import __version__
from ._import import (
    ImportReport,
    ImportRequest,
    job_json,
    jobs_table,
    journal_supported,
    output_console,
    print_summary,
    resume_hint,
    run_import,
    validate_only,
    write_rejects,
)
from ._progress import (
    DRY_RUN_STAGES,
    STAGES,
    ImportDisplay,
    ImportWatch,
    JobDisplay,
    counted,
    import_display,
)

T = TypeVar("T")

PROG = "analytex-async"
SUCCESS = 0
FAILURE = 1
USAGE_ERROR = 2
INTERRUPTED = 130
"""The shell's status for a program stopped by SIGINT (128 + 2)."""

JOB_POLL_FIRST = 1.0
JOB_POLL_MIN = 0.25
JOB_POLL_MAX = 5.0


def one_line(text: str) -> str:
    """Collapse white space, so that a message is a single line."""
    return " ".join(text.split())


class CliError(click.ClickException):
    """An error reported as ``analytex-async: error: ...`` on one line; exit status 1.

    Args:
        message: What went wrong (collapsed to one line).
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error's one line on stderr."""
        click.echo(f"{PROG}: error: {self.format_message()}", file=file, err=True)


class CliUsageError(CliError):
    """A usage or configuration error: the command or its settings must change; exit status 2."""

    exit_code = USAGE_ERROR


def cli_error(message: str, status: int) -> CliError:
    """The one-line error for an exit status.

    Args:
        message: What went wrong.
        status: 2 for usage or configuration errors, else 1.
    """
    return CliUsageError(message) if status == USAGE_ERROR else CliError(message)


@attrs.frozen
class Settings:
    """The global options: where the API is and the key to it.

    Attributes:
        api_key: The API key (never printed).
        base_url: The API's base URL, or ``None`` for the region's.
        region: ``"us"`` or ``"eu"``.
    """

    api_key: str | None = attrs.field(repr=False)
    base_url: str | None = None
    region: str = "us"

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``, wherever it came from."""
        if self.api_key and self.api_key in text:
            return text.replace(self.api_key, "***")
        return text

    def client(self, **options: Any) -> AsyncAnalytex:
        """A client for these settings.

        Args:
            **options: More ``AsyncAnalytex`` options (``rows_per_minute``).

        Raises:
            CliError: There is no API key (exit status 2).
            ConfigurationError: A setting is wrong.
        """
        if not self.api_key:
            raise CliUsageError(
                "no API key: pass --api-key KEY or set the ANALYTEX_API_KEY environment variable"
            )
        return AsyncAnalytex(
            api_key=self.api_key, base_url=self.base_url, region=self.region, **options
        )


def exit_status(error: BaseException) -> int:
    """The exit status for a library error: 2 when the command or its settings must change.

    Args:
        error: What the library raised.
    """
    usage = (
        ConfigurationError,
        ValidationError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
    )
    if isinstance(error, ImportAbortedError):
        return exit_status(error.__cause__) if error.__cause__ is not None else FAILURE
    return USAGE_ERROR if isinstance(error, usage) else FAILURE


def _run_interruptibly(work: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run`` on asyncio, where Ctrl-C is always a ``KeyboardInterrupt``.

    On Python 3.10, a Ctrl-C during ``anyio.run`` can surface as the root task's
    ``CancelledError`` instead (3.11's runner turns it back into ``KeyboardInterrupt``); nothing
    else cancels the root task, so that is what it means.
    """
    try:
        return anyio.run(work)
    except asyncio.CancelledError as exc:
        raise KeyboardInterrupt from exc


def run_async(settings: Settings | None, work: Callable[[], Awaitable[T]]) -> T:
    """Run async work on asyncio, turning the library's errors into one-line ``CliError``s.

    Args:
        settings: The global options (to redact the key), if the work uses them.
        work: The work to run.

    Returns:
        What the work returned.

    Raises:
        CliError: The library raised one of its errors.
    """
    try:
        return _run_interruptibly(work)
    except (AnalytexError, TimeoutError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
            message += " (check the API key)"
        if settings is not None:
            message = settings.redact(message)
        raise cli_error(message, exit_status(exc)) from None


class AnalytexCommandLine(click.Group):
    """The top-level group: every error (click's own included) becomes one line on stderr.

    click reports usage errors in several lines (usage, hint, blank line, error); this group
    turns each into ``analytex-async: error: ... (see 'COMMAND --help')``, reports anything
    unexpected the same way instead of a traceback, redacts the API key from every message, and
    exits 130 on Ctrl-C.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the global options, reporting a usage error on one line."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise _on_one_line(exc, None) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, reporting any error on one line."""
        # The settings exist once the group's callback has run: look them up when reporting.
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as exc:
            raise _on_one_line(exc, ctx.find_object(Settings)) from None
        except KeyboardInterrupt:
            click.echo(f"\n{PROG}: interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except Exception as exc:
            message = f"unexpected {type(exc).__name__}: {exc}"
            settings = ctx.find_object(Settings)
            if settings is not None:
                message = settings.redact(message)
            raise CliError(message) from None


def _on_one_line(exc: click.ClickException, settings: Settings | None) -> click.ClickException:
    if type(exc).__name__ == "NoArgsIsHelpError":
        return exc  # the help text itself, not an error message
    message = exc.format_message()
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message = f"{message} (see '{exc.ctx.command_path} --help')"
    if settings is not None:
        message = settings.redact(message)
    return cli_error(message, exc.exit_code)


@click.group(
    cls=AnalytexCommandLine,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name=PROG)
@click.option(
    "--api-key",
    envvar="ANALYTEX_API_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The API key. Prefer the environment variable: command-line arguments are visible "
    "to other users of the machine.",
)
@click.option(
    "--base-url",
    envvar="ANALYTEX_BASE_URL",
    show_envvar=True,
    metavar="URL",
    help="The API's base URL (default: the region's). Plain http:// only to loopback.",
)
@click.option(
    "--region",
    envvar="ANALYTEX_REGION",
    show_envvar=True,
    type=click.Choice(["us", "eu"], case_sensitive=False),
    default="us",
    show_default=True,
    help="The API region, when no base URL is given.",
)
@click.pass_context
def cli(ctx: click.Context, api_key: str | None, base_url: str | None, region: str) -> None:
    """analytex-async: the Analytex server API from your shell.

    Start with `analytex-async demo`: it imports generated users into a local emulator, with
    no account and no network.

    Exit status: 0 success, 1 the work ran but records were rejected or a job failed, 2 usage or
    configuration error, 130 interrupted.
    """
    ctx.obj = Settings(api_key or None, base_url or None, region.lower())


# -- demo ---------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--users",
    default=50_000,
    show_default=True,
    type=click.IntRange(100, 1_000_000),
    help="How many users to generate.",
)
def demo(users: int) -> None:
    """Import generated users into a local emulator: the product at work, no account needed.

    Starts the emulator on a free loopback port, writes a sample file with a few invalid
    records, imports it through the real pipeline (validation, batches, rate governor, NDJSON
    uploads, jobs) with the progress display, and prints the summary.
    """
    try:
        import uvicorn  # noqa: F401, PLC0415 - needs the optional `emulator` extra

        from ._demo import DEMO_RATE, run_demo  # noqa: PLC0415
    except ImportError as exc:
        raise CliUsageError(
            f'the demo needs {exc.name}: pip install "analytex-async[emulator]"'
        ) from None
    out = output_console()
    watch = ImportWatch(DEMO_RATE)
    display = import_display(watch, Console(stderr=True, highlight=False))
    try:
        outcome = run_async(None, partial(run_demo, out, display, users=users))
    except KeyboardInterrupt:
        click.echo(
            f"\n{PROG}: interrupted: the demo stopped after "
            f"{counted(watch.progress.rows_sent, 'row')} were sent",
            err=True,
        )
        raise click.exceptions.Exit(INTERRUPTED) from None
    if not outcome.ok:
        raise CliError(
            f"the demo did not go as planned: {outcome.report.rows_rejected} rows rejected "
            f"(expected {outcome.planted}), {len(outcome.report.failed_jobs)} job(s) failed"
        )


# -- identify -----------------------------------------------------------------------------------


def parse_metadata(pairs: Sequence[str]) -> dict[str, Any]:
    """Read ``--metadata`` options: ``KEY=VALUE`` (a string) or ``KEY:=JSON`` (any JSON value).

    Args:
        pairs: The options' values.

    Returns:
        The metadata.

    Raises:
        click.BadParameter: A pair has no ``=``, no key, or a value that is not JSON.
    """
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == ":":
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--metadata'")
        if key.endswith(":"):
            key = key[:-1]
            try:
                metadata[key] = json.loads(value)
            except ValueError:
                raise click.BadParameter(
                    f"{pair!r}: the value after ':=' is not JSON", param_hint="'--metadata'"
                ) from None
        else:
            metadata[key] = value
    return metadata


@cli.command()
@click.argument("user_id")
@click.option(
    "--metadata",
    "-m",
    multiple=True,
    metavar="KEY=VALUE",
    help="A profile property, repeatable. KEY:=JSON sets a number, boolean, null or object.",
)
@click.option("--company", metavar="ID", help="The id of the user's company.")
@click.pass_obj
def identify(
    settings: Settings, user_id: str, metadata: tuple[str, ...], company: str | None
) -> None:
    """Identify one user and update their profile (POST /v1/identify)."""
    properties = parse_metadata(metadata)

    async def send() -> None:
        async with settings.client() as client:
            await client.identify(user_id, metadata=properties or None, company=company)

    run_async(settings, send)
    click.echo(f"identified {user_id}" + (f" (company {company})" if company else ""))


# -- jobs ---------------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.pass_obj
def jobs(settings: Settings, as_json: bool) -> None:
    """List the account's background jobs."""

    async def fetch() -> list[Job]:
        async with settings.client() as client:
            return await client.list_jobs()

    listed = run_async(settings, fetch)
    if as_json:
        click.echo(settings.redact(json.dumps([job_json(job) for job in listed])))
    elif not listed:
        click.echo("no jobs")
    else:
        output_console().print(jobs_table(listed, settings.redact))


def job_poll_interval(job: Job, seen: tuple[float, int] | None, now: float) -> float:
    """Seconds until the next look at a job: half its expected remaining time, 0.25 to 5 s.

    The server's pace is measured from the job itself (rows done since it was first seen), so
    it holds for the real API and an accelerated emulator alike; 1 s until it can be measured.

    Args:
        job: The job as just fetched.
        seen: When the job was first seen processing, and its rows done then.
        now: The time now.
    """
    done = job.completed_rows or 0
    if seen is None or job.total_rows is None or done <= seen[1] or now <= seen[0]:
        return JOB_POLL_FIRST
    per_second = (done - seen[1]) / (now - seen[0])
    remaining = max(job.total_rows - done, 0) / per_second
    return min(max(remaining / 2, JOB_POLL_MIN), JOB_POLL_MAX)


async def _watch_job(settings: Settings, job_id: str, wait: bool, console: Console) -> Job:
    async with settings.client() as client:
        job = await client.get_job(job_id)
        if not wait or job.is_terminal:
            return job
        seen: tuple[float, int] | None = None
        with JobDisplay(console, settings.redact(job_id)) as display:
            while not job.is_terminal:
                display.show(job)
                now = anyio.current_time()
                if seen is None and job.status is JobStatus.PROCESSING:
                    seen = (now, job.completed_rows or 0)
                await anyio.sleep(job_poll_interval(job, seen, now))
                job = await client.get_job(job_id)
            display.show(job)
    return job


@cli.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait until the job completes or fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_obj
def job(settings: Settings, job_id: str, wait: bool, as_json: bool) -> None:
    """Show a background job; exit status 1 if it failed."""
    err = Console(stderr=True, highlight=False)
    found = run_async(settings, partial(_watch_job, settings, job_id, wait, err))
    if as_json:
        click.echo(settings.redact(json.dumps(job_json(found))))
    else:
        output_console().print(jobs_table([found], settings.redact))
    if found.status is JobStatus.FAILED:
        reason = found.raw.get("error")
        detail = f": {reason}" if isinstance(reason, str) and reason else ""
        raise CliError(settings.redact(f"job {found.job_id} failed{detail}"))


# -- import -------------------------------------------------------------------------------------


@cli.group("import")
def import_group() -> None:
    """Import users or companies from a file or stdin, through the governed bulk pipeline.

    FILE is NDJSON (.ndjson, .jsonl) or CSV (.csv), optionally gzipped (.gz), or - for stdin
    (NDJSON unless --format csv; gzip is recognised). Every record is validated first; invalid
    ones are reported (--rejects saves them), valid ones go in batches at the rate, one job at a
    time. Exit status: 0 all sent (and completed), 1 records rejected or a job failed, 2 usage or
    configuration error, 130 interrupted.
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
            help="Write each rejected record, with its reason and line, to this file.",
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


async def _import_with_client(
    settings: Settings,
    request: ImportRequest,
    display: ImportDisplay,
    rows_per_minute: float | None,
) -> tuple[ImportReport, int]:
    options = {} if rows_per_minute is None else {"rows_per_minute": rows_per_minute}
    async with settings.client(**options) as client:
        display.watch.rows_per_minute = client.rows_per_minute
        try:
            result = await run_import(client, request, display)
        except ImportAbortedError as exc:
            error = settings.redact(one_line(str(exc)))
            return ImportReport.of_result(request, exc.result, error=error), exit_status(exc)
        except ValidationError as exc:
            if exc.result is None or not exc.result.rows_sent:
                raise
            error = settings.redact(one_line(str(exc)))
            return ImportReport.of_result(request, exc.result, error=error), USAGE_ERROR
    report = ImportReport.of_result(request, result)
    return report, SUCCESS if report.ok else FAILURE


def _import(
    settings: Settings,
    kind: Any,
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
) -> None:
    if journal is not None and not dry_run and not journal_supported():
        raise CliUsageError("--journal is not available yet")
    if rejects is not None:
        try:
            rejects.write_text("", encoding="utf-8")  # fail now, not after the import
        except OSError as exc:
            raise CliUsageError(f"cannot write the rejects file {rejects}: {exc}") from None
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
        journal=journal,
    )
    watch = ImportWatch(rows_per_minute or 1200.0, wait=not no_wait)
    stages = DRY_RUN_STAGES if dry_run else STAGES
    display = import_display(watch, Console(stderr=True, highlight=False), stages=stages)
    try:
        if dry_run:
            report = run_async(None, partial(validate_only, request, display))
            status = SUCCESS if report.ok else FAILURE
        else:
            report, status = run_async(
                settings, partial(_import_with_client, settings, request, display, rows_per_minute)
            )
    except KeyboardInterrupt:
        report = ImportReport.of_progress(
            request, watch.progress, watch.elapsed, error="interrupted"
        )
        _report(report, rejects=rejects, as_json=as_json, settings=settings)
        click.echo(
            f"\n{PROG}: interrupted: the server had accepted {counted(report.rows_sent, 'row')} "
            f"in {counted(report.batches, 'batch')}; their jobs go on ({PROG} jobs)"
            + ("" if rejects is None else "; the rejects file was not written"),
            err=True,
        )
        if not dry_run:
            click.echo(f"{PROG}: {resume_hint(journal)}", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    if rejects is not None:
        write_rejects(rejects, report.rejected)
    _report(report, rejects=rejects, as_json=as_json, settings=settings)
    if report.error is not None:
        click.echo(f"{PROG}: error: {report.error}", err=True)
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


# -- emulator -----------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--rows-per-minute",
    default=1200.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How fast bulk jobs are processed.",
)
def emulator(host: str, port: int, rows_per_minute: float) -> None:
    """Serve a local Analytex emulator (any non-empty API key is accepted)."""
    try:
        from ..emulator import run  # noqa: PLC0415 - needs the optional `emulator` extra
    except ImportError as exc:
        raise CliUsageError(
            f'the emulator needs {exc.name}: pip install "analytex-async[emulator]"'
        ) from None
    if not is_loopback_host(host):
        click.echo(
            f"warning: serving on {host}, reachable beyond this machine; the emulator "
            "accepts any API key",
            err=True,
        )
    click.echo(f"Analytex emulator on http://{host}:{port} (Ctrl-C to stop)", err=True)
    try:
        run(host=host, port=port, rows_per_minute=rows_per_minute)
    except KeyboardInterrupt:
        click.echo("emulator stopped", err=True)
