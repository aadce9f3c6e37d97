"""Running an import (or a dry run) for the command line, with the progress display showing.

The import itself is the library's: ``AsyncAnalytex.import_users`` (``_companies``,
``_events``) with the display's ``update`` as ``on_progress`` and, with ``--rejects``, the
rejects file as ``on_invalid``. ``--dry-run`` runs the pipeline's own first steps (read the
source, validate each record, encode it, check it fits a batch) and stops before anything is
sent. Either ends in an :class:`~._report.ImportReport` or the library's ``ImportResult``.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .._bulk._batching import Batcher
from .._bulk._files import open_decompressed
from .._bulk._frames import parquet_row_count
from .._bulk._records import check_record
from .._bulk._sources import read_source
from .._client import AsyncAnalytex
from .._constants import MAX_REJECTIONS_KEPT
from .._models import ImportProgress, ImportResult, Job, Rejection
from .._types import SourceFormat
from ._display import ImportDisplay
from ._report import ImportReport, ImportRequest
from ._server_jobs import keep_jobs_fresh

T = TypeVar("T")

RejectionSink = Callable[[Rejection], None]
"""Receives every rejection as it is found (the ``--rejects`` file)."""

DRY_RUN_REPORT_EVERY = 500
"""Records between two progress reports of a dry run."""


async def showing_progress(
    display: ImportDisplay,
    request: ImportRequest,
    work: Callable[[], Awaitable[T]],
    get_job: Callable[[str], Awaitable[Job]] | None = None,
) -> T:
    """Run ``work`` with the display showing, and the source counted for the ETA meanwhile.

    With ``get_job``, the import's unfinished jobs are also looked at every few seconds, so the
    display shows what the server completed between the pipeline's own polls.
    """
    outcome: list[T] = []
    failure: Exception | None = None
    stop_counting = threading.Event()
    display.watch.restart()
    with display:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(display.keep_showing)
            if get_job is not None:
                tasks.start_soon(keep_jobs_fresh, display.watch, get_job, display.redraw)
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

    A Parquet file's count is read from its footer. Otherwise, counts non-blank lines (less
    the header for CSV), reading the file a MiB at a time and giving up as soon as ``stop`` is
    set. Exact for NDJSON and Parquet; an estimate for CSV files whose quoted cells span lines.
    The import itself never relies on it.

    Args:
        path: The file (gzip-compressed or not), or a ``.parquet`` file.
        format: ``"ndjson"`` or ``"csv"``; ``None`` to tell from the name.
        stop: Set when the count is no longer wanted.

    Returns:
        The number of records, or ``None`` when stopped or the file cannot be read.
    """
    if path.name.lower().endswith(".parquet"):
        return parquet_row_count(path)
    name = path.name.lower().removesuffix(".gz")
    is_csv = format == "csv" or (format is None and name.endswith(".csv"))
    records = 0
    tail = b""
    try:
        with open_decompressed(path) as stream:
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


def library_options(
    request: ImportRequest, display: ImportDisplay, on_invalid: RejectionSink | None
) -> dict[str, Any]:
    """The keyword arguments of the library's import (and sync) call for ``request``.

    Args:
        request: What to import and how.
        display: Where progress shows (``on_progress``).
        on_invalid: Receives every rejection, if anything should.
    """
    options: dict[str, Any] = {
        "batch_size": request.batch_size,
        "wait": request.wait,
        "on_progress": display.update,
        "format": request.format,
        "csv_multiline": request.csv_multiline,
    }
    if request.journal is not None:
        options["journal"] = request.journal
    if on_invalid is not None:
        options["on_invalid"] = on_invalid
    return options


async def run_import(
    client: AsyncAnalytex,
    request: ImportRequest,
    display: ImportDisplay,
    *,
    on_invalid: RejectionSink | None = None,
) -> ImportResult:
    """Import the request's source through the library's pipeline, showing progress.

    Args:
        client: The client to import with.
        request: What to import and how.
        display: Where progress shows; its ``update`` is the ``on_progress`` callback. The
            jobs it learns of (``spotting_http_client``) are refreshed through ``client``.
        on_invalid: Receives every rejection as it is found (the result keeps the first 1,000).

    Returns:
        The library's result.

    Raises:
        ValidationError: The source cannot be read.
        ImportAbortedError: A batch failed for good.
    """
    options = library_options(request, display, on_invalid)
    method = {
        "user": client.import_users,
        "company": client.import_companies,
        "event": client.import_events,
    }[request.kind]
    return await showing_progress(
        display, request, lambda: method(request.source, **options), get_job=client.get_job
    )


async def validate_only(
    request: ImportRequest, display: ImportDisplay, *, on_invalid: RejectionSink | None = None
) -> ImportReport:
    """Read and validate every record as an import would, and send nothing.

    Each record goes through the pipeline's own verdict, ``check_record`` (decoding, the
    validation rules, the encoding, the size a batch allows); the batcher also counts the
    batches an import would send. Like an import, the report keeps the first 1,000 rejections
    and counts them all.

    Args:
        request: What to check.
        display: Where progress shows.
        on_invalid: Receives every rejection as it is found.

    Returns:
        The report: rows read and rejected (with reasons) and the batches that would be sent.

    Raises:
        ValidationError: The source cannot be read.
    """
    started = anyio.current_time()
    return await showing_progress(
        display, request, lambda: _check_all(request, display, started, on_invalid)
    )


async def _check_all(
    request: ImportRequest,
    display: ImportDisplay,
    started: float,
    on_invalid: RejectionSink | None,
) -> ImportReport:
    batcher = Batcher(max_records=request.batch_size)
    rows_read = 0
    rows_rejected = 0
    batches = 0
    rejected: list[Rejection] = []
    source = read_source(
        request.source, request.kind, format=request.format, csv_multiline=request.csv_multiline
    )
    async with aclosing(source) as items:
        async for item in items:
            rows_read += 1
            checked = check_record(item.record, request.kind, batcher, item.error)
            if isinstance(checked, str):
                rejection = Rejection(item.position, item.record, checked, item.line)
                rows_rejected += 1
                if len(rejected) < MAX_REJECTIONS_KEPT:
                    rejected.append(rejection)
                if on_invalid is not None:
                    on_invalid(rejection)
            elif batcher.add(item.position, checked) is not None:
                batches += 1
            if rows_read % DRY_RUN_REPORT_EVERY == 0:
                display.update(ImportProgress(rows_read=rows_read, rows_rejected=rows_rejected))
    if batcher.flush() is not None:
        batches += 1
    display.update(ImportProgress(rows_read=rows_read, rows_rejected=rows_rejected))
    return ImportReport(
        what=request.what,
        source=request.label,
        rows_read=rows_read,
        rows_sent=0,
        rows_rejected=rows_rejected,
        rejected=rejected,
        jobs=[],
        batches=batches,
        elapsed=anyio.current_time() - started,
        dry_run=True,
    )
