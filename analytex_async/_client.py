"""``AsyncAnalytex``: configuration, lifecycle, and one method per API call."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import httpx

from ._bodies import (
    BulkRecord,
    bulk_json_body,
    delete_body,
    identify_body,
    identify_company_body,
    track_body,
)
from ._bulk._jobs import fetch_job, fetch_jobs, job_of, wait_until_finished
from ._bulk._options import ImportOptions, OnInvalid, ProgressCallback
from ._bulk._sync import SyncResult
from ._config import (
    check_api_key,
    check_positive,
    check_whole,
    is_positive,
    resolve_appex_url,
    resolve_base_url,
)
from ._constants import MAX_RECORDS
from ._delivery._background import BackgroundDelivery
from ._delivery._policy import DeliveryPolicy
from ._errors import ConfigurationError, JobFailedError, ValidationError
from ._exports._calls import ExportCalls, ProgressHook, check_lookup
from ._exports._models import Export
from ._exports._query import ExportQuery, TimeBound
from ._imports import Importer
from ._lifecycle import Lifecycle
from ._models import Company, ImportResult, Job, JobStatus
from ._retry import RetryPolicy
from ._syncs import StateArgument, run_sync
from ._telemetry import count
from ._transport import Transport
from ._types import SourceFormat
from ._validation import require_id
from .governors._local import Governor
from .governors._windows import ClientWindows


class AsyncAnalytex:
    """The asynchronous Analytex client.

    One client holds one connection pool: create it once (at app start-up) and share it.
    It works under asyncio and trio, from one event loop after another (its pool and locks are
    rebuilt for each new loop) and in a forked child (which starts fresh).

    Args:
        api_key: The API key; defaults to the ``ANALYTEX_API_KEY`` environment variable.
        region: ``"us"`` (default) or ``"eu"``; ignored when a base URL is given.
        base_url: The API's base URL; defaults to ``ANALYTEX_BASE_URL``, then the region's.
            Plain ``http://`` is refused except to loopback hosts.
        timeout: Seconds before a request times out (used when the client makes its own
            ``httpx.AsyncClient``).
        max_retries: Retries of a failed request (connection errors, timeouts, 408, 429, 5xx).
        rows_per_minute: The bulk processing rate the bulk pipeline keeps to.
        requests_per_minute: The real-time rate held separately for identify (users and
            companies) and for track, per client; ``None`` turns the limit off.
        governor: A shared rate governor for the bulk pipeline (e.g. Redis-backed); by default
            each client has its own.
        http_client: An ``httpx.AsyncClient`` to use as is; the caller keeps ownership and
            closes it.
        delivery: How ``client.background`` delivers (queue, shutdown, outbox, bulk
            overflow); ``DeliveryPolicy()`` by default.
        appex_url: The export API's base URL; defaults to ``ANALYTEX_APPEX_URL``, then to
            ``base_url`` when one was given (the emulator serves both), then to the region's
            (US only). Plain ``http://`` is refused except to loopback hosts.
        retry_policy: Overrides ``max_retries`` with a complete ``RetryPolicy``.
        max_concurrency: Requests in flight at once at most.

    Raises:
        ConfigurationError: A setting is missing or wrong.

    Examples:
        ```python
        async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
            await client.identify("user_001", metadata={"name": "Jane"})
        ```
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        region: str = "us",
        base_url: str | None = None,
        timeout: float | None = 30.0,
        max_retries: int = 4,
        rows_per_minute: float = 1200,
        requests_per_minute: int | None = 600,
        governor: Governor | None = None,
        http_client: httpx.AsyncClient | None = None,
        delivery: DeliveryPolicy | None = None,
        appex_url: str | None = None,
        retry_policy: RetryPolicy | None = None,
        max_concurrency: int = 16,
    ) -> None:
        key = check_api_key(api_key)
        url = resolve_base_url(region, base_url)
        check_positive("timeout", timeout, allow_none=True)
        check_positive("rows_per_minute", rows_per_minute)
        check_positive("requests_per_minute", requests_per_minute, allow_none=True)
        check_whole("max_concurrency", max_concurrency, minimum=1)
        if delivery is not None and not isinstance(delivery, DeliveryPolicy):
            raise ConfigurationError(
                f"delivery must be a DeliveryPolicy, got {type(delivery).__name__}"
            )
        if retry_policy is None:
            check_whole("max_retries", max_retries, minimum=0)
            retry_policy = RetryPolicy(max_retries=max_retries)
        if requests_per_minute is not None:
            check_whole("requests_per_minute", requests_per_minute, minimum=1)
        self.base_url = url
        self.rows_per_minute = float(rows_per_minute)
        self.requests_per_minute = requests_per_minute
        self.delivery = delivery if delivery is not None else DeliveryPolicy()
        self._life = Lifecycle(
            base_url=url,
            api_key=key,
            retry=retry_policy,
            timeout=timeout,
            max_concurrency=max_concurrency,
            rows_per_minute=self.rows_per_minute,
            requests_per_minute=requests_per_minute,
            governor=governor,
            http_client=http_client,
            delivery=self.delivery,
        )
        self._background = BackgroundDelivery(self._life.session, self._life.stats)
        self._exports = ExportCalls(
            self._life.current,
            appex_url=resolve_appex_url(region, url, appex_url),
            api_key=key,
            retry=retry_policy,
            max_concurrency=max_concurrency,
        )

    @property
    def governor(self) -> Governor:
        """The bulk rate governor in force (the client's own ``RowGovernor`` by default)."""
        return self._life.runtimes.peek().governor

    @property
    def background(self) -> BackgroundDelivery:
        """Delivery that never makes the caller wait, for request handlers.

        See ``BackgroundDelivery``: ``client.background.identify(...)`` returns at once.
        """
        return self._background

    @property
    def _transport(self) -> Transport:
        return self._life.current().transport

    @property
    def _http_client(self) -> httpx.AsyncClient:
        return self._life.runtimes.peek().http_client

    @property
    def _windows(self) -> ClientWindows:
        return self._life.current().windows

    def __repr__(self) -> str:
        return f"AsyncAnalytex(base_url={self.base_url!r}, api_key='***')"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._life.retry

    @property
    def is_closed(self) -> bool:
        """Whether ``aclose()`` has run."""
        return self._life.closed

    def _importer(self) -> Importer:
        """The import stage, on this event loop's transport and governor."""
        self._check_open()
        return Importer(self._transport, self.governor, self.rows_per_minute)

    # -- the bulk pipeline: imports and syncs ------------------------------------------------

    async def import_users(
        self,
        source: object,
        *,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> ImportResult:
        """Import any number of users through governed, validated NDJSON batches.

        The source is read lazily, so memory stays at about two batches however long it is.
        Each record is validated; valid ones go out in batches of up to ``batch_size`` records
        and 50 MB, no faster than ``rows_per_minute``, one job at a time (a 409 waits for the
        running job and resends the same batch; a 413 splits the batch). Invalid records are
        reported, never dropped silently.

        Args:
            source: A sync or async iterable of ``User`` objects or mappings; a path to an
                ``.ndjson`` / ``.jsonl`` (optionally ``.gz``), ``.csv`` or ``.parquet`` file;
                an open binary or text file (NDJSON unless ``format="csv"``); or a table: a
                pandas or polars DataFrame (the ``dataframe`` extra) or a pyarrow ``Table``,
                read a chunk of rows at a time, one row a record (``.parquet`` files need the
                ``parquet`` extra).
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish before returning.
            on_invalid: ``"skip"`` to report invalid records as ``Rejection`` entries of the
                result (the first 1,000 kept, all counted in ``rows_rejected``), ``"raise"``
                to stop at the first with ``ValidationError``, or a callable (sync or async)
                that receives every ``Rejection`` as it happens (e.g. to stream them to a file).
            on_progress: Called (sync or async) with an ``ImportProgress`` as the import moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (up to 100 lines, 1 MiB a row);
                by default a CSV line whose quotes do not pair up is a ``Rejection``.
            journal: A file in which every accepted batch is recorded durably. Run the same
                import again with the same journal and what was accepted is skipped, so a
                crash or a cancel loses nothing and repeats at most the batch in flight.

        Returns:
            What was read, sent, rejected and accepted (with the jobs' final states).

        Raises:
            ValidationError: The options or the source are unusable, or ``on_invalid="raise"``
                met an invalid record (``error.result`` holds what was accepted before).
            ImportAbortedError: A batch failed for good; ``error.result`` holds what was
                accepted, and ``__cause__`` the final failure.

        Examples:
            ```python
            result = await client.import_users("users.ndjson.gz")
            print(result.rows_sent, len(result.rejected), [j.job_id for j in result.jobs])
            ```
        """
        options = ImportOptions(
            batch_size, wait, on_invalid, on_progress, format, csv_multiline, journal=journal
        )
        return await self._importer().run("user", source, options)

    async def import_companies(
        self,
        source: object,
        *,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> ImportResult:
        """Import any number of companies; the same pipeline as ``import_users``.

        Args:
            source: ``Company`` objects or mappings, a file (CSV and Parquet need a
                ``company_id`` column), or a DataFrame or pyarrow ``Table`` with a
                ``company_id`` column (see ``import_users``).
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish before returning.
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the import moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (see ``import_users``).
            journal: A file recording accepted batches, to resume from (see ``import_users``).

        Returns:
            What was read, sent, rejected and accepted.

        Raises:
            ValidationError: Unusable options or source, or an invalid record with
                ``on_invalid="raise"``.
            ImportAbortedError: A batch failed for good.
        """
        options = ImportOptions(
            batch_size, wait, on_invalid, on_progress, format, csv_multiline, journal=journal
        )
        return await self._importer().run("company", source, options)

    async def import_events(
        self,
        source: object,
        *,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> ImportResult:
        """Import historical events through ``POST /v1/imports`` (the Events Bulk Import).

        The same pipeline as ``import_users``: each event is checked against the event schema
        (``identify_user``, ``identify_company``, ``page_view``, ``track``), valid ones go out as
        NDJSON files of up to 10,000 events and 50 MB, one import job at a time (a 409 waits for
        the running import and sends the same file again; the import slot is separate from bulk
        identify's), retried, journaled and reported like any import.

        Args:
            source: ``Event`` objects or mappings with the schema's fields (a required field
                given as ``None`` is missing: a ``Rejection`` naming it), a file (NDJSON, or CSV
                with an ``event_type`` column, the schema's fields as columns, a ``metadata``
                column holding a JSON object and any other column a metadata key), or a table
                with the same columns: a pandas or polars DataFrame, a pyarrow ``Table`` or a
                ``.parquet`` file (see ``import_users``), where a null is a missing cell, the
                ``metadata`` column a struct, and ``inserted_at`` a timestamp with a zone (one
                without is a ``Rejection`` naming the field, as a naive ``datetime`` is) or
                ISO 8601 strings.
            batch_size: Events per file at most (1 to 10,000).
            wait: Wait for the last import jobs to finish before returning.
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the import moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (see ``import_users``).
            journal: A file recording accepted files, to resume from (see ``import_users``).

        Returns:
            What was read, sent, rejected and accepted.

        Raises:
            ValidationError: Unusable options or source, or an invalid event with
                ``on_invalid="raise"``.
            ImportAbortedError: A file failed for good.

        Examples:
            ```python
            from analytex_async import Event

            events = [
                Event.identify_user("u1", {"plan": "pro"}, "2024-07-28T08:55:35+00:00"),
                Event.track("u1", "Signed Up", "2024-07-28 08:56:00", metadata={"ads": True}),
            ]
            result = await client.import_events(events)
            print(result.rows_sent)
            ```
        """
        options = ImportOptions(
            batch_size, wait, on_invalid, on_progress, format, csv_multiline, journal=journal
        )
        return await self._importer().run("event", source, options)

    async def sync_users(
        self,
        source: object,
        *,
        state: StateArgument,
        full: bool = False,
        delete_missing: bool = False,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: None = None,
    ) -> SyncResult:
        """Send only the users that changed since the last sync, and remember what completed.

        Each valid record's canonical form (keys sorted, one encoding) is compared with the
        digest the state holds for its id: the record as last *completed* on the server. New
        and changed records go through the import pipeline (the same sources, validation,
        batches, rate and jobs as ``import_users``); unchanged ones are never sent. A batch's
        digests are written only once its job is seen completed, so a failed job, an abort, a
        cancel or a crash means those rows are sent again next time, never forgotten.

        Ids in the state that this run's source does not hold are counted in
        ``rows_missing``; with ``delete_missing=True`` they are deleted on the server (once the
        source was read to its end without an abort; 1,000 ids a request, paced as the API
        requires) and leave the state. An id read from a rejected record counts as present.

        Args:
            source: Anything ``import_users`` takes.
            state: A path to the SQLite state file (created on first use), or any
                ``SyncState``. One state file per kind and API host; one sync at a time.
            full: Send every valid record, changed or not (the counters still compare);
                their digests replace the old ones once their jobs complete.
            delete_missing: Delete ids the state holds and the source no longer does.
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish. With ``False``, the digests of jobs not
                seen completed are not written: those rows go again next time.
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the sync moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (see ``import_users``).
            journal: Refused: the state already records what the server completed.

        Returns:
            The import's result plus ``rows_new``, ``rows_changed``, ``rows_unchanged``,
            ``rows_missing`` and ``rows_deleted``.

        Raises:
            ConfigurationError: The state belongs to another kind or API host, is in use by
                another sync, or cannot be opened.
            ValidationError: Unusable options or source (``journal=`` included), or an invalid
                record with ``on_invalid="raise"``; ``error.result`` is a ``SyncResult``.
            ImportAbortedError: A batch or a delete failed for good; ``error.result`` is a
                ``SyncResult`` (``rows_missing`` and ``rows_deleted`` 0 after an import abort).

        Examples:
            ```python
            result = await client.sync_users("users.ndjson", state="users-state.sqlite")
            print(result.rows_new, result.rows_changed, result.rows_unchanged, result.rows_sent)
            ```
        """
        options = ImportOptions(batch_size, wait, on_invalid, on_progress, format, csv_multiline)
        return await run_sync(
            self._importer(),
            "user",
            source,
            state,
            host=httpx.URL(self.base_url).host,
            full=full,
            delete_missing=delete_missing,
            journal=journal,
            options=options,
            delete=self.delete_users,
        )

    async def sync_companies(
        self,
        source: object,
        *,
        state: StateArgument,
        full: bool = False,
        delete_missing: bool = False,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: None = None,
    ) -> SyncResult:
        """Send only the companies that changed since the last sync; see ``sync_users``.

        Args:
            source: Anything ``import_companies`` takes.
            state: A path to the SQLite state file, or any ``SyncState`` (one per kind).
            full: Send every valid record (the counters still compare).
            delete_missing: Delete ids the state holds and the source no longer does.
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish (see ``sync_users``).
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the sync moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines.
            journal: Refused: the state already records what the server completed.

        Returns:
            The import's result plus the sync's counters.

        Raises:
            ConfigurationError: The state belongs to another kind or host, or is in use.
            ValidationError: Unusable options or source, or an invalid record with
                ``on_invalid="raise"``.
            ImportAbortedError: A batch or a delete failed for good.
        """
        options = ImportOptions(batch_size, wait, on_invalid, on_progress, format, csv_multiline)
        return await run_sync(
            self._importer(),
            "company",
            source,
            state,
            host=httpx.URL(self.base_url).host,
            full=full,
            delete_missing=delete_missing,
            journal=journal,
            options=options,
            delete=self.delete_companies,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncAnalytex:
        await self._life.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._life.exit(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close the client: drain background delivery, then close the connection pool.

        Background delivery stops taking records, delivers what is queued for at most
        ``DeliveryPolicy.drain_timeout`` seconds, and spills the rest to the outbox (or counts
        it dropped). The pool is closed unless the caller supplied the ``http_client``. Safe to
        call more than once.
        """
        await self._life.close()

    def _check_open(self) -> None:
        if self._life.closed:
            raise RuntimeError("this AsyncAnalytex client is closed; create a new one")

    # -- real-time calls ---------------------------------------------------------------------

    async def identify(
        self,
        user_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        company: str | Company | Mapping[str, Any] | None = None,
    ) -> None:
        """Identify a user and update their profile (``POST /v1/identify``).

        Args:
            user_id: The user's id (a non-empty string).
            metadata: Profile properties (JSON values; nested objects are allowed here).
            company: The user's company: its id, a ``Company``, or a mapping with an ``id``
                and other company properties.

        Raises:
            ValidationError: Bad input; nothing was sent.
            APIError: The request failed (see the subclasses).
        """
        self._check_open()
        await self._life.send_realtime("identify", identify_body(user_id, metadata, company))

    async def identify_company(
        self, company_id: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Identify a company and update its profile (``POST /v1/companies/identify``).

        Args:
            company_id: The company's id (a non-empty string).
            metadata: Profile properties.

        Raises:
            ValidationError: Bad input; nothing was sent.
            APIError: The request failed.
        """
        self._check_open()
        await self._life.send_realtime(
            "identify_company", identify_company_body(company_id, metadata)
        )

    async def track(
        self, user_id: str, event_name: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Track an event for a user (``POST /v1/track``).

        Args:
            user_id: The user's id.
            event_name: The event's name.
            metadata: Event properties.

        Raises:
            ValidationError: Bad input; nothing was sent.
            APIError: The request failed.
        """
        self._check_open()
        await self._life.send_realtime("track", track_body(user_id, event_name, metadata))

    # -- bulk JSON calls ---------------------------------------------------------------------

    async def _bulk_json(self, path: str, key: str, records: Iterable[BulkRecord]) -> Job:
        self._check_open()
        body, rows = bulk_json_body(key, records)
        response = await self._transport.request("POST", path, body=body)
        job = job_of(response, f"POST {path}", self._transport.redact)
        count("analytex.rows.sent", "user" if key == "users" else "company", rows)
        return job

    async def bulk_identify(self, users: Iterable[BulkRecord]) -> Job:
        """Submit up to 10,000 user updates as one JSON bulk job.

        For more records, or a file, use ``import_users``, which batches, governs the rate and
        waits out the one-job-at-a-time rule.

        Args:
            users: ``User`` objects or mappings with ``user_id``, ``company_id``, ``metadata``.

        Returns:
            The job the server created.

        Raises:
            ValidationError: A record is invalid (the message names its position and field),
                there are none, more than 10,000, or the body exceeds 50 MB; nothing was sent.
            ConflictError: Another bulk job is still running for the account.
            APIError: The request failed.
        """
        return await self._bulk_json("/v1/users/bulk_identify", "users", users)

    async def bulk_identify_companies(self, companies: Iterable[BulkRecord]) -> Job:
        """Submit up to 10,000 company updates as one JSON bulk job.

        Args:
            companies: ``Company`` objects or mappings with ``company_id`` and ``metadata``.

        Returns:
            The job the server created.

        Raises:
            ValidationError: A record is invalid, there are none or too many; nothing was sent.
            ConflictError: Another bulk job is still running for the account.
            APIError: The request failed.
        """
        return await self._bulk_json("/v1/companies/bulk_identify", "companies", companies)

    # -- jobs --------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """Fetch one background job (``GET /v1/background_jobs/{job_id}``).

        Args:
            job_id: The job's id, as returned by a bulk call (it is percent-encoded for you).

        Returns:
            The job in its current state.

        Raises:
            ValidationError: The id is empty.
            NotFoundError: There is no such job.
            APIError: The request failed.
        """
        self._check_open()
        return await fetch_job(self._transport, require_id(job_id, "job_id"))

    async def list_jobs(self) -> list[Job]:
        """List the account's background jobs (``GET /v1/background_jobs``).

        Returns:
            The jobs, in the server's order. Entries without a job id are skipped.

        Raises:
            APIError: The request failed or the body is not a list of jobs.
        """
        self._check_open()
        return await fetch_jobs(self._transport)

    async def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- named by the public contract
        poll_interval: float | None = None,
    ) -> Job:
        """Poll a job until it is terminal.

        Polls at once, then aimed at the job's expected completion: never more than 1 s + 10%
        of its expected duration (its rows at ``rows_per_minute``) apart, nor 30 s; 10 s once
        it is overdue. An events import, or a job without row counts, is timed by its own
        progress, 10 s apart at most. A job in a status this SDK does not know is finished once
        all its rows are complete.

        Args:
            job_id: The job's id.
            timeout: Seconds to wait at most (``None``: no limit).
            poll_interval: A fixed number of seconds between polls, instead of the adaptive one.

        Returns:
            The finished job.

        Raises:
            ValidationError: ``timeout`` or ``poll_interval`` is not a positive number.
            JobFailedError: The job ended ``failed``.
            TimeoutError: The job was not terminal after ``timeout`` seconds.
            APIError: Polling failed (after retries).
        """
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
            if value is not None and not is_positive(value):
                raise ValidationError(f"must be a positive number, got {value!r}", field=name)
        self._check_open()
        seen: list[Job] = []

        async def fetch(job_id: str) -> Job:
            job = await self.get_job(job_id)
            seen.append(job)
            return job

        with anyio.move_on_after(timeout):
            job = await wait_until_finished(
                fetch,
                Job(require_id(job_id, "job_id"), JobStatus.UNKNOWN),
                rows_per_minute=self.rows_per_minute,
                interval=poll_interval,
            )
            if job.status is JobStatus.FAILED:
                raise JobFailedError(job)
            return job
        last = f"; last status {seen[-1].status}" if seen else ""
        raise TimeoutError(f"job {job_id} was not finished after {timeout} s{last}")

    # -- deletion ----------------------------------------------------------------------------

    async def _delete(self, path: str, key: str, ids: Iterable[str]) -> None:
        self._check_open()
        body = delete_body(key, ids)
        await self._transport.request("DELETE", path, body=body, window=self._windows.delete)

    async def delete_users(self, user_ids: Iterable[str]) -> None:
        """Ask the server to delete users (``DELETE /v1/users``); it applies deletions daily.

        Calls are spaced at least 2 seconds apart, as the API requires.

        Args:
            user_ids: The ids of the users to delete.

        Raises:
            ValidationError: An id is not a non-empty string, or there are none.
            APIError: The request failed.
        """
        await self._delete("/v1/users", "users", user_ids)

    async def delete_companies(self, company_ids: Iterable[str]) -> None:
        """Ask the server to delete companies (``DELETE /v1/companies``).

        Args:
            company_ids: The ids of the companies to delete.

        Raises:
            ValidationError: An id is not a non-empty string, or there are none.
            APIError: The request failed.
        """
        await self._delete("/v1/companies", "companies", company_ids)

    # -- data out: exports and lookups (the appex host; see _exports) -------------------------

    async def start_export(
        self,
        *,
        start: TimeBound,
        end: TimeBound,
        format: str = "ndjson",
        event_types: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        company_ids: Sequence[str] | None = None,
        segment_id: str | None = None,
        notify: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds the wait after a 409
    ) -> Export:
        """Start an export of events (``POST /api/v1/analytics/exports``).

        The appex host runs one export at a time: a 409 waits for the running export to
        finish, then starts this one.

        Args:
            start: The first moment (inclusive): an aware ``datetime``, a ``date`` (midnight
                UTC) or an ISO 8601 string (no offset means UTC).
            end: The moment after the last (exclusive); after ``start``.
            format: ``"ndjson"``, ``"csv"``, ``"parquet"`` (extra ``parquet``) or ``"avro"``
                (extra ``avro``).
            event_types: Only these event types (``"track"``, ``"identify_user"``, ...).
            user_ids: Only these users.
            company_ids: Only these companies.
            segment_id: Only users in this segment.
            notify: E-mail addresses the server sends the links to.
            timeout: Seconds to wait at most for a running export to finish (after a 409).

        Returns:
            The export just started.

        Raises:
            ValidationError: A bad argument; nothing was sent.
            ImportError: The format's extra is not installed; nothing was sent.
            TimeoutError: Another export still ran after ``timeout`` seconds.
            APIError: The request failed.
        """
        self._check_open()
        query = ExportQuery.of(start=start, end=end, format=format, event_types=event_types,
                               user_ids=user_ids, company_ids=company_ids,
                               segment_id=segment_id, notify=notify)  # fmt: skip
        return await self._exports.start(query, time_limit=timeout)

    async def get_export(self, job_id: str) -> Export:
        """Fetch an export (``GET /api/v1/analytics/exports/jobs/{job_id}``).

        Args:
            job_id: The export's id (percent-encoded for you).

        Returns:
            The export in its current state.

        Raises:
            NotFoundError: There is no such export.
            APIError: The request failed.
        """
        self._check_open()
        return await self._exports.get(job_id)

    async def list_exports(self) -> list[Export]:
        """List the account's exports (``GET /api/v1/analytics/exports/jobs/``).

        Returns:
            The exports, in the server's order (without their links).
        """
        self._check_open()
        return await self._exports.list_all()

    async def wait_for_export(
        self,
        job_id_or_export: str | Export,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- named by the public contract
        on_progress: ProgressHook | None = None,
    ) -> Export:
        """Poll an export until it is finished: at once, then backing off (at most 30 s apart).

        Args:
            job_id_or_export: The export or its id.
            timeout: Seconds to wait at most (``None``: no limit).
            on_progress: Called (sync or async) with the export after each poll whose status
                or progress changed.

        Returns:
            The completed export, its files' links filled in.

        Raises:
            ExportFailedError: The export ended ``failed``.
            TimeoutError: It was not finished after ``timeout`` seconds.
            APIError: Polling failed.
        """
        self._check_open()
        return await self._exports.wait(
            job_id_or_export, time_limit=timeout, on_progress=on_progress
        )

    async def download_export(
        self,
        job_id_or_export: str | Export,
        directory: str | Path,
        *,
        overwrite: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds the wait for the export
        on_progress: ProgressHook | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> list[Path]:
        """Wait for an export if needed, then download each of its files into ``directory``.

        Each file is streamed to ``NAME.part`` and renamed ``NAME`` when whole, so a rerun
        skips the files already whole and fetches the rest. Links are fetched without the API
        key; an expired one is renewed once; a truncated download is resumed or retried.

        Args:
            job_id_or_export: The export or its id.
            directory: Where to put the files (created if needed).
            overwrite: Replace a file of the same name that differs.
            timeout: Seconds to wait at most for the export to finish.
            on_progress: Called with the export after each poll whose progress changed,
                while waiting for it (as ``wait_for_export``).
            on_bytes: Called with the size of each piece written (for a progress display).

        Returns:
            The files' paths, in chunk order.

        Raises:
            FileExistsError: A different file of the same name is there and ``overwrite`` is
                off.
            ExportFailedError: The export ended ``failed``.
            APIError: A request or download failed.
        """
        self._check_open()
        return await self._exports.download(
            job_id_or_export, directory, overwrite=overwrite, time_limit=timeout,
            on_progress=on_progress, on_bytes=on_bytes,
        )  # fmt: skip

    def export_events(
        self,
        *,
        start: TimeBound | None = None,
        end: TimeBound | None = None,
        format: str = "ndjson",
        event_types: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        company_ids: Sequence[str] | None = None,
        segment_id: str | None = None,
        job_id: str | Export | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Export events and iterate over them, one ``dict`` per event, in file order.

        Starts an export (or reuses ``job_id``'s: then the range and filters are ignored),
        waits for it, and streams each file: memory stays bounded whatever the export's size.
        Every event has every field of the event schema: ``metadata`` a ``dict``,
        ``inserted_at`` an aware UTC ``datetime``, the screen sizes ints, an empty cell ``None``.

        Args:
            start: The first moment (inclusive); see ``start_export``.
            end: The moment after the last (exclusive).
            format: The transfer format (``"ndjson"`` by default).
            event_types: Only these event types.
            user_ids: Only these users.
            company_ids: Only these companies.
            segment_id: Only users in this segment.
            job_id: Read this export instead of starting one.
            timeout: Seconds to wait at most for the export to finish.

        Returns:
            An async iterator of events.

        Raises:
            ValidationError: A bad argument (raised here, before any request).
            ImportError: The format's extra is not installed (raised here).
        """
        self._check_open()
        query = None
        if job_id is None:
            query = ExportQuery.of(start=start, end=end, format=format, event_types=event_types,
                                   user_ids=user_ids, company_ids=company_ids,
                                   segment_id=segment_id)  # fmt: skip
        return self._exports.events(query, job_id=job_id, time_limit=timeout)

    async def export_table(
        self,
        *,
        start: TimeBound | None = None,
        end: TimeBound | None = None,
        format: str = "parquet",
        event_types: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        company_ids: Sequence[str] | None = None,
        segment_id: str | None = None,
        job_id: str | Export | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 -- bounds the wait for the export
    ) -> Any:
        """Export events into one ``pyarrow.Table`` (extra ``parquet``).

        The table has the event schema's columns: ``metadata`` kept as a JSON string column,
        ``inserted_at`` a UTC timestamp, the screen sizes ``int64``, the rest strings.

        Args:
            start: The first moment (inclusive); see ``start_export``.
            end: The moment after the last (exclusive).
            format: The transfer format (``"parquet"`` by default).
            event_types: Only these event types.
            user_ids: Only these users.
            company_ids: Only these companies.
            segment_id: Only users in this segment.
            job_id: Read this export instead of starting one.
            timeout: Seconds to wait at most for the export to finish.

        Returns:
            A ``pyarrow.Table``.

        Raises:
            ImportError: pyarrow is not installed; nothing was sent.
            ValidationError: A bad argument; nothing was sent.
        """
        self._check_open()
        query = None
        if job_id is None:
            query = ExportQuery.of(start=start, end=end, format=format, event_types=event_types,
                                   user_ids=user_ids, company_ids=company_ids,
                                   segment_id=segment_id)  # fmt: skip
        return await self._exports.table(query, job_id=job_id, time_limit=timeout)

    def lookup(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """Iterate over a lookup's items (``user_properties``, ``segments``, ...), all pages.

        Args:
            name: The lookup: ``user_properties``, ``company_properties``, ``segments``,
                ``features_events``, ``events_properties``, ``flows``, ``banners``,
                ``embeds``, ``spotlights``, ``surveys``, ``resource_center_modules`` or
                ``checklists``.

        Returns:
            An async iterator of the items (``after_cursor`` pages followed).

        Raises:
            ValidationError: An unknown name (a ``ValueError``; raised here).
        """
        self._check_open()
        return self._exports.lookup(check_lookup(name))
