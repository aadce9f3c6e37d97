"""Background delivery (``client.background``): the model its guarantees are built on.

**Chains.** Every record belongs to a chain: one per user (its identifies and tracks) and one per
company (its identifies). Only the head of a chain is *ready*; the records behind it wait. So a
user's records reach the server in the order they were handed over, a track after the identify
before it, a newer identify after an older one is answered (or its bulk job completed): the
newest value always wins, by construction rather than by timing.

**Coalescing.** A new identify merges into its chain's latest identify that is not yet sent
(metadata last-write-wins, a later company replaces the earlier one), unless the merged body
would pass the API's size limit; once a record is sent it never changes, and a newer identify
waits behind it.

**One life per record** (``_ledger.State``)::

    WAITING --(its chain's earlier record settles)--> READY
    READY --(a sender takes it)--> SENDING
    SENDING --(answered 2xx)--> SETTLED (delivered)
    SENDING --(a permanent failure: 4xx but 408 and 429)--> SETTLED (failed; on_error)
    SENDING --(a transient failure)--> RETRYING --(its delay is over)--> READY
    SENDING --(accepted in a bulk job)--> IN_JOB --(the job completed / failed)--> SETTLED
    any unsettled state --(the client closes)--> SETTLED (spilled to the outbox, or dropped)

A record is in exactly one state; ``pending`` is the number of unsettled records, and
``queue_size`` bounds it whatever the state (waiting, ready, in flight, retrying, in a bulk job).
A settled record leaves every structure at once (no flush needed to free it).

**Nothing waits while holding.** A sender takes a concurrency slot and a window slot only for
a ready record and gives both back when its attempt ends; a retry waits its delay holding
nothing; a record waiting for its chain holds nothing. The one wait-while-holding is each lane's
single *taker*, which holds one slot of its own lane's window while it waits for the lane's next
ready record (so no slot is wasted). No mix of identifies and tracks can deadlock.

**Routes.** A ready record goes to one lane: tracks to the track window's, identifies to the
identify window's, or, with ``bulk_overflow``, to a bulk lane when more identifies are ready
than the identify window can start within ``max_delay`` (decided once, as the record becomes
ready: O(1), no rescans). Bulk uploads are multipart NDJSON files with unique names, so a lost
answer is looked up instead of sent twice.

**429s belong to the window** (``governors._windows.PauseGate``): a 429 pauses its whole window
(background and awaited calls) until its ``Retry-After``; then one probe goes before the rest.

**The outbox** (``_outboxes.OutboxStore``: a directory, or a Redis stream) receives, at close,
every unsettled record in admission order (so each chain in its order) and the windows' answer
times of the last minute; a client opening on it seeds its windows with those times and replays
the records first. A replayed record leaves the outbox only once it settled here (or was written
to it again); a spill that fails removes nothing claimed and counts what it could not write as
dropped.

Modules: ``_policy`` (what users set and read), ``_record`` (a record and its states), ``_ledger``
(the records, their chains, lanes and counters),
``_senders`` (real-time), ``_overflow`` (the bulk route), ``_outbox`` and ``_outboxes`` (the
outbox), ``_session`` (one opening, from ``async with`` to close), ``_background`` (the public
face).
"""
