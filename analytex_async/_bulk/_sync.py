"""The diff behind ``sync_users`` / ``sync_companies``: send only what changed.

A ``SyncRun`` plugs into the import pipeline as its ``skip`` filter and through its hooks:

* ``unchanged``: the sifting stage (``_sifting``) hands over a few thousand records at a time,
  as the source gave them; the state says what each is compared against (an earlier record of
  the same id in this run, else the value stored for it: see ``_digests``) and marks its id
  present. A record whose source digest matches is unchanged: left out (unless ``full``)
  before it is validated;
* ``keep``: each other record, once valid and encoded, is compared by its canonical form; one
  whose form alone changed (the key order, say) is unchanged too and its stored value is
  refreshed. A changed record's stored value becomes ``UNKNOWN`` (written by ``settle``,
  before its batch can be sent): from then on the server may hold either version, and the
  state must never claim the old one;
* ``on_accepted``: a batch's records (ids and values) are held under its job;
* ``on_job``: a job seen ``completed`` hands its records' values over to be stored (with the
  next lookup, or at the end); a job seen ``failed`` drops them: they are sent again next time.

Nothing is stored for a record until its job is seen completed: a failed job (which may have
applied some of its rows), an abort, a cancel or a crash only means those rows go again. An id
sent twice in one run is stored once its last send completed.
"""

from __future__ import annotations

import inspect

import attrs

from .._models import ImportResult, Job, JobStatus, Rejection
from .._telemetry import count
from .._types import RecordKind
from ._digests import (
    DIGEST_BYTES,
    UNKNOWN,
    canonical_digest,
    rejected_id,
    source_digest,
    source_id,
)
from ._options import OnInvalid, SkipFilter
from ._pacing import Pacer
from ._sifting import STALL_BUDGET
from ._sync_state import SyncState

VALUE_BYTES = 2 * DIGEST_BYTES
"""A stored value: the exact digest, then the canonical one."""

PRESENT_RUN = 2_000
"""Ids of rejected records noted before they are marked present in the state."""


@attrs.frozen
class SyncResult(ImportResult):
    """What a sync did: an ``ImportResult`` plus how the records compared with the state.

    ``rows_new + rows_changed + rows_unchanged`` is every valid record read; with ``full=True``
    the unchanged ones were sent too.

    Attributes:
        rows_new: Valid records whose id the state did not hold.
        rows_changed: Valid records whose digest differed from the state's.
        rows_unchanged: Valid records whose digest matched (not sent, unless ``full``).
        rows_missing: Ids in the state absent from this run's source (0 after an abort).
        rows_deleted: Missing ids deleted on the server (``delete_missing=True``).
    """

    rows_new: int = 0
    rows_changed: int = 0
    rows_unchanged: int = 0
    rows_missing: int = 0
    rows_deleted: int = 0


