"""The background queue: admission, coalescing, the order rules, and the counters.

Everything here is synchronous and runs on the event loop's thread: a request handler's
``client.background.identify(...)`` only validates, appends (or merges) and returns. The worker
(``_worker``) takes entries from the front.

Order rules (the contract's "Coalescing"): identifies of one user merge while the earlier one is
still waiting (metadata last-write-wins, a later company replaces the earlier one, a later
identify without one keeps it); the same for companies. Tracks never merge, and a track waits for
the response to its user's latest identify queued before it.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import anyio

from .._errors import QueueFullError
from .._otel import watch_queue
from .._telemetry import count
from ._policy import DeliveryKind, DeliveryPolicy, DeliveryStats

logger = logging.getLogger("analytex_async")

Outcome = Literal["delivered", "failed", "spilled", "dropped"]

DROP_WARNING_INTERVAL = 60.0
"""Seconds between two warnings about dropped records, at least."""


class Entry:
    """One record waiting or in flight: the request body of one real-time call.

    Attributes:
        kind: Which call.
        key: The user id (identify, track) or company id (identify_company).
        payload: The request body as it will be sent.
        seq: Its place in admission order.
        after: For a track, the identify of the same user it must follow.
        tracks_after: For an identify, tracks of the same user queued after it, not yet sent.
        via_bulk: Sent through the bulk API.
        source: The outbox file it was replayed from, if any.
    """

    __slots__ = (
        "_done",
        "after",
        "answered",
        "key",
        "kind",
        "payload",
        "seq",
        "settled",
        "source",
        "tracks_after",
        "via_bulk",
        "waiting",
    )

    def __init__(self, kind: DeliveryKind, key: str, payload: dict[str, Any], seq: int) -> None:
        self.kind = kind
        self.key = key
        self.payload = payload
        self.seq = seq
        self.after: Entry | None = None
        self.tracks_after = 0
        self.via_bulk = False
        self.source: object | None = None
        self.answered = False
        self.settled = False
        self.waiting = True
        self._done: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"Entry({self.kind}, seq={self.seq})"

    def mark_answered(self) -> None:
        """The server answered its request: tracks waiting for it may go."""
        self.answered = True
        if self._done is not None:
            self._done.set()

    async def wait_answered(self) -> None:
        """Wait until ``mark_answered`` (or ``settle``) was called."""
        if self.answered:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()


def merge_identify(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge a later identify (user or company) body into a waiting one.

    Args:
        into: The waiting body, changed in place.
        new: The later body.
    """
    if "metadata" in new:
        into["metadata"] = {**into.get("metadata", {}), **new["metadata"]}
    if "company" in new:
        into["company"] = new["company"]


