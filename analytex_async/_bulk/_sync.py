"""The diff behind ``sync_users`` / ``sync_companies``: send only what changed.

A ``SyncRun`` plugs into the import pipeline through its hooks:

* ``skip``: the pipeline hands over a few thousand valid records at a time; each gets a
  digest of its canonical form, the state says what it is compared against (an earlier record
  of the same id in this run, else the digest stored for it) and marks it present; a record
  whose digest matches is left out (unless ``full``), the others go on to be batched;
* ``on_accepted``: a batch's records (ids and digests) are held under its job;
* ``on_job``: a job seen ``completed`` hands its records' digests over to be stored (with the
  next lookup, or at the end); a job seen ``failed`` drops them, so they are sent again next time.

Nothing is stored for a record until its job is seen completed: a failed job, an abort, a
cancel or a crash only means those rows go again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

import attrs

from .._models import Company, ImportResult, Job, JobStatus, Rejection, User
from .._types import RecordKind
from ._options import OnInvalid
from ._sync_state import SyncState

DIGEST_BYTES = 16
UNKNOWN = b""
"""Stored for an id whose record may be changing on the server: equal to no digest."""
ID_KEYS: dict[RecordKind, str] = {"user": "user_id", "company": "company_id"}
PRESENT_RUN = 2_000
"""Ids of rejected records noted before they are marked present in the state."""
LARGEST_EXACT_FLOAT = 2.0**53


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


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's C encoder with sorted keys, made once (json.dumps makes one per call).
_encode_sorted = (
    c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", True, False, False)
    if c_make_encoder is not None
    else None
)


def _canonical_text(record: Mapping[str, Any]) -> str:
    if _encode_sorted is not None:
        return "".join(_encode_sorted(record, 0))
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_digest(line: bytes, kind: RecordKind) -> tuple[str, bytes]:
    r"""A wire record's id and the digest of its canonical form.

    The canonical form is the record's JSON with every object's keys sorted, no spaces, and
    characters as themselves (never ``\u`` escapes); a float with an integral value counts as
    that integer (``1.0`` as ``1``, as a DataFrame column with a null would hold it). So the
    same record with its keys in another order, or written with other escapes or spacing, has
    the same digest.

    Args:
        line: The record's NDJSON line, as the pipeline encoded it.
        kind: ``"user"`` or ``"company"``.

    Returns:
        ``(id, digest)``, the digest 16 bytes of BLAKE2b.

    Examples:
        >>> a = canonical_digest(b'{"user_id":"u1","metadata":{"a":1,"b":"x"}}', "user")
        >>> b = canonical_digest(b'{"metadata":{"b":"x","a":1.0},"user_id":"u1"}', "user")
        >>> a == b, a[0]
        (True, 'u1')
    """
    record = json.loads(line)
    metadata = record.get("metadata")
    if metadata:
        for key, value in metadata.items():
            if (
                type(value) is float
                and value.is_integer()
                and -LARGEST_EXACT_FLOAT <= value <= LARGEST_EXACT_FLOAT
            ):
                metadata[key] = int(value)
    text = _canonical_text(record)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()
    return record[ID_KEYS[kind]], digest


def rejected_id(record: object, kind: RecordKind) -> str | None:
    """The id a rejected record carries, when one can be read from it.

    Args:
        record: ``Rejection.record``: a mapping, a ``User`` / ``Company``, or a line of text.
        kind: ``"user"`` or ``"company"``.

    Returns:
        The id, or ``None`` when it has no usable one.
    """
    key = ID_KEYS[kind]
    if isinstance(record, (User, Company)):
        value: object = getattr(record, key)
    elif isinstance(record, Mapping):
        value = record.get(key)
    elif isinstance(record, (str, bytes)):
        try:
            parsed = json.loads(record)
        except ValueError:
            return None
        value = parsed.get(key) if isinstance(parsed, dict) else None
    else:
        value = None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and value.strip() else None


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

    # -- the pipeline's hooks ----------------------------------------------------------------

    async def skip(self, held: list[tuple[int, bytes]]) -> list[bool]:
        """Which of these records are unchanged (left out); the rest are held for their jobs.

        Args:
            held: ``(position, line)`` of valid records, in source order.

        Returns:
            Per record, ``True`` when it is not to be sent.
        """
        await self.flush()
        digests = [canonical_digest(line, self.kind) for _, line in held]
        before = await self.state.present(digests)
        verdicts: list[bool] = []
        changing: list[tuple[str, bytes]] = []
        sending = self._sending
        for (position, _), entry, previous in zip(held, digests, before, strict=True):
            if previous is None:
                self.rows_new += 1
            elif previous == entry[1]:
                self.rows_unchanged += 1
                if not self.full:
                    verdicts.append(True)
                    continue
            else:
                self.rows_changed += 1
                changing.append((entry[0], UNKNOWN))
            self._batched[position] = entry
            sending[entry[0]] = sending.get(entry[0], 0) + 1
            verdicts.append(False)
        await self.state.store(changing)
        return verdicts

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
