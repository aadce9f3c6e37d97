"""The export calls of a client: start, follow, wait for, download, stream, tabulate, look up.

``AsyncAnalytex`` holds one ``ExportCalls`` and hands each of its export methods to it. The
appex host has its own base URL (``appex_url``); its requests go through a ``Transport`` of
their own (same key, same retry policy, no ``X-API-Version``) over the client's connection pool
of the running loop. The signed download links go through ``_download``, without the key.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import httpx

from .._errors import (
    APIResponseValidationError,
    ConfigurationError,
    ConflictError,
    ExportFailedError,
    ValidationError,
)
from .._retry import RetryPolicy
from .._transport import Transport, bytes_body, encode_json
from ._columnar import TableBuilder, parquet_pieces, read_avro, read_parquet
from ._download import LinkFetcher, save
from ._formats import ExportFileError, FileKind, read_text, sniff_raw
from ._models import Export, ExportFile
from ._query import ExportQuery, require_extra

if TYPE_CHECKING:
    from .._runtime import Runtime

logger = logging.getLogger("analytex_async")

EXPORTS_PATH = "/api/v1/analytics/exports"
JOBS_PATH = f"{EXPORTS_PATH}/jobs/"
LOOKUPS_PATH = f"{EXPORTS_PATH}/lookups/"
LOOKUPS: tuple[str, ...] = (
    "user_properties",
    "company_properties",
    "segments",
    "features_events",
    "events_properties",
    "flows",
    "banners",
    "embeds",
    "spotlights",
    "surveys",
    "resource_center_modules",
    "checklists",
)
"""The lookups the appex host documents."""
FIRST_POLL = 0.5
"""Seconds before the second poll of an export (the first is at once)."""
MAX_POLL = 30.0
"""Seconds between two polls of an export at most."""
MIN_POLL = 0.05
"""Seconds between two polls at least, however close to done an export looks."""
MAX_LOOKUP_PAGES = 10_000
SNIFF_BYTES = 64
SPOOL = "analytex-export-"

ProgressHook = Callable[[Export], Awaitable[None] | None]
"""Told each new state of an export being waited for."""
Event = dict[str, Any]
Events = list[Event]


def _export_of(response: httpx.Response, what: str) -> Export:
    try:
        data = response.json()
    except ValueError:
        raise APIResponseValidationError(
            f"{what} answered {response.status_code} with a body that is not JSON",
            response=response,
        ) from None
    if isinstance(data, Mapping) and isinstance(data.get("job"), Mapping):
        data = data["job"]
    if not isinstance(data, Mapping):
        raise APIResponseValidationError(
            f"{what} answered {response.status_code} with a body that is not an export",
            response=response,
        )
    try:
        return Export.from_api(data)
    except ValueError as exc:
        raise APIResponseValidationError(f"{what}: {exc}", response=response) from None


def job_id_of(job: str | Export) -> str:
    """The id of an export given as an id or an ``Export``.

    Raises:
        ValidationError: An empty id or another type.
    """
    if isinstance(job, Export):
        return job.job_id
    if not isinstance(job, str) or not job.strip():
        raise ValidationError(f"must be an export id or an Export, got {job!r:.60}", field="job_id")
    return job


def _next_delay(previous: float | None, seen: list[tuple[float, float]]) -> float:
    """Back off (0.5, 1, 2, … 30 s), but poll sooner when the progress says it ends sooner."""
    delay = FIRST_POLL if previous is None else min(previous * 2, MAX_POLL)
    if len(seen) >= 2:
        (t0, p0), (t1, p1) = seen[-2], seen[-1]
        if p1 > p0 and t1 > t0:
            remaining = (100.0 - p1) * (t1 - t0) / (p1 - p0)
            delay = min(delay, max(remaining, MIN_POLL))
    return delay


class ExportCalls:
    """What ``AsyncAnalytex``'s export methods do.

    Args:
        runtime: The client's loop-bound resources of the running loop (raises when closed).
        appex_url: The appex base URL, or ``None`` when the region has none.
        api_key: The API key (for the appex host only; never for a download link).
        retry: The client's retry policy.
        max_concurrency: Requests in flight at once at most.
    """

    def __init__(
        self,
        runtime: Callable[[], Runtime],
        *,
        appex_url: str | None,
        api_key: str,
        retry: RetryPolicy,
        max_concurrency: int,
    ) -> None:
        self._runtime = runtime
        self.appex_url = appex_url
        self._key = api_key
        self._retry = retry
        self._max_concurrency = max_concurrency
        self._transports: tuple[Runtime, Transport] | None = None

    def __repr__(self) -> str:
        return f"ExportCalls(appex_url={self.appex_url!r})"

    # -- plumbing --------------------------------------------------------------------------

    def _base_url(self) -> str:
        if self.appex_url is None:
            raise ConfigurationError(
                "this region has no documented export (appex) host: pass appex_url=... or set "
                "ANALYTEX_APPEX_URL"
            )
        return self.appex_url

    def transport(self) -> Transport:
        """The appex transport over the running loop's connection pool."""
        base_url = self._base_url()
        runtime = self._runtime()
        if self._transports is None or self._transports[0] is not runtime:
            transport = Transport(
                runtime.http_client,
                base_url=base_url,
                api_key=self._key,
                retry=self._retry,
                max_concurrency=self._max_concurrency,
                api_version=None,
            )
            self._transports = (runtime, transport)
        return self._transports[1]

    def _fetcher(self, job_id: str) -> LinkFetcher:
        async def renew(filename: str) -> ExportFile | None:
            return (await self.get(job_id)).file(filename)

        return LinkFetcher(self._runtime().http_client, self._retry, renew)

    # -- jobs ------------------------------------------------------------------------------

    async def start(self, query: ExportQuery, *, time_limit: float | None = None) -> Export:
        """``POST /api/v1/analytics/exports``; a 409 waits for the running export, then again.

        Raises:
            TimeoutError: The running export did not finish within ``timeout`` seconds.
        """
        transport = self.transport()
        content = encode_json(query.body())
        with anyio.move_on_after(time_limit):
            delay: float | None = None
            while True:
                try:
                    response = await transport.request(
                        "POST", EXPORTS_PATH, body=bytes_body(content, "application/json")
                    )
                except ConflictError:
                    running = [e for e in await self.list_all() if not e.is_finished]
                    if running:
                        logger.info("an export runs (%s): waiting for it", running[0].job_id)
                        await self.wait(running[0].job_id, raise_failed=False)
                        delay = None
                    else:  # it finished meanwhile, or is not listed yet
                        delay = _next_delay(delay, [])
                        await anyio.sleep(delay)
                    continue
                return _export_of(response, f"POST {EXPORTS_PATH}")
        raise TimeoutError(f"another export was still running after {time_limit} s")

    async def get(self, job_id: str | Export) -> Export:
        """``GET /api/v1/analytics/exports/jobs/{job_id}`` (the id percent-encoded)."""
        path = f"{JOBS_PATH}{quote(job_id_of(job_id), safe='')}"
        response = await self.transport().request("GET", path)
        return _export_of(response, f"GET {path}")

    async def list_all(self) -> list[Export]:
        """``GET /api/v1/analytics/exports/jobs/``: entries without a job id are skipped."""
        response = await self.transport().request("GET", JOBS_PATH)
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            data = next((data[k] for k in ("jobs", "data", "exports") if k in data), None)
        if not isinstance(data, list):
            raise APIResponseValidationError(
                f"GET {JOBS_PATH} answered with a body that is not a list of exports",
                response=response,
            )
        exports = []
        for item in data:
            if isinstance(item, Mapping):
                try:
                    exports.append(Export.from_api(item))
                except ValueError:
                    continue
        return exports

    async def wait(
        self,
        job: str | Export,
        *,
        time_limit: float | None = None,
        on_progress: ProgressHook | None = None,
        raise_failed: bool = True,
    ) -> Export:
        """Poll an export until it is finished.

        Raises:
            ExportFailedError: It ended ``failed`` (unless ``raise_failed`` is off).
            TimeoutError: It was not finished after ``timeout`` seconds.
        """
        job_id = job_id_of(job)
        last: Export | None = None
        with anyio.move_on_after(time_limit):
            seen: list[tuple[float, float]] = []
            delay: float | None = None
            while True:
                export = await self.get(job_id)
                changed = last is None or (
                    (export.status, export.progress, export.chunks_completed)
                    != (last.status, last.progress, last.chunks_completed)
                )
                last = export
                if changed and on_progress is not None:
                    outcome = on_progress(export)
                    if inspect.isawaitable(outcome):
                        await outcome
                if export.is_finished:
                    if raise_failed and not export.is_completed:
                        raise ExportFailedError(export)
                    return export
                if export.progress is not None:
                    seen.append((anyio.current_time(), export.progress))
                delay = _next_delay(delay, seen)
                await anyio.sleep(delay)
        status = f"; last status {last.status!r}" if last is not None else ""
        raise TimeoutError(f"export {job_id} was not finished after {time_limit} s{status}")

    async def _finished(
        self, job: str | Export, time_limit: float | None, on_progress: ProgressHook | None = None
    ) -> Export:
        if isinstance(job, Export) and job.is_completed and job.files:
            return job
        return await self.wait(job, time_limit=time_limit, on_progress=on_progress)

    async def _to_read(
        self, query: ExportQuery | None, job_id: str | Export | None, time_limit: float | None
    ) -> Export:
        """The completed export to read: ``job_id``'s, or a new one of ``query``.

        ``time_limit`` bounds each wait: for a running export to make room, then for this one.
        """
        if job_id is None:
            if query is None:
                raise ValidationError("give the range (start, end) or an export's job_id")
            job_id = await self.start(query, time_limit=time_limit)
        return await self._finished(job_id, time_limit)

    # -- files -----------------------------------------------------------------------------

    async def download(
        self,
        job: str | Export,
        directory: str | Path,
        *,
        overwrite: bool = False,
        time_limit: float | None = None,
        on_progress: ProgressHook | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> list[Path]:
        """Wait for an export, then save each of its files into ``directory``, in chunk order."""
        export = await self._finished(job, time_limit, on_progress)
        target = Path(directory)
        await anyio.Path(target).mkdir(parents=True, exist_ok=True)
        fetcher = self._fetcher(export.job_id)
        paths = []
        for file in export.files:
            paths.append(await save(fetcher, file, target, overwrite=overwrite, on_bytes=on_bytes))
        return paths

    async def events(
        self,
        query: ExportQuery | None,
        *,
        job_id: str | Export | None = None,
        time_limit: float | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Start (or reuse) an export, wait for it, and yield its events in file order."""
        export = await self._to_read(query, job_id, time_limit)
        fetcher = self._fetcher(export.job_id)
        for file in export.files:
            async with aclosing(self._file_events(fetcher, file)) as batches:
                async for batch in batches:
                    for event in batch:
                        yield event

    async def _file_events(
        self, fetcher: LinkFetcher, file: ExportFile
    ) -> AsyncGenerator[Events, None]:
        async with fetcher.open(file) as body, aclosing(body.chunks()) as chunks:
            head = await _head(chunks)
            batches = _events_of(sniff_raw(head), head, chunks, file.filename)
            async with aclosing(batches):
                async for batch in batches:
                    yield batch

    async def table(
        self,
        query: ExportQuery | None,
        *,
        job_id: str | Export | None = None,
        time_limit: float | None = None,
    ) -> Any:
        """The export as one ``pyarrow.Table`` (Parquet row groups kept as its chunks)."""
        require_extra("pyarrow", "parquet", "export_table")
        export = await self._to_read(query, job_id, time_limit)
        builder = TableBuilder()
        fetcher = self._fetcher(export.job_id)
        for file in export.files:
            await self._file_into_table(fetcher, file, builder)
        return builder.table()

    async def _file_into_table(
        self, fetcher: LinkFetcher, file: ExportFile, builder: TableBuilder
    ) -> None:
        async with fetcher.open(file) as body, aclosing(body.chunks()) as chunks:
            head = await _head(chunks)
            kind = sniff_raw(head)
            if kind == "parquet":
                with _unreadable(file), tempfile.TemporaryDirectory(prefix=SPOOL) as spool:
                    path = Path(spool) / "file"
                    await _spool(head, chunks, path)
                    await parquet_pieces(path, file.filename, builder)
                return
            batches = _events_of(kind, head, chunks, file.filename)
            async with aclosing(batches):
                async for batch in batches:
                    builder.add_events(batch)

    # -- lookups ---------------------------------------------------------------------------

    async def lookup(self, name: str) -> AsyncGenerator[dict[str, Any], None]:
        """Yield a lookup's items, following ``after_cursor`` pages."""
        transport = self.transport()
        base = f"{LOOKUPS_PATH}{quote(name, safe='')}"
        path = base
        seen: set[str] = set()
        for _ in range(MAX_LOOKUP_PAGES):
            response = await transport.request("GET", path)
            try:
                data = response.json()
            except ValueError:
                data = None
            items: object
            after: object = None
            if isinstance(data, list):
                items = data
            elif isinstance(data, Mapping) and isinstance(data.get("data"), list):
                items = data["data"]
                meta = data.get("metadata")
                cursor = meta.get("cursor") if isinstance(meta, Mapping) else None
                after = cursor.get("after") if isinstance(cursor, Mapping) else None
            else:
                raise APIResponseValidationError(
                    f"GET {base} answered with a body that is neither a list nor a page",
                    response=response,
                )
            for item in items if isinstance(items, list) else []:
                yield item
            if not isinstance(after, str) or not after or after in seen:
                return
            seen.add(after)
            path = f"{base}?after_cursor={quote(after, safe='')}"


def check_lookup(name: object) -> str:
    """Check a lookup's name.

    Raises:
        ValidationError: It is not one the appex host documents (a ``ValueError``; the
            message lists them).
    """
    if not isinstance(name, str) or name not in LOOKUPS:
        raise ValidationError(
            f"unknown lookup {name!r:.60}; use one of {', '.join(LOOKUPS)}", field="name"
        )
    return name


async def _head(chunks: AsyncIterator[bytes]) -> bytes:
    """The first bytes of a file (enough to tell its format), taken from its chunks."""
    head = b""
    while len(head) < SNIFF_BYTES:
        try:
            head += await chunks.__anext__()
        except StopAsyncIteration:
            break
    return head


async def _replay(head: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


@contextmanager
def _unreadable(file: ExportFile) -> Iterator[None]:
    """An unreadable file is a 2xx whose body is not what the API documents."""
    try:
        yield
    except ExportFileError as exc:
        raise APIResponseValidationError(
            f"export {file.filename}: {exc}", response=_no_response(file)
        ) from None


async def _events_of(
    kind: FileKind, head: bytes, chunks: AsyncIterator[bytes], where: str
) -> AsyncGenerator[Events, None]:
    """A file's events, in batches: text parsed as it arrives, Parquet and Avro spooled first."""
    file = ExportFile(where, "")
    if kind in ("ndjson", "csv"):
        replayed = _replay(head, chunks)
        async with aclosing(replayed), aclosing(read_text(replayed, kind, where)) as batches:
            with _unreadable(file):
                async for batch in batches:
                    yield batch
        return
    module, extra = ("pyarrow", "parquet") if kind == "parquet" else ("fastavro", "avro")
    require_extra(module, extra, f"reading {where} ({kind})")
    with _unreadable(file), tempfile.TemporaryDirectory(prefix=SPOOL) as spool:
        path = Path(spool) / "file"
        await _spool(head, chunks, path)
        reader = read_parquet(path, where) if kind == "parquet" else read_avro(path, where)
        async with aclosing(reader):
            async for batch in reader:
                yield batch


async def _spool(head: bytes, rest: AsyncIterator[bytes], path: Path) -> None:
    async with await anyio.open_file(path, "wb") as out:
        await out.write(head)
        async for chunk in rest:
            await out.write(chunk)


def _no_response(file: ExportFile) -> httpx.Response:
    """A stand-in response naming the file, for an unreadable file's validation error."""
    return httpx.Response(200, request=httpx.Request("GET", file.url.partition("?")[0]))
