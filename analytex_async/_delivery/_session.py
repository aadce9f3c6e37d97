"""One opening of a client's background delivery: from ``async with`` to ``aclose()``.

A session owns the queue, the worker and the outbox for one event loop in one process. It
starts by replaying what earlier processes spilled to the outbox, and ends by draining for
``drain_timeout`` seconds, then cancelling what is still in flight and writing everything left
to the outbox (or counting it dropped, with an error logged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup

from .._models import Job
from .._types import RequestSlots
from ._outbox import ClaimedFile, Outbox, OutboxError, OutboxRecord
from ._overflow import BulkOverflow, BulkRun
from ._policy import DeliveryKind, DeliveryPolicy, DeliveryStats
from ._queue import DeliveryQueue, Entry
from ._worker import DeliveryWorker, RealtimeSend

logger = logging.getLogger("analytex_async")


@attrs.frozen
class BulkRoute:
    """What bulk overflow needs from the client.

    Attributes:
        run: Runs the bulk pipeline over checked records (JSON bodies, waiting for the jobs).
        wait_job: Waits until a job is finished.
        reach: How many more identifies the real-time window can start within ``max_delay``.
    """

    run: BulkRun
    wait_job: Callable[[Job], Awaitable[Job]]
    reach: Callable[[], Awaitable[int]]


KEYS = {"identify": "user_id", "identify_company": "company_id", "track": "user_id"}
"""The field of each kind's body that names whose record it is."""


class DeliverySession:
    """Background delivery between a client's opening and its closing.

    Args:
        policy: The delivery policy.
        send: Sends one record in real time.
        concurrency: Records in flight at once at most.
        window: The real-time window of a kind of record (``None``: no limit).
        bulk: How to overflow to the bulk API; ``None`` when the real-time budget is off
            (nothing ever waits for it).
    """

    def __init__(
        self,
        policy: DeliveryPolicy,
        send: RealtimeSend,
        *,
        concurrency: int,
        window: Callable[[DeliveryKind], RequestSlots | None],
        bulk: BulkRoute | None = None,
    ) -> None:
        self.policy = policy
        self.queue = DeliveryQueue(policy)
        self.worker = DeliveryWorker(self.queue, policy, send, window, concurrency=concurrency)
        self.overflow: BulkOverflow | None = None
        if bulk is not None and policy.bulk_overflow:
            self.overflow = BulkOverflow(
                self.queue,
                self.worker,
                bulk.run,
                bulk.wait_job,
                bulk.reach,
            )
        self.outbox = Outbox(policy.outbox) if policy.outbox is not None else None
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._left_in_file: dict[Path, int] = {}
        self._done_files: list[ClaimedFile] = []  # replayed files whose records all ended
        self._tasks: TaskGroup | None = None
        self._closed = False

    async def start(self, tasks: TaskGroup) -> None:
        """Replay the outbox, then start the worker in ``tasks`` (the client's task group).

        Args:
            tasks: The task group that owns the worker.
        """
        self._tasks = tasks
        if self.outbox is not None:
            self.queue.on_settle = self._settled
            for claimed in await self.outbox.claim():
                self._replay(claimed)
        tasks.start_soon(self._run)

    def _replay(self, claimed: ClaimedFile) -> None:
        self._left_in_file[claimed.path] = len(claimed.records)
        for record in claimed.records:
            payload: dict[str, Any] = dict(record.payload)
            key = str(payload.get(KEYS[record.kind], ""))
            entry = self.queue.admit_replayed(record.kind, key, payload)
            entry.source = claimed
        logger.info(
            "background delivery replays %d record(s) from %s",
            len(claimed.records),
            claimed.path,
        )

    def _settled(self, entry: Entry) -> None:
        claimed = entry.source
        if not isinstance(claimed, ClaimedFile):
            return
        self._left_in_file[claimed.path] -= 1
        if self._left_in_file[claimed.path] == 0 and self._tasks is not None:
            del self._left_in_file[claimed.path]
            self._done_files.append(claimed)
            self._tasks.start_soon(self._remove, claimed)

    async def _remove(self, claimed: ClaimedFile) -> None:
        """Delete a replayed file whose records all ended (idempotent: close does it too)."""
        try:
            await claimed.remove()
        except OutboxError as exc:
            # It stays, locked until close: the next start replays it (its records again).
            logger.error("background delivery could not remove a replayed file: %s", exc)  # noqa: TRY400 -- the message says it all

    async def _run(self) -> None:
        try:
            with self._scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self.worker.run)
                    if self.overflow is not None:
                        tasks.start_soon(self.overflow.run)
        finally:
            self._stopped.set()

    def stats(self) -> DeliveryStats:
        """The counters now."""
        return self.queue.stats()

    async def flush(self, timeout: float | None) -> DeliveryStats:  # noqa: ASYNC109 -- the contract's name
        """Wait until every record handed over before the call is delivered or failed.

        Args:
            timeout: Seconds to wait at most; ``None``: no limit.

        Returns:
            The counters once they are.

        Raises:
            TimeoutError: They were not, after ``timeout`` seconds.
        """
        target = self.queue.last_seq
        with anyio.move_on_after(timeout):
            while not self.queue.settled_through(target):
                await self.queue.wait_changed()
            return self.stats()
        pending = self.queue.pending
        raise TimeoutError(
            f"background delivery did not finish within {timeout} s ({pending:,} record(s) "
            "still waiting or in flight); client.background.stats has the counts"
        )

    async def close(self) -> DeliveryStats:
        """Stop admission, drain, then spill or drop what is left; never raises for that.

        Shielded from the caller's cancellation: a host shutting down by cancellation still
        gets the drain (bounded by ``drain_timeout``) and the spill.

        Returns:
            The final counters.
        """
        if self._closed:
            return self.stats()
        self._closed = True
        self.queue.open = False
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.policy.drain_timeout):
                while self.queue.pending:
                    await self.queue.wait_changed()
            self._scope.cancel()
            if self._tasks is not None:
                await self._stopped.wait()
            await self._put_aside(list(self.queue.unsettled()))
            # A removal started as the last records ended may not have run yet: closing the
            # outbox releases the files, and one left would be replayed (sent again) later.
            for claimed in self._done_files:
                await self._remove(claimed)
            if self.outbox is not None:
                await self.outbox.aclose()
        return self.stats()

    async def _put_aside(self, left: list[Entry]) -> None:
        if not left:
            return
        if self.outbox is not None:
            records = [OutboxRecord(entry.kind, entry.payload) for entry in left]
            try:
                await self.outbox.spill(records)
            except OutboxError as exc:
                logger.error("background delivery could not spill to its outbox: %s", exc)  # noqa: TRY400 -- the message says it all
            else:
                for entry in left:
                    self.queue.settle(entry, "spilled")
                logger.warning(
                    "background delivery spilled %d undelivered record(s) to %s",
                    len(left),
                    self.policy.outbox,
                )
                return
        for entry in left:
            self.queue.settle(entry, "dropped")
        stats = self.stats()
        logger.error(
            "background delivery dropped %d undelivered record(s) at shutdown (no outbox); "
            "delivered %d, failed %d, dropped %d in all; set DeliveryPolicy(outbox=...) to keep "
            "them",
            len(left),
            stats.delivered,
            stats.failed,
            stats.dropped,
        )
