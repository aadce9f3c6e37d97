"""Data out from the shell: ``export`` (files into a directory), ``exports``, ``lookup NAME``.

``export`` starts an export, shows the server's progress, then the bytes downloaded, and prints
a summary (the files and their sizes) on stdout. ``exports`` lists the account's exports;
``lookup NAME`` writes the lookup's items as NDJSON on stdout. Exit statuses are those of every
command: a failed export exits 1; a file that exists and differs exits 2 (``--overwrite``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._exports._calls import LOOKUPS
from .._exports._models import Export
from .._exports._query import FORMATS
from ._app import CliUsageError, Settings, run_async
from ._progress import count, counted, duration
from ._summary import output_console

__all__ = ["export", "exports", "lookup"]

PLAIN_INTERVAL = 5.0
"""Seconds between two progress lines while nothing changes, off a terminal."""

appex_option = click.option(
    "--appex-url",
    envvar="ANALYTEX_APPEX_URL",
    show_envvar=True,
    metavar="URL",
    help="The export API's base URL (default: --base-url when given, else the region's).",
)


def _bytes(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"  # pragma: no cover - the loop returns


class ExportDisplay:
    """Progress on stderr: the server's (status and percentage), then the bytes downloaded.

    One line per change, and at most one every few seconds while nothing changes; on a terminal
    the last line is redrawn in place.

    Args:
        console: Where to draw (stderr).
        redact: Removes the API key from what the server said.
        clock: Seconds, for the spacing of the lines.
    """

    def __init__(
        self,
        console: Console,
        redact: Callable[[str], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.redact = redact
        self.clock = clock
        self.started = clock()
        self.downloaded = 0
        self._last: tuple[str, float] | None = None
        self._live = console.is_terminal and not console.is_dumb_terminal

    def __enter__(self) -> ExportDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live:
            self.console.print()

    def _show(self, text: str, *, force: bool = False) -> None:
        now = self.clock()
        last = self._last
        if not force and last is not None and last[0] == text and now - last[1] < PLAIN_INTERVAL:
            return
        self._last = (text, now)
        line = f"analytex-async: {text} ({duration(now - self.started)})"
        if self._live:
            self.console.print(Text(line), end="\r", soft_wrap=True)
        else:
            self.console.print(Text(line), soft_wrap=True)

    def server(self, export: Export) -> None:
        """Show the server's progress."""
        progress = "" if export.progress is None else f", {export.progress:g}%"
        chunks = ""
        if export.chunks_total:
            chunks = f", {export.chunks_completed or 0}/{export.chunks_total} chunks"
        self._show(self.redact(f"export {export.job_id}: {export.status}{progress}{chunks}"))

    def saved(self, size: int) -> None:
        """Count a downloaded piece."""
        self.downloaded += size
        self._show(f"downloaded {_bytes(self.downloaded)}")


async def _export(
    settings: Settings,
    query: dict[str, Any],
    *,
    appex_url: str | None,
    output: Path,
    overwrite: bool,
    display: ExportDisplay,
) -> tuple[Export, list[Path]]:
    async with settings.client(appex_url=appex_url) as client:
        started = await client.start_export(**query)
        display.server(started)
        done = await client.wait_for_export(started, on_progress=display.server)
        paths = await client.download_export(
            done, output, overwrite=overwrite, on_bytes=display.saved
        )
        return done, paths


@click.command()
@click.option("--start", required=True, metavar="WHEN", help="First moment (ISO 8601; UTC).")
@click.option("--end", required=True, metavar="WHEN", help="Moment after the last (exclusive).")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    default="ndjson",
    show_default=True,
    help="The files' format (parquet, avro: their extras).",
)
@click.option(
    "--event-type",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="Only this event type (repeatable): track, identify_user, page_view, ...",
)
@click.option("--user-id", "user_ids", multiple=True, metavar="ID", help="Only this user.")
@click.option("--company-id", "company_ids", multiple=True, metavar="ID", help="Only this company.")
@click.option("--segment", "segment_id", metavar="ID", help="Only users of this segment.")
@click.option("--output", "-o", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the files (created if needed).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace files of the same name that differ.")
@appex_option
@click.pass_obj
def export(settings: Settings, /, **options: Any) -> None:
    """Export events into files in DIR: progress on stderr, the files on stdout.

    A rerun skips the files already downloaded whole. Exit status 1 if the export failed.
    """
    output: Path = options["output"]
    query = {
        "start": options["start"],
        "end": options["end"],
        "format": options["file_format"],
        "segment_id": options["segment_id"],
    }
    for name in ("event_types", "user_ids", "company_ids"):
        query[name] = list(options[name]) or None
    err = Console(stderr=True, highlight=False)
    with ExportDisplay(err, settings.redact) as display:
        try:
            done, paths = run_async(
                settings,
                partial(
                    _export,
                    settings,
                    query,
                    appex_url=options["appex_url"],
                    output=output,
                    overwrite=options["overwrite"],
                    display=display,
                ),
            )
        except (FileExistsError, ImportError) as exc:
            hint = " (pass --overwrite to replace it)" if isinstance(exc, FileExistsError) else ""
            raise CliUsageError(f"{exc}{hint}") from None
    total = 0
    for path in paths:
        size = path.stat().st_size
        total += size
        click.echo(f"{path}\t{size}")  # one file a line, tab-separated: for scripts
    click.echo(
        f"export {settings.redact(done.job_id)}: {counted(len(paths), 'file')}, "
        f"{_bytes(total)} in {output}",
        err=True,
    )


def _exports_table(listed: list[Export], redact: Callable[[str], str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("EXPORT ID", "STATUS", "PROGRESS", "STARTED", "ENDED"):
        table.add_column(name, no_wrap=name == "EXPORT ID")
    for item in listed:
        progress = "" if item.progress is None else f"{item.progress:g}%"
        started = item.start_time.strftime("%Y-%m-%d %H:%M:%S") if item.start_time else ""
        ended = item.end_time.strftime("%Y-%m-%d %H:%M:%S") if item.end_time else ""
        table.add_row(redact(item.job_id), redact(item.status), progress, started, ended)
    return table


def _export_json(item: Export) -> dict[str, Any]:
    return {
        "job_id": item.job_id,
        "status": item.status,
        "progress": item.progress,
        "start_time": item.start_time.isoformat() if item.start_time else None,
        "end_time": item.end_time.isoformat() if item.end_time else None,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the exports as JSON.")
@appex_option
@click.pass_obj
def exports(settings: Settings, as_json: bool, appex_url: str | None) -> None:
    """List the account's exports."""

    async def fetch() -> list[Export]:
        async with settings.client(appex_url=appex_url) as client:
            return await client.list_exports()

    listed = run_async(settings, fetch)
    if as_json:
        click.echo(settings.redact(json.dumps([_export_json(item) for item in listed])))
    elif not listed:
        click.echo("no exports")
    else:
        output_console().print(_exports_table(listed, settings.redact))


@click.command()
@click.argument("name", type=click.Choice(LOOKUPS))
@appex_option
@click.pass_obj
def lookup(settings: Settings, name: str, appex_url: str | None) -> None:
    """Write a lookup's items (every page) as NDJSON on stdout."""

    async def fetch() -> int:
        seen = 0
        async with settings.client(appex_url=appex_url) as client:
            async for item in client.lookup(name):
                click.echo(settings.redact(json.dumps(item, ensure_ascii=False, default=str)))
                seen += 1
        return seen

    items = run_async(settings, fetch)
    click.echo(f"{count(items)} {name} item{'' if items == 1 else 's'}", err=True)
