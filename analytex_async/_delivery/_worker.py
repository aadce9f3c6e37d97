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

import inspect
import logging
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
from ._policy import DeliveryKind, DeliveryPolicy
from ._queue import DeliveryQueue, Entry

logger = logging.getLogger("analytex_async")

RealtimeSend = Callable[[DeliveryKind, Mapping[str, Any]], Awaitable[None]]
"""Sends one real-time request (the client's transport, with its windows)."""

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""Seconds between tries of a record whose failure was transient (after the transport's own)."""


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
    """Delivers one client's queued records.

    Args:
        queue: The queue to take from.
        policy: The delivery policy (``on_error``).
        send: Sends one record in real time.
        concurrency: Records in flight at once at most.
    """

    def __init__(
        self,
        queue: DeliveryQueue,
        policy: DeliveryPolicy,
        send: RealtimeSend,
        *,
        concurrency: int,
    ) -> None:
        self.queue = queue
        self.policy = policy
        self._send = send
        self._slots = anyio.Semaphore(concurrency)
        self._tasks: TaskGroup | None = None

    async def run(self) -> None:
        """Deliver until cancelled (the client cancels it when it closes)."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            while True:
                # A free slot first, then the entry: while every slot is busy, entries stay
                # in the queue, where a later identify of the same user can still merge.
                await self._slots.acquire()
                entry = self.queue.take()
                while entry is None:
                    await self.queue.added.wait()
                    entry = self.queue.take()
                tasks.start_soon(self._deliver, entry)

    async def _deliver(self, entry: Entry) -> None:
        try:
            if entry.after is not None:
                await entry.after.wait_answered()
            await self._send_until_done(entry)
        finally:
            self._slots.release()

    async def _send_until_done(self, entry: Entry) -> None:
        tries = 0
        while True:
            try:
                await self._send(entry.kind, entry.payload)
            except Exception as exc:  # sorted below; cancellation is not an Exception
                if is_transient(exc):
                    delay = RETRY_DELAYS[min(tries, len(RETRY_DELAYS) - 1)]
                    tries += 1
                    logger.warning(
                        "background %s will be sent again in %.0f s: %s", entry.kind, delay, exc
                    )
                    await anyio.sleep(delay)
                    continue
                await self.fail(entry, exc)
                return
            self.queue.settle(entry, "delivered")
            return

    async def fail(self, entry: Entry, error: Exception) -> None:
        """Count a record as failed for good and tell ``on_error``.

        Args:
            entry: The record.
            error: Why it failed.
        """
        self.queue.settle(entry, "failed")
        logger.warning("background %s failed for good: %s", entry.kind, error)
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
