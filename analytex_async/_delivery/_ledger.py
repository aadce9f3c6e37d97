"""The ledger: every background record, its chain, its state, and the counters read from them.

Everything here is synchronous and runs on the event loop's thread: a request handler's
``client.background.identify(...)`` only validates, appends to its key's chain (or merges into
an unsent identify) and returns. The senders (``_senders``, ``_overflow``) take *ready* records
from the lanes and report back how each attempt ended. See the package docstring for the model.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

import anyio

from .._constants import MAX_REQUEST_BYTES
from .._errors import QueueFullError
from .._otel import watch_queue
from .._telemetry import count
from .._transport import encode_json
from ._policy import DeliveryKind, DeliveryPolicy, DeliveryStats
from ._record import UNSENT, Lane, Outcome, Record, Router, State, chain_of, merge_identify

logger = logging.getLogger("analytex_async")

DROP_WARNING_INTERVAL = 60.0
"""Seconds between two warnings about dropped records, at least."""


class Ledger:
    """The records of one client's background delivery, their chains, lanes and counters.

    Args:
        policy: The delivery policy (queue size, what to do when full).

    Attributes:
        overflow: Picks the bulk route for identifies the window cannot carry in time
            (``None``: everything goes real-time). Set by the session.
    """

    def __init__(self, policy: DeliveryPolicy) -> None:
        self.policy = policy
        self.overflow: Router | None = None
        self.identifies: Lane = OrderedDict()  # the identify window's lane (users, companies)
        self.tracks: Lane = OrderedDict()  # the track window's lane
        self._chains: dict[str, deque[Record]] = {}
        self._unsent_identify: dict[str, Record] = {}  # chain -> its latest unsent identify
        self._unsettled: OrderedDict[int, Record] = OrderedDict()
        self._seq = 0
        self.open = True
        self._ready = anyio.Event()  # set when a record becomes ready
        self._changed_event: anyio.Event | None = None  # made only while someone waits
        self._last_drop_warning = -float("inf")
        self._drops_unreported = 0
        self.on_settle: Callable[[Record, Outcome], None] | None = None
        self.queued = self.delivered = self.coalesced = self.via_bulk = 0
        self.dropped = self.failed = self.spilled = self.replayed = 0
        watch_queue(self)

    # -- admission ---------------------------------------------------------------------------

    def admit(self, kind: DeliveryKind, key: str, payload: dict[str, Any], size: int) -> None:
        """Hand over one checked record: merge it into its chain's unsent identify, or append.

        Args:
            kind: Which call.
            key: The user or company id.
            payload: The checked request body.
            size: Its encoded size in bytes.

        Raises:
            RuntimeError: The client is closing or closed.
            QueueFullError: The queue is full and the policy says ``"raise"``.
        """
        if not self.open:
            raise RuntimeError(
                "this client's background delivery is closed: use client.background inside "
                "`async with AsyncAnalytex(...) as client:`"
            )
        chain = chain_of(kind, key)
        if kind != "track" and self._merge(chain, payload, size):
            self.queued += 1
            self.coalesced += 1
            return
        if self.pending >= self.policy.queue_size:
            if self.policy.on_full == "raise":
                raise QueueFullError(
                    f"the background queue is full ({self.policy.queue_size:,} records not yet "
                    "delivered); raise DeliveryPolicy.queue_size or slow down"
                )
            self.queued += 1
            self.dropped += 1
            count("analytex.background.dropped", kind)
            self._warn_dropped()
            self._changed()
            return
        self._append(kind, chain, payload, size)

    def admit_replayed(
        self, kind: DeliveryKind, key: str, payload: dict[str, Any], receipt: object
    ) -> Record:
        """Queue a record read back from the outbox: never dropped, never merged away.

        A replayed record is older than anything handed over in this process that is not sent
        yet, so it goes into its chain ahead of those (a client that claims records while open,
        from a Redis outbox, must not let a spilled old value land after a newer one).

        Args:
            kind: Which call.
            key: The user or company id.
            payload: The request body.
            receipt: The outbox's handle, acknowledged when the record settles.

        Returns:
            Its record.
        """
        self.replayed += 1
        name = chain_of(kind, key)
        records = self._chains.get(name)
        if records is None or all(r.receipt is not None or r.state not in UNSENT for r in records):
            record = self._append(kind, name, payload, len(encode_json(payload)))
            record.receipt = receipt
            return record
        index = next(i for i, r in enumerate(records) if r.receipt is None and r.state in UNSENT)
        self._seq += 1
        record = Record(kind, name, payload, len(encode_json(payload)), self._seq)
        record.receipt = receipt
        self.queued += 1
        self._unsettled[record.seq] = record
        if index == 0:  # ahead of a head not sent yet: the head waits again, behind it
            head = records[0]
            if head.lane is not None:
                del head.lane[head.seq]
            head.state, head.lane = State.WAITING, None
        records.insert(index, record)
        if index == 0:
            self._make_ready(record)
        self._changed()
        return record

    def _merge(self, chain: str, payload: dict[str, Any], size: int) -> bool:
        into = self._unsent_identify.get(chain)
        if into is None:
            return False
        merged = merge_identify(into.payload, payload)
        merged_size = into.size + size  # an upper bound: no encoding for the common case
        if merged_size > MAX_REQUEST_BYTES:
            merged_size = len(encode_json(merged))
            if merged_size > MAX_REQUEST_BYTES:
                return False  # the two stay separate records, in order
        into.payload, into.size = merged, merged_size
        if into.state is State.READY and into.lane is not None:
            lane = self._route(into, self._followed(into), into.lane)
            if lane is not into.lane:  # the merge changed what the bulk API would take
                self._move(into, lane)
        return True

    def _append(self, kind: DeliveryKind, chain: str, payload: dict[str, Any], size: int) -> Record:
        self._seq += 1
        record = Record(kind, chain, payload, size, self._seq)
        self.queued += 1
        self._unsettled[record.seq] = record
        records = self._chains.get(chain)
        if records is None:
            records = self._chains[chain] = deque()
        records.append(record)
        if kind != "track":
            self._unsent_identify[chain] = record
        if len(records) == 1:
            self._make_ready(record)
        else:
            head = records[0]
            if head.state is State.READY and head.lane is not None:
                # A follower arrived: a head waiting for the bulk route goes real-time.
                lane = self._route(head, True, head.lane)
                if lane is not head.lane:
                    self._move(head, lane)
        self._changed()
        return record

    def _warn_dropped(self) -> None:
        self._drops_unreported += 1
        now = anyio.current_time()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL:
            logger.warning(
                "background delivery dropped %d record(s): the queue was full (%d not yet "
                "delivered); %d dropped in all",
                self._drops_unreported,
                self.pending,
                self.dropped,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    # -- readiness ---------------------------------------------------------------------------

    def _followed(self, record: Record) -> bool:
        return len(self._chains[record.chain]) > 1

    def _route(self, record: Record, followed: bool, current: Lane | None = None) -> Lane:
        """The lane of a record that is (or becomes) the head of its chain.

        Tracks go to the track lane, identifies to the identify lane, unless bulk overflow
        takes them as they become ready. A record once in the identify lane stays there
        (choosing costs O(1) per record, never a rescan).
        """
        if record.kind == "track":
            return self.tracks
        if self.overflow is None or current is self.identifies:
            return self.identifies
        return self.overflow.route(record, followed)

    def _make_ready(self, record: Record) -> None:
        lane = self._route(record, self._followed(record))
        record.state = State.READY
        record.lane = lane
        lane[record.seq] = record
        self._ready.set()

    def _move(self, record: Record, lane: Lane) -> None:
        assert record.lane is not None  # noqa: S101 -- only ready records move
        del record.lane[record.seq]
        record.lane = lane
        lane[record.seq] = record
        self._ready.set()

    async def wait_ready(self, lane: Lane) -> None:
        """Wait until ``lane`` holds a ready record."""
        while not lane:
            if self._ready.is_set():
                self._ready = anyio.Event()
            await self._ready.wait()

    def take(self, lane: Lane) -> Record | None:
        """The lane's oldest ready record, now ``SENDING`` (no longer mergeable).

        Args:
            lane: A lane.

        Returns:
            The record, or ``None`` when the lane is empty.
        """
        if not lane:
            return None
        _, record = lane.popitem(last=False)
        self._sent(record)
        return record

    def take_many(self, lane: Lane, limit: int) -> list[Record]:
        """Up to ``limit`` of the lane's oldest ready records, now ``SENDING``.

        Args:
            lane: A lane.
            limit: How many at most.

        Returns:
            The records, oldest first.
        """
        taken: list[Record] = []
        while lane and len(taken) < limit:
            _, record = lane.popitem(last=False)
            self._sent(record)
            taken.append(record)
        return taken

    def _sent(self, record: Record) -> None:
        record.state = State.SENDING
        record.lane = None
        if self._unsent_identify.get(record.chain) is record:
            del self._unsent_identify[record.chain]

    def retrying(self, record: Record) -> None:
        """Its attempt failed transiently: it waits for its delay, holding nothing."""
        record.state = State.RETRYING

    def resume(self, record: Record) -> bool:
        """A record retrying without a lane (a bulk batch) is sent again; False if settled.

        Args:
            record: A ``RETRYING`` record.

        Returns:
            Whether it is ``SENDING`` again (a close may have spilled it meanwhile).
        """
        if record.state is not State.RETRYING:
            return False
        record.state = State.SENDING
        return True

    def ready_again(self, record: Record, lane: Lane | None = None) -> None:
        """Its retry delay is over (or its route refused it): ready again, first in its lane.

        Args:
            record: A ``RETRYING`` or ``SENDING`` record.
            lane: The lane; by default the one its route picks.
        """
        if record.state is State.SETTLED:
            return
        target = lane if lane is not None else self._route(record, self._followed(record))
        record.state = State.READY
        record.lane = target
        target[record.seq] = record
        target.move_to_end(record.seq, last=False)
        self._ready.set()

    def in_job(self, record: Record) -> None:
        """Accepted in a bulk job: it stays unsettled until the job finishes."""
        record.state = State.IN_JOB
        record.via_bulk = True

    # -- settling ----------------------------------------------------------------------------

    def settle(self, record: Record, outcome: Outcome) -> None:
        """Count a record's end, once, and free its bookkeeping; its chain's next is ready.

        Args:
            record: The record.
            outcome: How it ended.
        """
        if record.state is State.SETTLED:
            return
        if record.state is State.READY and record.lane is not None:
            del record.lane[record.seq]
        record.lane = None
        record.state = State.SETTLED
        del self._unsettled[record.seq]
        if self._unsent_identify.get(record.chain) is record:
            del self._unsent_identify[record.chain]
        chain = self._chains[record.chain]
        head = chain[0] is record
        chain.remove(record)  # the head, but for a spill or a drop at close
        if not chain:
            del self._chains[record.chain]
        elif head and chain[0].state is State.WAITING:
            self._make_ready(chain[0])
        if outcome == "delivered":
            self.delivered += 1
            if record.via_bulk:
                self.via_bulk += 1
        elif outcome == "failed":
            self.failed += 1
        elif outcome == "spilled":
            self.spilled += 1
            count("analytex.background.spilled", record.kind)
        else:
            self.dropped += 1
            count("analytex.background.dropped", record.kind)
        self._changed()
        if self.on_settle is not None:
            self.on_settle(record, outcome)

    def unsettled(self) -> Iterator[Record]:
        """Every record not settled yet: chain by chain (in admission order), each in its order."""
        done: set[str] = set()
        for record in list(self._unsettled.values()):
            if record.chain not in done:
                done.add(record.chain)
                yield from list(self._chains[record.chain])

    # -- what flush and close wait for -------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The admission number of the newest record."""
        return self._seq

    def settled_through(self, seq: int) -> bool:
        """Whether every record admitted up to ``seq`` has settled."""
        return not self._unsettled or next(iter(self._unsettled)) > seq

    @property
    def pending(self) -> int:
        """Records not settled: waiting, ready, in flight, retrying or in a bulk job."""
        return len(self._unsettled)

    def states(self) -> dict[State, int]:
        """How many records are in each state now (for tests and diagnostics)."""
        found = dict.fromkeys(State, 0)
        for record in self._unsettled.values():
            found[record.state] += 1
        return found

    def _changed(self) -> None:
        if self._changed_event is not None:
            self._changed_event.set()
            self._changed_event = None

    async def wait_changed(self) -> None:
        """Wait until a record is admitted or settled."""
        if self._changed_event is None:
            self._changed_event = anyio.Event()
        await self._changed_event.wait()

    def stats(self) -> DeliveryStats:
        """The counters now (the balance holds at every instant)."""
        return DeliveryStats(
            queued=self.queued,
            pending=self.pending,
            delivered=self.delivered,
            coalesced=self.coalesced,
            via_bulk=self.via_bulk,
            dropped=self.dropped,
            failed=self.failed,
            spilled=self.spilled,
            replayed=self.replayed,
        )
