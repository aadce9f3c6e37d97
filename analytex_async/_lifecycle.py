"""A client's life: what it holds per event loop, how it opens, how it closes.

``AsyncAnalytex`` keeps its API calls; this module keeps everything else that changes with the
loop and the process (see ``_runtime``) and the opening and closing of background delivery:
``async with`` opens a task group that owns the delivery worker, and leaving the block drains
the queue, spills what is left to the outbox and closes the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ._bodies import sized_json
from ._bulk._jobs import fetch_job, wait_until_finished
from ._bulk._options import ImportOptions, RejectionCallback
from ._bulk._pipeline import ImportRun
from ._config import api_key_hash
from ._delivery._outboxes import open_outbox
from ._delivery._policy import DeliveryKind, DeliveryPolicy, DeliveryStats
from ._delivery._session import BulkRoute, DeliverySession
from ._models import ImportResult, Job
from ._otel import load_opentelemetry
from ._retry import RetryPolicy
from ._runtime import TWO_LOOPS, Runtime, RuntimeSlot, current_loop
from ._transport import Transport
from ._types import RecordKind, RequestSlots, SharedReach
from .governors._local import Governor, KeyScoped, RowGovernor
from .governors._windows import ClientWindows, RequestWindow

ONE_ATTEMPT = RetryPolicy(max_retries=0)
"""Background delivery retries itself, taking a window slot for every attempt."""

REALTIME_PATHS: Mapping[DeliveryKind, str] = {
    "identify": "/v1/identify",
    "identify_company": "/v1/companies/identify",
    "track": "/v1/track",
}


class Lifecycle:
    """The loop-bound resources of one client, and its opening and closing.

    Args:
        base_url: The API's base URL.
        api_key: The API key (kept for the transports it builds; never shown).
        retry: The retry policy.
        timeout: Request timeout, for the connection pools it makes.
        max_concurrency: Requests in flight at once at most.
        rows_per_minute: The bulk row rate, for the default governor.
        requests_per_minute: The real-time budgets; ``None`` turns them off.
        governor: The caller's governor, or ``None`` for a ``RowGovernor`` per loop.
        http_client: The caller's ``httpx.AsyncClient`` (used as is), or ``None``.
        delivery: The background delivery policy.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        timeout: float | None,
        max_concurrency: int,
        rows_per_minute: float,
        requests_per_minute: int | None,
        governor: Governor | None,
        http_client: httpx.AsyncClient | None,
        delivery: DeliveryPolicy,
    ) -> None:
        self.base_url = base_url
        self._key = api_key
        self.retry = retry
        self._timeout = timeout
        self.max_concurrency = max_concurrency
        self.rows_per_minute = rows_per_minute
        self.requests_per_minute = requests_per_minute
        self.delivery = delivery
        self._governor_given = governor is not None
        first_governor = governor if governor is not None else RowGovernor(rows_per_minute)
        if isinstance(first_governor, KeyScoped):
            first_governor.bind_key_hash(api_key_hash(api_key))
        self.owns_http_client = http_client is None
        self._first: tuple[httpx.AsyncClient, Governor] = (
            http_client if http_client is not None else self._new_http_client(),
            first_governor,
        )
        self.runtimes = RuntimeSlot(self._build)
        load_opentelemetry()  # here, not on the event loop at the first request
        self._session: DeliverySession | None = None
        self._last_session: DeliverySession | None = None
        self._tasks: TaskGroup | None = None
        self._owner: object | None = None
        self.closed = False

    def _new_http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            # Plain http is only ever to loopback: never hand it (and the key in its
            # Authorization header) to an HTTP_PROXY from the environment.
            trust_env=not self.base_url.startswith("http://"),
            limits=httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
        )

    def _build(self, pid: int, loop: object | None, adopt: bool) -> Runtime:
        if adopt:
            http_client, governor = self._first
        else:
            # Another loop, or a forked child: nothing of the old loop's is reused. A caller's
            # own http_client is theirs to manage; the default governor is made afresh.
            http_client = self._new_http_client() if self.owns_http_client else self._first[0]
            governor = self._first[1] if self._governor_given else RowGovernor(self.rows_per_minute)
            self._session = self._last_session = self._tasks = self._owner = None
        transport = Transport(
            http_client,
            base_url=self.base_url,
            api_key=self._key,
            retry=self.retry,
            max_concurrency=self.max_concurrency,
        )
        windows = ClientWindows(self.requests_per_minute, governor)
        return Runtime(pid, loop, http_client, transport, windows, governor)

    def current(self) -> Runtime:
        """The runtime for the running loop (built if the loop or the process changed).

        Returns:
            The runtime.

        Raises:
            RuntimeError: The client is closed, no loop runs, or another loop uses the client.
        """
        if self.closed:
            raise RuntimeError("this AsyncAnalytex client is closed; create a new one")
        return self.runtimes.get()

    def session(self) -> DeliverySession | None:
        """Background delivery's session when the client is open on the running loop."""
        runtime = self.runtimes.peek()
        if not runtime.open_here:
            return None
        if runtime.loop is not current_loop():
            raise RuntimeError(TWO_LOOPS)
        return self._session

    def stats(self) -> DeliveryStats:
        """Background delivery's counters: of the session open now, or of the last one."""
        if self.runtimes.forked():
            return DeliveryStats()
        session = self._last_session
        return session.stats() if session is not None else DeliveryStats()

    async def send_realtime(self, kind: DeliveryKind, body: Mapping[str, Any]) -> None:
        """Send one real-time call within its window: the awaited calls and the worker's.

        Args:
            kind: Which call.
            body: The checked request body.
        """
        # Not ``current()``: the worker still delivers while the client drains at close.
        runtime = self.runtimes.get()
        window = runtime.windows.track if kind == "track" else runtime.windows.identify
        await runtime.transport.request(
            "POST", REALTIME_PATHS[kind], body=sized_json(body, "metadata"), window=window
        )

    def _quick_identify_reach(self, backlog: int) -> int | None:
        window = self.runtimes.get().windows.identify
        if isinstance(window, RequestWindow):
            free = window.free_now()
            if backlog < free:  # the common case, in O(1): the window starts it at once
                return free
            return window.reachable_within(self.delivery.max_delay)
        return None  # a shared window is asked by ``_identify_reach``, off the handler's path

    async def _identify_reach(self) -> int:
        window = self.runtimes.get().windows.identify
        max_delay = self.delivery.max_delay
        if isinstance(window, RequestWindow):
            return window.reachable_within(max_delay)
        if isinstance(window, SharedReach):  # the Redis window: what every worker holds
            return await window.reachable_within(max_delay)
        # No limit, or a shared window that cannot say what it holds: assume it is empty.
        rate = self.requests_per_minute or 0
        return rate + int(rate * max_delay / 60)

    def window_of(self, kind: DeliveryKind) -> RequestSlots | None:
        """The real-time window a kind of record is sent in (``None``: no limit)."""
        windows = self.runtimes.get().windows
        return windows.track if kind == "track" else windows.identify

    async def send_once(self, kind: DeliveryKind, body: Mapping[str, Any]) -> None:
        """One attempt of a real-time call, its window held by the caller (background delivery).

        Args:
            kind: Which call.
            body: The checked request body.
        """
        transport = self.runtimes.get().transport
        await transport.request(
            "POST", REALTIME_PATHS[kind], body=sized_json(body, "metadata"), retry=ONE_ATTEMPT
        )

    async def run_bulk(
        self,
        kind: RecordKind,
        records: list[dict[str, Any]],
        on_accepted: Callable[[tuple[int, ...], Job], None],
        on_invalid: RejectionCallback,
    ) -> ImportResult:
        """Send checked records through the bulk pipeline, waiting for the jobs.

        Multipart NDJSON uploads, each with a file name unique to its batch: after a lost
        answer the pipeline adopts the job it finds by that name instead of sending again.

        Args:
            kind: Users or companies.
            records: The records, in the bulk API's fields.
            on_accepted: Told each accepted batch's positions and job.
            on_invalid: Told each record the pipeline refuses.

        Returns:
            The import's result.
        """
        runtime = self.runtimes.get()
        options = ImportOptions(wait=True, on_invalid=on_invalid, on_accepted=on_accepted)
        run = ImportRun(
            runtime.transport,
            runtime.governor,
            kind,
            rows_per_minute=self.rows_per_minute,
            options=options,
        )
        return await run.run(records)

    async def wait_job(self, job: Job) -> Job:
        """Wait until ``job`` is finished, on the one poll schedule.

        Args:
            job: The job.

        Returns:
            Its finished state.
        """
        transport = self.runtimes.get().transport

        async def fetch(job_id: str) -> Job:
            return await fetch_job(transport, job_id)

        return await wait_until_finished(fetch, job, rows_per_minute=self.rows_per_minute)

    async def open(self) -> None:
        """Open the client on the running loop: the task group and background delivery."""
        runtime = self.current()
        if runtime.open_here:
            raise RuntimeError("this AsyncAnalytex client is already open (nested `async with`)")
        # Before the task group: a refused outbox (a Redis one under trio) leaves nothing entered.
        outbox = None
        if self.delivery.outbox is not None:
            outbox = open_outbox(self.delivery.outbox, api_key_hash(self._key))
        # The task group owns the delivery worker: it lives exactly as long as the `async with`
        # block, and is entered and left by the same task, as anyio requires.
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        bulk = None
        if self.requests_per_minute is not None:
            bulk = BulkRoute(
                self.run_bulk, self.wait_job, self._identify_reach, self._quick_identify_reach
            )
        session = DeliverySession(
            self.delivery,
            self.send_once,
            concurrency=self.max_concurrency,
            window=self.window_of,
            outbox=outbox,
            bulk=bulk,
        )
        try:
            await session.start(tasks)
        except BaseException as exc:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._tasks, self._owner = tasks, anyio.get_current_task().id
        self._session = self._last_session = session
        runtime.open_here = True

    async def close(self) -> None:
        """Drain background delivery, leave the task group (from its owner), close the pool."""
        if self.closed:
            return
        self.closed = True
        runtime = self.runtimes.peek()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        runtime.open_here = False
        tasks = self._tasks
        if tasks is not None and self._owner == anyio.get_current_task().id:
            self._tasks = None
            await tasks.__aexit__(None, None, None)
        # A pool of a finished loop cannot be closed from this one (its connections belong to
        # that loop); only the pool of the loop running now is closed.
        if self.owns_http_client and runtime.loop in (None, current_loop()):
            await runtime.http_client.aclose()

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave the ``async with`` block: close, and leave the task group with its outcome.

        Args:
            exc_type: The block's exception type, if it raised.
            exc: The block's exception, if it raised.
            tb: Its traceback.
        """
        await self.close()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.__aexit__(exc_type, exc, tb)