class DeliveryQueue:
    """The records of one client's background delivery, and its counters.

    Args:
        policy: The delivery policy (queue size, what to do when full).
        clock: Where "now" comes from, for the drop warnings' pacing.
    """

    def __init__(self, policy: DeliveryPolicy) -> None:
        self.policy = policy
        # Two lanes, one per real-time window: identifies (users and companies) and tracks.
        # A track's order after its user's identify is kept by ``Entry.after``, not by the lane.
        self.identifies: deque[Entry] = deque()
        self.tracks: deque[Entry] = deque()
        self.in_flight: set[Entry] = set()
        self._identify: dict[str, Entry] = {}  # user id -> its identify still waiting
        self._company: dict[str, Entry] = {}  # company id -> its identify still waiting
        self._latest_identify: dict[str, Entry] = {}  # user id -> latest unanswered identify
        self._unsettled: list[int] = []  # a heap of seqs, settled ones removed lazily
        self._settled_seqs: set[int] = set()
        self._seq = 0
        self.open = True
        self.added = anyio.Event()
        self._changed_event: anyio.Event | None = None  # made only while someone waits
        self._last_drop_warning = -float("inf")
        self._drops_unreported = 0
        self.on_settle: Callable[[Entry], None] | None = None
        self.queued = self.delivered = self.coalesced = self.via_bulk = 0
        self.dropped = self.failed = self.spilled = self.replayed = 0
        watch_queue(self)

    # -- admission ---------------------------------------------------------------------------

    def admit(self, kind: DeliveryKind, key: str, payload: dict[str, Any]) -> None:
        """Queue one checked record, merging it into a waiting identify when it can.

        Args:
            kind: Which call.
            key: The user or company id.
            payload: The checked request body.

        Raises:
            RuntimeError: The client is closing or closed.
            QueueFullError: The queue is full and the policy says ``"raise"``.
        """
        if not self.open:
            raise RuntimeError(
                "this client's background delivery is closed: use client.background inside "
                "`async with AsyncAnalytex(...) as client:`"
            )
        index = self._index_of(kind)
        if index is not None and key in index:
            merge_identify(index[key].payload, payload)
            self.queued += 1
            self.coalesced += 1
            return
        if self.waiting >= self.policy.queue_size:
            if self.policy.on_full == "raise":
                raise QueueFullError(
                    f"the background queue is full ({self.policy.queue_size:,} records waiting); "
                    "raise DeliveryPolicy.queue_size or slow down"
                )
            self.queued += 1
            self.dropped += 1
            count("analytex.background.dropped", kind)
            self._warn_dropped()
            self._changed()
            return
        self._append(kind, key, payload)

    def admit_replayed(self, kind: DeliveryKind, key: str, payload: dict[str, Any]) -> Entry:
        """Queue a record read back from the outbox: never dropped, never merged away.

        Args:
            kind: Which call.
            key: The user or company id.
            payload: The request body.

        Returns:
            Its entry (the caller tracks it, to remove the outbox file once all are settled).
        """
        self.replayed += 1
        return self._append(kind, key, payload)

    def _index_of(self, kind: DeliveryKind) -> dict[str, Entry] | None:
        if kind == "identify":
            return self._identify
        if kind == "identify_company":
            return self._company
        return None

    def _append(self, kind: DeliveryKind, key: str, payload: dict[str, Any]) -> Entry:
        self._seq += 1
        entry = Entry(kind, key, payload, self._seq)
        self.queued += 1
        if kind == "track":
            before = self._latest_identify.get(key)
            if before is not None and not before.answered:
                entry.after = before
                before.tracks_after += 1
        else:
            index = self._index_of(kind)
            assert index is not None  # noqa: S101 -- identify kinds have an index
            index[key] = entry
            if kind == "identify":
                self._latest_identify[key] = entry
        self.lane(kind).append(entry)
        heapq.heappush(self._unsettled, entry.seq)
        self.added.set()
        self._changed()
        return entry

    def _warn_dropped(self) -> None:
        self._drops_unreported += 1
        now = anyio.current_time()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL:
            logger.warning(
                "background delivery dropped %d record(s): the queue was full (%d waiting); "
                "%d dropped in all",
                self._drops_unreported,
                self.waiting,
                self.dropped,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    # -- the worker's side -------------------------------------------------------------------

    async def wait_for_more(self, lane: deque[Entry], spoken_for: Callable[[], int]) -> None:
        """Wait until ``lane`` holds more entries than are already spoken for.

        Args:
            lane: ``identifies`` or ``tracks``.
            spoken_for: How many of its entries tasks are on their way to take, read afresh
                at each wake-up (it falls as they take theirs).
        """
        while len(lane) <= spoken_for():
            if self.added.is_set():
                self.added = anyio.Event()
            await self.added.wait()

    def lane(self, kind: DeliveryKind) -> deque[Entry]:
        """The lane (waiting entries, in order) of a kind of record."""
        return self.tracks if kind == "track" else self.identifies

    @property
    def waiting(self) -> int:
        """Entries waiting in both lanes."""
        return len(self.identifies) + len(self.tracks)

    def take(self, lane: deque[Entry]) -> Entry | None:
        """The lane's next entry, now in flight (it can no longer absorb later identifies).

        Args:
            lane: ``identifies`` or ``tracks``.

        Returns:
            The entry, or ``None`` when the lane is empty.
        """
        if not lane:
            return None
        entry = lane.popleft()
        entry.waiting = False
        self._leave_index(entry)
        self.in_flight.add(entry)
        return entry

    def extract_identifies(self, select: Callable[[Entry], bool]) -> list[Entry]:
        """Take the waiting identifies ``select`` picks out of turn (to route them elsewhere).

        One pass over the queue, whatever it holds; the entries stay unsettled (in flight).

        Args:
            select: Called with each waiting entry in order; True takes it.

        Returns:
            The entries taken, in order.
        """
        taken: list[Entry] = []
        kept: deque[Entry] = deque()
        for entry in self.identifies:
            if select(entry):
                taken.append(entry)
                entry.waiting = False
                self._leave_index(entry)
                self.in_flight.add(entry)
            else:
                kept.append(entry)
        # In place: the worker's lane holds this very deque.
        self.identifies.clear()
        self.identifies.extend(kept)
        return taken

    def _leave_index(self, entry: Entry) -> None:
        index = self._index_of(entry.kind)
        if index is not None and index.get(entry.key) is entry:
            del index[entry.key]

    def settle(self, entry: Entry, outcome: Outcome) -> None:
        """Count an entry's end, once.

        Args:
            entry: The entry.
            outcome: How it ended.
        """
        if entry.settled:
            return
        entry.settled = True
        entry.mark_answered()
        self.in_flight.discard(entry)
        if entry.waiting:
            self.lane(entry.kind).remove(entry)
            entry.waiting = False
            self._leave_index(entry)
        if self._latest_identify.get(entry.key) is entry:
            del self._latest_identify[entry.key]
        if entry.after is not None:
            entry.after.tracks_after -= 1
            entry.after = None
        if outcome == "delivered":
            self.delivered += 1
            if entry.via_bulk:
                self.via_bulk += 1
        elif outcome == "failed":
            self.failed += 1
        elif outcome == "spilled":
            self.spilled += 1
            count("analytex.background.spilled", entry.kind)
        else:
            self.dropped += 1
            count("analytex.background.dropped", entry.kind)
        self._settled_seqs.add(entry.seq)
        self._changed()
        if self.on_settle is not None:
            self.on_settle(entry)

    def unsettled(self) -> Iterator[Entry]:
        """Every entry not settled yet: waiting ones in order, then those in flight."""
        yield from sorted([*self.identifies, *self.tracks], key=lambda e: e.seq)
        yield from sorted(self.in_flight, key=lambda e: e.seq)

    # -- what flush and close wait for -------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The admission number of the newest entry."""
        return self._seq

    def settled_through(self, seq: int) -> bool:
        """Whether every entry admitted up to ``seq`` has settled.

        Args:
            seq: An admission number.

        Returns:
            True when none of them is waiting or in flight.
        """
        heap = self._unsettled
        while heap and heap[0] in self._settled_seqs:
            self._settled_seqs.discard(heapq.heappop(heap))
        return not heap or heap[0] > seq

    @property
    def pending(self) -> int:
        """Entries waiting or in flight."""
        return self.waiting + len(self.in_flight)

    def _changed(self) -> None:
        if self._changed_event is not None:
            self._changed_event.set()
            self._changed_event = None

    async def wait_changed(self) -> None:
        """Wait until an entry is admitted or settled."""
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
