"""One opening of a client's background delivery: from ``async with`` to ``aclose()``.

A session owns the ledger, the senders and the outbox for one event loop in one process. It
starts by seeding the windows with the send times a closing client left in the outbox and
replaying the records it left there, and ends by draining for ``drain_timeout`` seconds, then
cancelling what is still in flight and writing everything left to the outbox, each chain in its
order (or counting it dropped, with an error logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs

from .._models import Job
from .._types import RequestSlots
from ..governors._windows import RequestWindow
from ._ledger import Ledger
from ._outbox import OutboxError, OutboxRecord
from ._outboxes import OutboxStore, Replayed
from ._overflow import BulkOverflow, BulkRun
from ._policy import DeliveryKind, DeliveryPolicy, DeliveryStats
from ._record import Outcome, Record
from ._senders import Failures, RealtimeSend, RealtimeSenders

logger = logging.getLogger("analytex_async")


@attrs.frozen
class BulkRoute:
    """What bulk overflow needs from the client.

    Attributes:
        run: Runs the bulk pipeline over checked records (NDJSON uploads, waiting for the jobs).
        wait_job: Waits until a job is finished.
        reach: How many more identifies the real-time window can start within ``max_delay``.
        quick_reach: Given the identifies already waiting, the same without a request when
            the window can tell at once (else ``None``); when they are fewer than its free
            slots, it may answer just that (O(1)).
    """

    run: BulkRun
    wait_job: Callable[[Job], Awaitable[Job]]
    reach: Callable[[], Awaitable[int]]
    quick_reach: Callable[[int], int | None]


KEYS = {"identify": "user_id", "identify_company": "company_id", "track": "user_id"}
"""The field of each kind's body that names whose record it is."""

CLOCK_MARGIN = 1.0
"""Seconds a seeded answer is taken as later than its recorded time: the closing client's clock
(another host's, with a Redis outbox) may run a little behind this one's."""

WINDOWS: dict[str, DeliveryKind] = {"identify": "identify", "track": "track"}
"""The real-time windows whose send times the outbox keeps, and a kind sent in each."""