class SyncRun:
    """One sync's diff: the pipeline's hooks, the counters, the digests waiting on jobs.

    Args:
        state: The state, already begun.
        kind: ``"user"`` or ``"company"``.
        full: Send every valid record (the counters still compare).
    """

    def __init__(self, state: SyncState, kind: RecordKind, *, full: bool) -> None:
        self.state = state
        self.kind = kind
        self.full = full
        self.rows_new = 0
        self.rows_changed = 0
        self.rows_unchanged = 0
        self._batched: dict[int, tuple[str, bytes]] = {}  # by position: batched, not accepted
        self._in_jobs: dict[str, list[tuple[str, bytes]]] = {}  # accepted, not seen completed
        self._completed: list[tuple[str, bytes]] = []  # seen completed, not stored yet
        self._rejected_ids: list[str] = []  # present, not marked yet
        self._sending: dict[str, int] = {}  # per id: records handed on, their jobs not ended
        self._compared: dict[int, tuple[str, bytes, bytes | None]] = {}  # by position, for keep
        self._writes: list[tuple[str, bytes]] = []  # refreshed and unknown values, for settle
        self._rejected_digests: set[bytes] = set()  # source digests of records rejected

    # -- the pipeline's hooks ----------------------------------------------------------------

    @property
    def skip(self) -> SkipFilter:
        """The import's ``skip`` filter: this run (``unchanged``, ``keep``, ``settle``)."""
        return self

    async def unchanged(self, records: list[tuple[int, object]]) -> list[bool]:
        """Which of these records are exactly what completed before (left out unless ``full``).

        Every record whose id can be read is marked present in the state; what its id is
        compared against is kept for ``keep``.

        Args:
            records: ``(position, record)`` as the source gave them, in source order.

        Returns:
            Per record, ``True`` when it is not to be validated or sent.
        """
        await self.flush()
        kind = self.kind
        looked_up: list[tuple[int, str, bytes]] = []
        pacer = Pacer(max_items=None, max_seconds=STALL_BUDGET)
        for position, record in records:
            record_id = source_id(record, kind)
            if record_id is not None:  # else it cannot be valid: the validation rejects it
                looked_up.append((position, record_id, source_digest(record)))
            if pacer.due():
                await pacer.checkpoint()
        before = await self.state.present([(record_id, d) for _, record_id, d in looked_up])
        skipped: set[int] = set()
        # A record is known valid when its digest is one stored (of a record that completed),
        # not when it is the digest of an earlier record of this run, which may be rejected:
        # those are validated (a later record of an id of this call; one of a rejected one).
        rejected = self._rejected_digests
        seen: set[str] = set()
        for (position, record_id, digest), previous in zip(looked_up, before, strict=True):
            if (
                not self.full
                and previous is not None
                and previous[:DIGEST_BYTES] == digest
                and record_id not in seen
                and digest not in rejected
            ):
                skipped.add(position)
            else:
                self._compared[position] = (record_id, digest, previous)
            seen.add(record_id)
        self.rows_unchanged += len(skipped)
        count("analytex.rows.unchanged", kind, len(skipped))
        return [position in skipped for position, _ in records]

    def keep(self, position: int, record: object, line: bytes) -> bool:
        """Whether to send a valid record ``unchanged`` did not leave out.

        Args:
            position: Its source position.
            record: It, as the source gave it.
            line: Its NDJSON line.

        Returns:
            ``False`` when its canonical form is the one stored (and not ``full``).
        """
        record_id, digest, previous = self._compared.pop(position)
        canonical = canonical_digest(line, self.kind)[1]
        value = digest + canonical
        if previous is None:
            self.rows_new += 1
        elif previous[:DIGEST_BYTES] == digest or (
            len(previous) == VALUE_BYTES and previous[DIGEST_BYTES:] == canonical
        ):
            self.rows_unchanged += 1
            count("analytex.rows.unchanged", self.kind, 1)
            # A stored value whose form alone changed is refreshed. An earlier record of this
            # run (a 16-byte mark) may be in flight: nothing is claimed before its job ends.
            if len(previous) == VALUE_BYTES and previous != value:
                self._writes.append((record_id, value))
            if not self.full:
                return False
        else:
            self.rows_changed += 1
            self._writes.append((record_id, UNKNOWN))
        self._batched[position] = (record_id, value)
        self._sending[record_id] = self._sending.get(record_id, 0) + 1
        return True

    async def settle(self) -> None:
        """Write what ``keep`` decided (refreshed and unknown values) before the batch goes."""
        self._compared.clear()  # records rejected after their lookup
        writes, self._writes = self._writes, []
        if writes:
            await self.state.store(writes)

    def on_accepted(self, positions: tuple[int, ...], job: Job) -> None:
        """Hold an accepted batch's records under its job.

        Args:
            positions: The batch's source positions.
            job: Its job, as the server answered.
        """
        batched = self._batched
        self._in_jobs[job.job_id] = [batched.pop(p) for p in positions if p in batched]
        self.on_job(job)

    def on_job(self, job: Job) -> None:
        """Note a job's fresh state: completed, its digests are due; failed, they are dropped.

        Args:
            job: One of the import's jobs.
        """
        if not job.is_terminal or job.job_id not in self._in_jobs:
            return
        sending = self._sending
        for record_id, digest in self._in_jobs.pop(job.job_id):
            left = sending.pop(record_id, 1) - 1
            if left:
                sending[record_id] = left  # a later record of this id is on its way
            elif job.status is JobStatus.COMPLETED:
                self._completed.append((record_id, digest))

    def on_invalid(self, user_choice: OnInvalid) -> OnInvalid:
        """The ``on_invalid`` to give the pipeline: notes each rejected record's id as present.

        Args:
            user_choice: The caller's ``on_invalid``.

        Returns:
            ``"raise"`` as is (the run stops: nothing is missing); else an async callable that
            notes the id and hands the rejection on to the caller's callable, if any.
        """
        if user_choice == "raise":
            return user_choice
        forward = user_choice if callable(user_choice) else None

        async def note(rejection: Rejection) -> None:
            if source_id(rejection.record, self.kind) is not None:  # looked up and marked
                self._rejected_digests.add(source_digest(rejection.record))
            record_id = rejected_id(rejection.record, self.kind)
            if record_id is not None:
                self._rejected_ids.append(record_id)
                if len(self._rejected_ids) >= PRESENT_RUN:
                    await self._mark_rejected()
            if forward is not None:
                outcome = forward(rejection)
                if inspect.isawaitable(outcome):
                    await outcome

        return note

    # -- writing -----------------------------------------------------------------------------

    async def _mark_rejected(self) -> None:
        ids, self._rejected_ids = self._rejected_ids, []
        if ids:
            await self.state.present([(record_id, None) for record_id in ids])

    async def flush(self) -> None:
        """Store the digests of jobs seen completed, and mark rejected ids present."""
        completed, self._completed = self._completed, []
        if completed:
            await self.state.store(completed)
        await self._mark_rejected()

    def result(self, imported: ImportResult, *, missing: int = 0, deleted: int = 0) -> SyncResult:
        """The sync's result: the import's, with this run's counters.

        Args:
            imported: The import pipeline's result.
            missing: Ids in the state absent from the source.
            deleted: Of those, the ids deleted.
        """
        return SyncResult(
            **{field.name: getattr(imported, field.name) for field in attrs.fields(ImportResult)},
            rows_new=self.rows_new,
            rows_changed=self.rows_changed,
            rows_unchanged=self.rows_unchanged,
            rows_missing=missing,
            rows_deleted=deleted,
        )

    def finish(self, jobs: list[Job]) -> None:
        """Note the jobs' last known states (a result's), before the final ``flush``.

        Args:
            jobs: The jobs as the import's result holds them.
        """
        for job in jobs:
            self.on_job(job)
