"""What ``import`` and ``sync`` share: their options, and one run from FILE to the exit status.

Both read FILE (or stdin) with the progress display showing, write ``--rejects`` to a partial
file that is moved into place when the run ends (a run stopped early, by Ctrl-C or an abort,
leaves an existing file as it was and says where the partial one is), print a summary and exit:
0 all sent (and completed), 1 records rejected, a job failed or the server refused a batch, 2
usage or configuration error, 3 the API could not be reached or kept failing, 130 interrupted.

A command says only what differs (:class:`FileCommand`'s hooks): the library call it makes,
what it adds to the summary, and what it tells the user after an early stop.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, ClassVar, NoReturn, TypeVar

import attrs
import click
from rich.console import Console

from .._client import AsyncAnalytex
from .._config import resolve_base_url
from .._errors import ImportAbortedError, ValidationError
from .._models import ImportResult
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
from ._import import RejectionSink, validate_only
from ._progress import DRY_RUN_STAGES, STAGES, ImportWatch, counted
from ._rejects import RejectsFile
from ._report import Action, ImportReport, ImportRequest
from ._server_jobs import spotting_http_client
from ._summary import output_console, print_summary

Decorator = Callable[[Callable[..., None]], Callable[..., None]]
"""A click decorator: an argument, an option or ``pass_obj``."""

C = TypeVar("C", bound="FileCommand")


def file_options(
    *,
    rejects_help: str,
    no_wait_help: str,
    csv_multiline_help: str,
    after_file: Sequence[Decorator] = (),
    before_rejects: Sequence[Decorator] = (),
    before_json: Sequence[Decorator] = (),
) -> Decorator:
    """The FILE argument and the options every command reading a file takes, in help order.

    The command receives the ``Settings`` first, then ``file``, ``batch_size``,
    ``rows_per_minute``, ``rejects``, ``no_wait``, ``as_json``, ``file_format``,
    ``csv_multiline`` and its own options as keywords.

    Args:
        rejects_help: The help of ``--rejects``.
        no_wait_help: The help of ``--no-wait``.
        csv_multiline_help: The help of ``--csv-multiline``.
        after_file: The command's own options, listed right after FILE.
        before_rejects: The command's own options, listed before ``--rejects``.
        before_json: The command's own options, listed before ``--json``.
    """
    options: list[Decorator] = [
        click.argument(
            "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str)
        ),
        *after_file,
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
        *before_rejects,
        click.option(
            "--rejects",
            type=click.Path(dir_okay=False, writable=True, path_type=Path),
            metavar="OUT.ndjson",
            help=rejects_help,
        ),
        click.option("--no-wait", is_flag=True, help=no_wait_help),
        *before_json,
        click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary."),
        click.option(
            "--format",
            "file_format",
            type=click.Choice(["ndjson", "csv"]),
            help="The format, when the file name does not tell (stdin is NDJSON by default).",
        ),
        click.option("--csv-multiline", is_flag=True, help=csv_multiline_help),
        click.pass_obj,
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def open_rejects(path: Path | None) -> RejectsFile | None:
    """The rejects file, opened now: a path that cannot be written fails before the run."""
    if path is None:
        return None
    try:
        return RejectsFile(path).open()
    except OSError as exc:
        raise CliUsageError(f"cannot write the rejects file {path}: {exc}") from None


def left_as_it_was(rejects: RejectsFile | None) -> str:
    """What became of the rejects file of a run that did not end (``""`` without one)."""
    if rejects is None:
        return ""
    partial = rejects.abandon()
    if partial is None:
        return f"{rejects.path} was left as it was (no rejected record was found)"
    found = counted(rejects.written, "rejected record")
    return f"{rejects.path} was left as it was; {partial} holds the {found} this run found"


def print_report(
    report: ImportReport, *, rejects: Path | None, as_json: bool, settings: Settings
) -> None:
    """Print the summary on stdout: for people, or as one JSON object (``--json``)."""
    if as_json:
        click.echo(settings.redact(json.dumps(report.to_json(), ensure_ascii=False)))
    else:
        print_summary(output_console(), report, rejects=rejects, redact=settings.redact)


def add_file_commands(
    group: click.Group,
    options: Decorator,
    command: type[FileCommand],
    kinds: Mapping[str, tuple[RecordKind, str]],
) -> None:
    """Add a subcommand per kind of record to ``group``: ``users``, ``companies``...

    Args:
        group: ``import`` or ``sync``.
        options: The subcommands' options (see ``file_options``).
        command: What a run does (a ``FileCommand`` subclass).
        kinds: The subcommands' names, each with its kind of record and its help.
    """
    for name, (kind, help_text) in kinds.items():
        group.command(name, help=help_text)(options(_runner(command, kind)))


def _runner(command: type[FileCommand], kind: RecordKind) -> Callable[..., None]:
    def run(settings: Settings, **options: Any) -> None:
        command.from_options(settings, kind, **options).run()

    return run


@attrs.frozen(kw_only=True)
class FileCommand:
    """One run of a command reading a file; ``run`` does what every such command does.

    A subclass makes the library call (``send``) and may add to what is said around it.

    Attributes:
        settings: The global options.
        request: What to read and how.
        rows_per_minute: ``--rows-per-minute``, if given.
        rejects: ``--rejects``, if given.
        as_json: ``--json``.
        dry_run: Only read and validate, send nothing (``import --dry-run``).
    """

    settings: Settings
    request: ImportRequest
    rows_per_minute: float | None
    rejects: Path | None
    as_json: bool
    dry_run: bool = False

    action: ClassVar[Action]
    """``"import"`` or ``"sync"``."""

    @classmethod
    def from_options(
        cls: type[C],
        settings: Settings,
        kind: RecordKind,
        *,
        file: str,
        batch_size: int,
        rows_per_minute: float | None,
        rejects: Path | None,
        no_wait: bool,
        as_json: bool,
        file_format: SourceFormat | None,
        csv_multiline: bool,
        **own: Any,
    ) -> C:
        """The run a subcommand's options ask for (see ``file_options``).

        Args:
            settings: The global options.
            kind: What the records are.
            file: FILE, or ``-`` for stdin.
            batch_size: ``--batch-size``.
            rows_per_minute: ``--rows-per-minute``.
            rejects: ``--rejects``.
            no_wait: ``--no-wait``.
            as_json: ``--json``.
            file_format: ``--format``.
            csv_multiline: ``--csv-multiline``.
            **own: The command's own options, fields of the subclass (``journal``, ``state``).
        """
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
            journal=own.get("journal"),
            action=cls.action,
        )
        return cls(
            settings=settings,
            request=request,
            rows_per_minute=rows_per_minute,
            rejects=rejects,
            as_json=as_json,
            **own,
        )

    async def send(
        self, client: AsyncAnalytex, display: ImportDisplay, on_invalid: RejectionSink | None
    ) -> ImportResult:
        """Make the library call with the display showing; its result.

        Args:
            client: The client, open.
            display: Where progress shows (see ``_import.showing_progress``).
            on_invalid: Receives every rejection (the ``--rejects`` file), if any.
        """
        raise NotImplementedError

    def accepted(self, report: ImportReport) -> str:
        """What follows ``the server had accepted N rows`` after a Ctrl-C."""
        raise NotImplementedError

    def hint_after_interrupt(self) -> str | None:
        """A line to add after a Ctrl-C, if any."""
        return None

    def hint_after_stop(self, report: ImportReport) -> str | None:
        """A line to add after the error of a run that stopped early, if any."""
        return None

    def summarize(
        self, report: ImportReport, result: ImportResult | None, rejects: Path | None
    ) -> None:
        """Print the summary of a run that went to its end or stopped on an error."""
        print_report(report, rejects=rejects, as_json=self.as_json, settings=self.settings)

    def run(self) -> None:
        """Run the command, print what it did and exit with its status.

        Raises:
            click.exceptions.Exit: Always, with the exit status.
            CliError: The run could not start or failed outright.
        """
        rejects_file = open_rejects(self.rejects)
        watch = ImportWatch(
            self.rows_per_minute or 1200.0,
            wait=self.request.wait,
            paced=self.request.kind != "event",
        )
        stages = DRY_RUN_STAGES if self.dry_run else STAGES
        display = import_display(watch, Console(stderr=True, highlight=False), stages=stages)
        result: ImportResult | None = None
        try:
            if self.dry_run:
                report = run_async(
                    None, partial(validate_only, self.request, display, on_invalid=rejects_file)
                )
                status = SUCCESS if report.ok else FAILURE
            else:
                report, result, status = run_async(
                    self.settings, partial(self._with_client, display, rejects_file)
                )
        except KeyboardInterrupt:
            self._interrupted(watch, rejects_file)
        except CliError as exc:
            kept = left_as_it_was(rejects_file)
            if kept:
                raise type(exc)(f"{exc.format_message()}; {kept}") from None
            raise
        except BaseException:
            left_as_it_was(rejects_file)
            raise
        self._finish(report, result, status, rejects_file)

    async def _with_client(
        self, display: ImportDisplay, rejects: RejectsFile | None
    ) -> tuple[ImportReport, ImportResult | None, int]:
        settings = self.settings
        options = {} if self.rows_per_minute is None else {"rows_per_minute": self.rows_per_minute}
        settings.check_key()
        base_url = resolve_base_url(settings.region, settings.base_url)
        async with (
            spotting_http_client(base_url, display.watch) as http_client,
            settings.client(http_client=http_client, **options) as client,
        ):
            display.watch.rows_per_minute = client.rows_per_minute
            try:
                result = await self.send(client, display, rejects)
            except ImportAbortedError as exc:
                error = describe(exc, settings)
                report = ImportReport.of_result(self.request, exc.result, error=error)
                return report, exc.result, exit_status(exc)
            except ValidationError as exc:
                if exc.result is None or not exc.result.rows_sent:
                    raise
                error = describe(exc, settings)
                report = ImportReport.of_result(self.request, exc.result, error=error)
                return report, exc.result, USAGE_ERROR
        report = ImportReport.of_result(self.request, result)
        return report, result, SUCCESS if report.ok else FAILURE

    def _interrupted(self, watch: ImportWatch, rejects: RejectsFile | None) -> NoReturn:
        report = ImportReport.of_progress(
            self.request, watch.progress, watch.elapsed, error="interrupted"
        )
        print_report(report, rejects=self.rejects, as_json=self.as_json, settings=self.settings)
        kept = left_as_it_was(rejects)
        click.echo(
            f"\n{PROG}: interrupted: the server had accepted {counted(report.rows_sent, 'row')}"
            + self.accepted(report)
            + (f"; {kept}" if kept else ""),
            err=True,
        )
        hint = self.hint_after_interrupt()
        if hint is not None:
            click.echo(f"{PROG}: {hint}", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None

    def _finish(
        self,
        report: ImportReport,
        result: ImportResult | None,
        status: int,
        rejects: RejectsFile | None,
    ) -> None:
        """Put the rejects file in place if the run ended, print the summary, exit."""
        ended = report.error is None
        if rejects is not None and ended:
            try:
                rejects.keep()
            except OSError as exc:
                left_as_it_was(rejects)
                raise CliUsageError(
                    f"cannot write the rejects file {rejects.path}: {exc}"
                ) from None
        self.summarize(report, result, rejects.path if rejects is not None else None)
        if not ended:
            click.echo(f"{PROG}: error: {report.error}", err=True)
            kept = left_as_it_was(rejects)
            if kept:
                click.echo(f"{PROG}: {kept}", err=True)
            hint = self.hint_after_stop(report)
            if hint is not None:
                click.echo(f"{PROG}: {hint}", err=True)
        raise click.exceptions.Exit(status)