class DeliverySession:
    """Background delivery between a client's opening and its closing.

    Args:
        policy: The delivery policy.
        send: Sends one record in real time.
        concurrency: Records in flight at once at most.
        window: The real-time window of a kind of record (``None``: no limit).
        outbox: The outbox store, if the policy names one.
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
        outbox: OutboxStore | None = None,
        bulk: BulkRoute | None = None,
    ) -> None:
        self.policy = policy
        self.ledger = Ledger(policy)
        self.failures = Failures(self.ledger, policy)
        self.senders = RealtimeSenders(
            self.ledger, self.failures, send, window, concurrency=concurrency
        )
        self._window = window
        self.overflow: BulkOverflow | None = None
        if bulk is not None and policy.bulk_overflow:
            self.overflow = BulkOverflow(
                self.ledger,
                self.senders,
                self.failures,
                run_bulk=bulk.run,
                wait_job=bulk.wait_job,
                reach=bulk.reach,
                quick_reach=bulk.quick_reach,
            )
            self.ledger.overflow = self.overflow
        self.outbox = outbox
        self.ledger.on_settle = self._settled
        self._acks: list[object] = []
        self._acks_waiting = anyio.Event()
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._started = False
        self._closed = False

    async def start(self, tasks: anyio.abc.TaskGroup) -> None:
        """Seed the windows and replay the outbox, then start the senders in ``tasks``.

        Args:
            tasks: The task group that owns the senders (the client's).
        """
        if self.outbox is not None:
            self._seed_windows(await self.outbox.load_send_times())
            self._replay(await self.outbox.claim())
        tasks.start_soon(self._run)
        self._started = True

    def _seed_windows(self, times: dict[str, list[float]]) -> None:
        now = time.time()
        for name, kind in WINDOWS.items():
            window = self._window(kind)
            if isinstance(window, RequestWindow) and times.get(name):
                # A shared (Redis) window already holds every process's requests.
                window.seed([now - answered - CLOCK_MARGIN for answered in times[name]])

    def _replay(self, replayed: list[Replayed]) -> None:
        for item in replayed:
            payload: dict[str, Any] = dict(item.record.payload)
            key = str(payload.get(KEYS[item.record.kind], ""))
            self.ledger.admit_replayed(item.record.kind, key, payload, item.receipt)

    def _settled(self, record: Record, outcome: Outcome) -> None:
        # A replayed record leaves the outbox once it ended here; one spilled again at close
        # is acknowledged after the spill, one dropped never (it stays for a later start).
        if record.receipt is not None and outcome in ("delivered", "failed"):
            self._acks.append(record.receipt)
            self._acks_waiting.set()

    async def _run(self) -> None:
        try:
            with self._scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self.senders.run)
                    if self.overflow is not None:
                        tasks.start_soon(self.overflow.run)
                    if self.outbox is not None:
                        tasks.start_soon(self._acknowledge_forever)
                        if self.outbox.claim_interval is not None:
                            tasks.start_soon(self._claim_forever, self.outbox.claim_interval)
        finally:
            self._stopped.set()

    async def _acknowledge_forever(self) -> None:
        while True:
            await self._acks_waiting.wait()
            self._acks_waiting = anyio.Event()
            await self._acknowledge()

    async def _acknowledge(self) -> None:
        acks, self._acks = self._acks, []
        if acks and self.outbox is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self.outbox.acknowledge(acks)
                except (OutboxError, OSError) as exc:
                    # Left in the outbox: replayed again later (delivery is at-least-once).
                    logger.error("background delivery could not clear its outbox: %s", exc)  # noqa: TRY400 -- the message says it all

    async def _claim_forever(self, interval: float) -> None:
        assert self.outbox is not None  # noqa: S101 -- started only with an outbox
        while True:
            await anyio.sleep(interval)
            try:
                self._replay(await self.outbox.claim())
            except (OutboxError, OSError) as exc:
                logger.warning("background delivery could not claim from its outbox: %s", exc)

    def stats(self) -> DeliveryStats:
        """The counters now."""
        return self.ledger.stats()

    async def flush(self, timeout: float | None) -> DeliveryStats:  # noqa: ASYNC109 -- the contract's name
        """Wait until every record handed over before the call is delivered or failed.

        Args:
            timeout: Seconds to wait at most; ``None``: no limit.

        Returns:
            The counters once they are.

        Raises:
            TimeoutError: They were not, after ``timeout`` seconds.
        """
        target = self.ledger.last_seq
        with anyio.move_on_after(timeout):
            while not self.ledger.settled_through(target):
                await self.ledger.wait_changed()
            return self.stats()
        pending = self.ledger.pending
        raise TimeoutError(
            f"background delivery did not finish within {timeout} s ({pending:,} record(s) "
            "not yet delivered); client.background.stats has the counts"
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
        self.ledger.open = False
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.policy.drain_timeout):
                while self.ledger.pending:
                    await self.ledger.wait_changed()
            self._scope.cancel()
            if self._started:
                await self._stopped.wait()
            await self._put_aside(list(self.ledger.unsettled()))
            if self.outbox is not None:
                await self._acknowledge()
                await self.outbox.save_send_times(self._send_times())
                await self.outbox.aclose()
        return self.stats()

    def _send_times(self) -> dict[str, list[float]]:
        now = time.time()
        times: dict[str, list[float]] = {}
        for name, kind in WINDOWS.items():
            window = self._window(kind)
            if isinstance(window, RequestWindow):
                times[name] = [now - age for age in window.answered_ages()]
        return times

    async def _put_aside(self, left: Sequence[Record]) -> None:
        if not left:
            return
        if self.outbox is not None:
            records = [OutboxRecord(record.kind, record.payload) for record in left]
            try:
                await self.outbox.spill(records)
            except (OutboxError, OSError) as exc:
                logger.error(  # noqa: TRY400 -- the message says it all
                    "background delivery could not spill %d record(s) to its outbox, so they "
                    "are dropped (replayed records stay in the outbox): %s",
                    len(left),
                    exc,
                )
            else:
                for record in left:
                    if record.receipt is not None:
                        self._acks.append(record.receipt)  # written again: the old copy goes
                    self.ledger.settle(record, "spilled")
                logger.warning(
                    "background delivery spilled %d undelivered record(s) to its outbox",
                    len(left),
                )
                return
        for record in left:
            self.ledger.settle(record, "dropped")
        stats = self.stats()
        logger.error(
            "background delivery dropped %d undelivered record(s) at shutdown%s; "
            "delivered %d, failed %d, dropped %d in all%s",
            len(left),
            "" if self.outbox is not None else " (no outbox)",
            stats.delivered,
            stats.failed,
            stats.dropped,
            "" if self.outbox is not None else "; set DeliveryPolicy(outbox=...) to keep them",
        )
