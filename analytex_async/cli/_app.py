"""The ``analytex-async`` click group: global options, one-line errors, exit statuses.

Every error is one line on stderr, never the key. Exit status: 0 success; 1 the work ran but
records were rejected, a job failed or the governor's store is out; 2 usage or configuration
error (bad option, missing file, no API key or one the server refuses); 3 the API could not be
reached or kept failing (connection, timeout, 5xx after the retries); 130 interrupted (Ctrl-C).
The commands themselves live in ``_commands`` and ``_import_command``.
"""

from __future__ import annotations

import asyncio  # the command line runs on asyncio: only its CancelledError is named
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from types import FrameType
from typing import IO, Any, TypeVar

import anyio
import attrs
import click

from .._client import AsyncAnalytex
from .._config import redact
from .._errors import (
    AnalytexError,
    APIConnectionError,
    APIResponseValidationError,
    AuthenticationError,
    ConfigurationError,
    ImportAbortedError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)
from .._version import __version__

T = TypeVar("T")

PROG = "analytex-async"
SUCCESS = 0
FAILURE = 1
USAGE_ERROR = 2
UNREACHABLE = 3
"""The API could not be reached or kept failing: the same command may work later."""
INTERRUPTED = 130
"""The shell's status for a program stopped by SIGINT (128 + 2)."""

CTRL_C_MAY_CANCEL_THE_ROOT = sys.version_info < (3, 11)
"""Whether a Ctrl-C can surface from ``anyio.run`` as the root task's ``CancelledError``.

The runner (3.11's ``asyncio.Runner``, or anyio's backport of it on 3.10) answers the first
Ctrl-C by cancelling the root task, then turns the ``CancelledError`` back into a
``KeyboardInterrupt`` with ``Task.uncancel``, which only 3.11 has.
"""


def one_line(text: str) -> str:
    """Collapse white space, so that a message is a single line."""
    return " ".join(text.split())


PYTHON_TO_OPTIONS: tuple[tuple[str, str], ...] = (
    ("field 'source': ", ""),  # the FILE argument, which the message names anyway
    ("format='ndjson' or 'csv'", "--format ndjson or --format csv"),
    ("format='ndjson'", "--format ndjson"),
    ("format='csv'", "--format csv"),
    ('format="ndjson"', "--format ndjson"),
    ('format="csv"', "--format csv"),
    ("csv_multiline=True, or --csv-multiline on the command line", "--csv-multiline"),
    ("csv_multiline=True", "--csv-multiline"),
)
"""Library wording that names a keyword argument, and the option a person types instead."""


def in_cli_words(text: str) -> str:
    """``text`` with the library's keyword arguments named as the command line's options.

    The library's messages speak to Python callers (``pass format='csv'``); a person at the
    shell passes ``--format csv``.

    Args:
        text: A message from the library.
    """
    for python, option in PYTHON_TO_OPTIONS:
        text = text.replace(python, option)
    return text


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


class CliUnreachableError(CliError):
    """The API could not be reached or kept failing; exit status 3."""

    exit_code = UNREACHABLE


def cli_error(message: str, status: int) -> CliError:
    """The one-line error for an exit status.

    Args:
        message: What went wrong.
        status: 2 for usage or configuration errors, 3 when the API could not be reached or
            kept failing, else 1.
    """
    if status == USAGE_ERROR:
        return CliUsageError(message)
    if status == UNREACHABLE:
        return CliUnreachableError(message)
    return CliError(message)


class StderrLog(logging.Handler):
    """The SDK's log records on stderr, one line each: ``analytex-async: warning: ...``.

    Args:
        level: The least level shown.
        redact: Removes the API key from a line.
    """

    def __init__(self, level: int, redact: Callable[[str], str]) -> None:
        super().__init__(level)
        self._redact = redact

    def emit(self, record: logging.LogRecord) -> None:
        """Print one record, on one line, without the key."""
        try:
            line = self._redact(one_line(record.getMessage()))
            click.echo(f"{PROG}: {record.levelname.lower()}: {line}", err=True)
        except Exception:  # logging's own policy: report, never raise
            self.handleError(record)


