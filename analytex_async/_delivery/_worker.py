"""The background worker: takes queued records and delivers them, retrying what is transient.

It runs in a task group the client owns (opened by ``async with``), so it never outlives the
client. Each record is sent in its own task, at most ``concurrency`` at once; records stay in
the queue (where later identifies can still merge into them) until a slot is free. Sends share
the client's real-time windows with awaited calls, so the client as a whole never draws an
avoidable 429. A transient failure (no answer, 408, 429, 5xx, a shared governor briefly away) is
retried with backoff for as long as the client is open; any other failure is permanent: counted
as failed and handed to ``on_error``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import deque
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
from .._types import RequestSlots
from ._policy import DeliveryKind, DeliveryPolicy
from ._queue import DeliveryQueue, Entry

logger = logging.getLogger("analytex_async")

RealtimeSend = Callable[[DeliveryKind, Mapping[str, Any]], Awaitable[None]]
"""Sends one real-time request: one attempt, the window already held by the caller."""

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""Seconds between tries of a record whose failure was transient (after the transport's own)."""


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


class DeliveryWorker:
    """Delivers one client's queued records, one lane per real-time window.

    A send task first holds a slot of its window, and only then takes the next record of its
    lane: records wait in the queue, where later identifies of the same user still merge into
    them and bulk overflow can still take them, never in a pile of tasks blocked on the window.
    Every attempt holds a slot of its own (the transport is told to try once; the worker retries),
    so the window counts exactly what the server sees.

    Args:
        queue: The queue to take from.
        policy: The delivery policy (``on_error``).
        send: Sends one record in real time, one attempt, outside any window.
        window: The real-time window of a kind of record (``None``: no limit).
        concurrency: Records in flight at once at most.
    """

    def __init__(
        self,
        queue: DeliveryQueue,
        policy: DeliveryPolicy,
        send: RealtimeSend,
        window: Callable[[DeliveryKind], RequestSlots | None],
        *,
        concurrency: int,
    ) -> None:
        self.queue = queue
        self.policy = policy
        self._send = send
        self._window = window
        self._slots = anyio.Semaphore(concurrency)
        # Send tasks started for a lane that have not taken their record yet: a lane starts a
        # task only for a record no task is already on its way to take, so no task holds a
        # window slot (which the window counts for a whole period) only to find nothing.
        self._takers: dict[DeliveryKind, int] = {}

    async def run(self) -> None:
        """Deliver until cancelled (the client cancels it when it closes)."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._lane, tasks, self.queue.identifies, "identify")
            tasks.start_soon(self._lane, tasks, self.queue.tracks, "track")

    async def _lane(self, tasks: TaskGroup, lane: deque[Entry], kind: DeliveryKind) -> None:
        self._takers[kind] = 0
        while True:
            await self.queue.wait_for_more(lane, lambda: self._takers[kind])
            await self._slots.acquire()
            if len(lane) <= self._takers[kind]:  # overflow or a drain took it meanwhile
                self._slots.release()
                continue
            self._takers[kind] += 1
            tasks.start_soon(self._deliver_next, lane, kind)

    async def _deliver_next(self, lane: deque[Entry], kind: DeliveryKind) -> None:
        taking = True
        try:
            window = self._window(kind)
            async with window.slot() if window is not None else contextlib.nullcontext():
                entry = self.queue.take(lane)
                self._takers[kind] -= 1
                taking = False
                if entry is None:
                    return  # taken by bulk overflow, or merged, while this task waited
                if entry.after is not None:
                    await entry.after.wait_answered()
                error = await self._attempt(entry)
            if error is not None:
                await self._retry(entry, error)
        finally:
            if taking:  # cancelled while waiting for the window
                self._takers[kind] -= 1
            self._slots.release()

    async def _attempt(self, entry: Entry) -> Exception | None:
        """Send once; settle on success or a permanent failure; a transient failure is returned."""
        try:
            await self._send(entry.kind, entry.payload)
        except Exception as exc:  # sorted below; cancellation is not an Exception
            if is_transient(exc):
                return exc
            await self.fail(entry, exc)
            return None
        self.queue.settle(entry, "delivered")
        return None

    async def _retry(self, entry: Entry, first: Exception) -> None:
        tries = 0
        error: Exception | None = first
        while error is not None:
            delay = RETRY_DELAYS[min(tries, len(RETRY_DELAYS) - 1)]
            if isinstance(error, RateLimitError) and error.retry_after is not None:
                delay = max(delay, min(error.retry_after, RETRY_DELAYS[-1]))
            tries += 1
            logger.warning(
                "background %s will be sent again in %.0f s: %s",
                entry.kind,
                delay,
                describe(error),
            )
            await anyio.sleep(delay)
            window = self._window(entry.kind)
            async with window.slot() if window is not None else contextlib.nullcontext():
                error = await self._attempt(entry)

    async def fail(self, entry: Entry, error: Exception) -> None:
        """Count a record as failed for good and tell ``on_error``.

        Args:
            entry: The record.
            error: Why it failed.
        """
        self.queue.settle(entry, "failed")
        logger.warning("background %s failed for good: %s", entry.kind, describe(error))
        callback = self.policy.on_error
        if callback is None:
            return
        try:
            outcome = callback(entry.kind, entry.payload, error)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            # The application's callback must not stop delivery of everything else.
            logger.exception("DeliveryPolicy.on_error raised; delivery goes on")
