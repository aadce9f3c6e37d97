"""The real-time senders: one dispatcher per window, one short task per attempt.

Each lane (identifies, tracks) has a dispatcher that keeps exactly one *taker* on its way: a
task that first waits for a slot of the lane's window (holding nothing), then for the lane to
hold a ready record (holding that one window slot: the only wait-while-holding, and it is on
the lane's own window), then for a concurrency slot, and only then takes the lane's oldest ready
record. As soon as it has one, the dispatcher starts the next taker. The attempt holds its window
slot and its concurrency slot while the request is out and gives both back when it is answered.

A transient failure (no answer, 408, 429, 5xx, a shared governor briefly away) sends the record
to ``RETRYING``: one timer (a heap of due times, not a task per record) makes it ready again
after its delay; it holds nothing meanwhile. A 5xx or a lost connection also pauses the record's
*lane* (its breaker: 1 s, then longer with each failure in a row, up to a minute; then one
probe), so an outage costs a request now and then, not a window's worth of doomed attempts. A
429 pauses the whole window (``Pausable``) before the slot is given back, so the other records
of the lane, and awaited calls, wait out the ``Retry-After``; then one probe goes first. Any other
failure is permanent: the record settles as failed and ``on_error`` hears of it.
"""

from __future__ import annotations

import contextlib
import heapq
import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .._errors import (
    APIConnectionError,
    APIStatusError,
    GovernorUnavailableError,
    InternalServerError,
    RateLimitError,
)
from .._telemetry import waiting
from .._types import Pausable, RequestSlots
from ..governors._windows import PauseGate
from ._ledger import Ledger
from ._policy import DeliveryKind, DeliveryPolicy
from ._record import Lane, Record

logger = logging.getLogger("analytex_async")