def show_logs(verbosity: int, redact: Callable[[str], str]) -> Callable[[], None]:
    """Show the SDK's logs on stderr as ``-v`` asks, for the life of the command.

    Without ``-v`` only errors: a retry is the SDK's business, and the command's own error is
    its one line (without a handler of ours, Python would print every WARNING, such as each
    retry, on stderr before it). ``-v`` adds warnings (retries) and INFO; ``-vv`` DEBUG.

    Args:
        verbosity: How many ``-v`` were given.
        redact: Removes the API key from a line.

    Returns:
        What puts the logger back as it was.
    """
    logger = logging.getLogger("analytex_async")
    level = (logging.ERROR, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG
    handler = StderrLog(level, redact)
    previous = logger.level
    logger.addHandler(handler)
    if verbosity:
        logger.setLevel(level)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return restore


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
        return redact(text, self.api_key)

    def check_key(self) -> None:
        """Refuse to go on without an API key.

        Raises:
            CliError: There is no API key (exit status 2).
        """
        if not self.api_key:
            raise CliUsageError(
                "no API key: pass --api-key KEY or set the ANALYTEX_API_KEY environment variable"
            )

    def client(self, **options: Any) -> AsyncAnalytex:
        """A client for these settings.

        Args:
            **options: More ``AsyncAnalytex`` options (``rows_per_minute``).

        Raises:
            CliError: There is no API key (exit status 2).
            ConfigurationError: A setting is wrong.
        """
        self.check_key()
        return AsyncAnalytex(
            api_key=self.api_key, base_url=self.base_url, region=self.region, **options
        )


USAGE_ERRORS = (
    ConfigurationError,
    ValidationError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
)
"""The command or its settings must change (a key the server refuses included): exit 2."""
API_OUTAGES = (
    APIConnectionError,  # APITimeoutError included
    InternalServerError,
    RateLimitError,
    APIResponseValidationError,
)
"""The API could not be reached or kept failing after the retries: exit 3."""


def exit_status(error: BaseException) -> int:
    """The exit status for a library error.

    2 when the command or its settings must change; 3 when the API could not be reached or
    kept failing (a script may run the same command later); 1 otherwise (the server refused a
    batch, a job failed, the governor's store is out). An aborted import takes its cause's.

    Args:
        error: What the library raised.
    """
    if isinstance(error, ImportAbortedError):
        return exit_status(error.__cause__) if error.__cause__ is not None else FAILURE
    if isinstance(error, USAGE_ERRORS):
        return USAGE_ERROR
    if isinstance(error, API_OUTAGES):
        return UNREACHABLE
    return FAILURE


class _CtrlCWitness:
    """Notes whether a SIGINT reached the runner while the work ran.

    It wraps the runner's SIGINT handler (which stays in charge), so that a root
    ``CancelledError`` is taken for a Ctrl-C only when there was one. Signal handlers can only
    be set in the main thread; elsewhere there is no Ctrl-C to note.
    """

    def __init__(self) -> None:
        self.seen = False
        self._note: Callable[[int, FrameType | None], Any] | None = None

    async def watching(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` with the runner's SIGINT handler wrapped (the root task runs this)."""
        runners = signal.getsignal(signal.SIGINT)
        if callable(runners) and threading.current_thread() is threading.main_thread():

            def note(signum: int, frame: FrameType | None) -> Any:
                self.seen = True
                return runners(signum, frame)

            signal.signal(signal.SIGINT, note)
            self._note = note
        return await work()

    def restore(self, handler: Any) -> None:
        """Put back the handler from before the run, unless something else replaced ours."""
        if self._note is not None and signal.getsignal(signal.SIGINT) is self._note:
            signal.signal(signal.SIGINT, handler)


def describe(error: BaseException, settings: Settings | None) -> str:
    """A library error as the command line says it: one line, its options' words, no key.

    Args:
        error: What the library raised.
        settings: The global options (to redact the key), if the work used them.
    """
    message = in_cli_words(one_line(str(error) or type(error).__name__))
    refused = error.__cause__ if isinstance(error, ImportAbortedError) else error
    if isinstance(refused, (AuthenticationError, PermissionDeniedError)):
        message += " (check the API key)"
    return settings.redact(message) if settings is not None else message


def run_interruptibly(work: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run`` on asyncio, where a Ctrl-C is always a ``KeyboardInterrupt``.

    Raises:
        KeyboardInterrupt: Ctrl-C, however the runner reported it.
        CliError: The root task was cancelled by something other than a Ctrl-C (exit 1).
    """
    if not CTRL_C_MAY_CANCEL_THE_ROOT:
        try:
            return anyio.run(work)
        except asyncio.CancelledError:
            raise CliError("unexpected CancelledError: the work was cancelled") from None
    witness = _CtrlCWitness()
    before = signal.getsignal(signal.SIGINT)
    try:
        return anyio.run(partial(witness.watching, work))
    except asyncio.CancelledError as exc:
        if witness.seen:
            raise KeyboardInterrupt from exc
        raise CliError("unexpected CancelledError: the work was cancelled") from None
    finally:
        witness.restore(before)


def run_async(settings: Settings | None, work: Callable[[], Awaitable[T]]) -> T:
    """Run async work on asyncio, turning the library's errors into one-line ``CliError``s.

    Args:
        settings: The global options (to redact the key), if the work uses them.
        work: The work to run.

    Returns:
        What the work returned.

    Raises:
        CliError: The library raised one of its errors.
        KeyboardInterrupt: Ctrl-C.
    """
    try:
        return run_interruptibly(work)
    except (AnalytexError, TimeoutError) as exc:
        raise cli_error(describe(exc, settings), exit_status(exc)) from None


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
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Show retries and INFO logs on stderr (-vv: debug too). Without it, only errors.",
)
@click.pass_context
def cli(
    ctx: click.Context, api_key: str | None, base_url: str | None, region: str, verbose: int
) -> None:
    """analytex-async: the Analytex server API from your shell.

    Start with `analytex-async demo`: it imports generated users into a local emulator, with
    no account and no network.

    Exit status: 0 success, 1 the work ran but records were rejected or a job failed, 2 usage or
    configuration error (a key the server refuses included), 3 the API could not be reached or
    kept failing, 130 interrupted.
    """
    settings = Settings(api_key or None, base_url or None, region.lower())
    ctx.obj = settings
    ctx.call_on_close(show_logs(verbose, settings.redact))
