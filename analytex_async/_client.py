"""``AsyncAnalytex``: configuration, lifecycle, and one method per API call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
from ._config import (
    check_api_key,
    check_positive,
    check_whole,
    is_positive,
    resolve_base_url,
)
from ._delivery._background import BackgroundDelivery
from ._delivery._policy import DeliveryPolicy
from ._errors import ConfigurationError, JobFailedError, ValidationError
from ._lifecycle import Lifecycle
from ._models import Company, Job, JobStatus
from ._retry import RetryPolicy
from ._syncs import SyncCalls
from ._telemetry import count
from ._transport import Transport
from ._validation import require_id
from .governors._local import Governor
from .governors._windows import ClientWindows


class AsyncAnalytex(SyncCalls):
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