RealtimeSend = Callable[[DeliveryKind, Mapping[str, Any]], Awaitable[None]]
"""Sends one real-time request: one attempt, the window already held by the caller."""

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""Seconds between tries of a record whose failure was transient (after the transport's own)."""

MAX_PAUSE = 60.0
"""A 429's pause at most (a window is a minute long)."""


def describe(error: BaseException) -> str:
    """A failure in a log line's words, without what the server said (it may quote the record).

    Args:
        error: The failure.

    Returns:
        Its class, and its status code and request id when it has them.
    """
    if isinstance(error, APIStatusError):
        request_id = f", request id {error.request_id}" if error.request_id else ""
        return f"{type(error).__name__} ({error.status_code}{request_id})"
    return type(error).__name__


def is_transient(error: BaseException) -> bool:
    """Whether a failure may pass by itself, so the record is tried again.

    Args:
        error: What the send raised.

    Returns:
        True for no answer, 408, 429, 5xx and a shared governor briefly unreachable.
    """
    if isinstance(error, (APIConnectionError, GovernorUnavailableError)):
        return True
    if isinstance(error, (RateLimitError, InternalServerError)):
        return True
    return isinstance(error, APIStatusError) and error.status_code == 408


def retry_delay(tries: int) -> float:
    """The delay before a record's next try, after ``tries`` failed ones (at least one)."""
    return RETRY_DELAYS[min(tries - 1, len(RETRY_DELAYS) - 1)]


class Failures:
    """Settles records that failed for good, and tells ``DeliveryPolicy.on_error``.

    Args:
        ledger: The ledger.
        policy: The delivery policy.
    """

    def __init__(self, ledger: Ledger, policy: DeliveryPolicy) -> None:
        self.ledger = ledger
        self.policy = policy

    async def fail(self, record: Record, error: Exception) -> None:
        """Count a record as failed for good and tell ``on_error``.

        Args:
            record: The record.
            error: Why it failed.
        """
        self.ledger.settle(record, "failed")
        logger.warning("background %s failed for good: %s", record.kind, describe(error))
        callback = self.policy.on_error
        if callback is None:
            return
        try:
            outcome = callback(record.kind, record.payload, error)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            # The application's callback must not stop delivery of everything else.
            logger.exception("DeliveryPolicy.on_error raised; delivery goes on")


class RealtimeSenders:
    """Delivers the ready records of the identify and track lanes in real time.

    Args:
        ledger: The ledger whose lanes it empties.
        failures: Where permanent failures go.
        send: Sends one record, one attempt, outside any window.
        window: The real-time window of a kind of record (``None``: no limit).
        concurrency: Attempts in flight at once at most.
    """

    def __init__(
        self,
        ledger: Ledger,
        failures: Failures,
        send: RealtimeSend,
        window: Callable[[DeliveryKind], RequestSlots | None],
        *,
        concurrency: int,
    ) -> None:
        self.ledger = ledger
        self.failures = failures
        self._send = send
        self._window = window
        self._slots = anyio.Semaphore(concurrency)
        # A lane's breaker: a run of 5xx or lost connections pauses the lane (growing pauses,
        # then one probe), so an outage costs a request now and then, not the whole window.
        self._breakers = {"identify": PauseGate(), "track": PauseGate()}
        self._failures = {"identify": 0, "track": 0}  # in a row, per lane
        self._due: list[tuple[float, int, Record]] = []  # retries: (when, seq, record), a heap
        self._due_changed = anyio.Event()
        self.started = 0  # identify attempts started (bulk overflow's reach estimate)

    async def run(self) -> None:
        """Deliver until cancelled (the session cancels it when the client closes)."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._dispatch, tasks, self.ledger.identifies, "identify")
            tasks.start_soon(self._dispatch, tasks, self.ledger.tracks, "track")
            tasks.start_soon(self._retry_when_due)

    async def _dispatch(self, tasks: TaskGroup, lane: Lane, kind: DeliveryKind) -> None:
        while True:
            await self.ledger.wait_ready(lane)
            took = anyio.Event()
            tasks.start_soon(self._take_and_send, lane, kind, took)
            await took.wait()  # one taker at a time per lane

    async def _take_and_send(self, lane: Lane, kind: DeliveryKind, took: anyio.Event) -> None:
        window = self._window(kind)
        breaker = self._breakers[kind]
        token = object()
        error: Exception | None = None
        try:
            async with contextlib.AsyncExitStack() as held:
                held.callback(breaker.leave, token)
                await breaker.enter(token)
                pauses = breaker.pauses
                if window is not None:
                    with waiting("rate"):
                        await held.enter_async_context(window.slot())
                await self.ledger.wait_ready(lane)
                await held.enter_async_context(self._slots)
                record = self.ledger.take(lane)
                took.set()
                if record is None:  # cannot happen: nothing else takes from a lane
                    return
                if kind == "identify":
                    self.started += 1
                error = await self._attempt(record, window)
                self._trip(kind, error, pauses)
        finally:
            took.set()  # cancelled while waiting: let the dispatcher go on (or stop)
        if error is not None:
            self._retry_later(record, error, paused=isinstance(window, Pausable))

    async def _attempt(self, record: Record, window: RequestSlots | None) -> Exception | None:
        """Send once; settle on success or a permanent failure; a transient failure is returned."""
        try:
            await self._send(record.kind, record.payload)
        except Exception as exc:  # sorted below; cancellation is not an Exception
            if isinstance(exc, RateLimitError) and isinstance(window, Pausable):
                # Before the slot is given back: nobody else draws a 429 meanwhile.
                window.pause(min(exc.retry_after or retry_delay(1), MAX_PAUSE))
            if is_transient(exc):
                return exc
            await self.failures.fail(record, exc)
            return None
        self.ledger.settle(record, "delivered")
        return None

    def _trip(self, kind: DeliveryKind, error: Exception | None, pauses: int) -> None:
        """Count a lane's failures in a row; pause it after a 5xx or a lost connection."""
        if error is None or isinstance(error, RateLimitError):
            if error is None:
                self._failures[kind] = 0
            return  # a 429 is the window's to handle
        breaker = self._breakers[kind]
        if breaker.pauses != pauses:
            return  # another attempt of the same run already paused the lane
        self._failures[kind] += 1
        delay = retry_delay(self._failures[kind])
        breaker.pause(delay)
        logger.warning(
            "background %s sends pause %.0f s after %d failure(s) in a row (%s); then one "
            "request probes before the rest",
            kind,
            delay,
            self._failures[kind],
            describe(error),
        )

    def _retry_later(self, record: Record, error: Exception, *, paused: bool) -> None:
        record.tries += 1
        if isinstance(error, RateLimitError) and paused:
            # The 429 paused the whole window: the record is ready again at once, and the
            # window holds it (and every other) back until the pause is over.
            delay = 0.0
        else:
            delay = retry_delay(record.tries)
            if isinstance(error, RateLimitError) and error.retry_after is not None:
                delay = max(delay, min(error.retry_after, MAX_PAUSE))
        logger.debug(
            "background %s will be sent again in %.0f s: %s", record.kind, delay, describe(error)
        )
        self.ledger.retrying(record)
        heapq.heappush(self._due, (anyio.current_time() + delay, record.seq, record))
        self._due_changed.set()

    async def _retry_when_due(self) -> None:
        """One timer for every retrying record: each is ready again when its delay is over."""
        while True:
            if self._due:
                now = anyio.current_time()
                while self._due and self._due[0][0] <= now:
                    self.ledger.ready_again(heapq.heappop(self._due)[2])
                wait = self._due[0][0] - now if self._due else math.inf
            else:
                wait = math.inf
            with anyio.move_on_after(wait):
                await self._due_changed.wait()
            self._due_changed = anyio.Event()
