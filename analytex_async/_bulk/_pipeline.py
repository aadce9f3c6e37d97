"""The bulk pipeline behind ``import_users`` / ``import_companies``.

source → validate → batch → govern → send → wait, in two tasks joined by an unbuffered stream:

* the **producer** reads the source lazily, validates and encodes each record, and fills
  batches; it hands a full batch over only when the sender takes it, so at most one batch is
  being built while one is on the wire (memory stays at about two batches, whatever the source);
* the **sender** takes a batch, waits for the governor (the row rate), waits for the account's
  previous job to finish (the server takes one job at a time), uploads the batch as multipart
  NDJSON, and records the job. A 409 means another job still runs: it waits for that job and
  sends the same batch again. A 413 splits the batch in halves. Retries of transport errors, 429
  and 5xx happen in the transport; a batch that finally fails ends the import with
  ``ImportAbortedError`` listing what was accepted.

A sync (an import with a ``skip`` filter) puts a third task between them, the **sifter**
(``_sifting``): the producer then only reads, and the sifter validates what did not stay the
same.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .._constants import MAX_REJECTIONS_KEPT
from .._errors import (
    APIConnectionError,
    APIError,
    ConflictError,
    ImportAbortedError,
    PayloadTooLargeError,
    RateLimitError,
    ValidationError,
)
from .._models import (
    ImportProgress,
    ImportResult,
    Job,
    JobStatus,
    Rejection,
    WaitingFor,
)
from .._telemetry import BatchTrace, count, waiting
from .._transport import Transport
from .._types import RecordKind
from ..governors._local import Governor, JobSlot
from ._batching import Batch, Batcher
from ._frames import is_table
from ._jobs import job_of
from ._journal import Journal
from ._multipart import MultipartFile, upload_filename
from ._options import ImportOptions
from ._pacing import Pacer
from ._records import check_record, plain_iterable
from ._sifting import SKIP_RUN_RECORDS, Held, Sifter
from ._slot import JobTracker
from ._sources import SourceRecord, read_source

logger = logging.getLogger("analytex_async")

PATHS: dict[RecordKind, str] = {
    "user": "/v1/users/bulk_identify",
    "company": "/v1/companies/bulk_identify",
    "event": "/v1/imports",
}


class _Adopted(Exception):
    """The server made a job of an upload whose answer was lost: stop resending it."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.job_id)
        self.job = job


STALL_BUDGET = 0.001
"""Seconds of CPU work the producer does before it lets other tasks run."""


class ImportRun:
    """One import: the state both tasks share, and the steps each takes.

    Args:
        transport: Sends the requests.
        governor: Paces batch starts.
        kind: ``"user"`` or ``"company"``.
        rows_per_minute: The server's processing rate, to time job polls.
        options: The import's options.
    """

    def __init__(
        self,
        transport: Transport,
        governor: Governor,
        kind: RecordKind,
        *,
        rows_per_minute: float,
        options: ImportOptions,
    ) -> None:
        self.transport = transport
        self.governor = governor
        self.kind = kind
        self.rows_per_minute = rows_per_minute
        self.options = options
        self.path = PATHS[kind]
        self.rows_read = 0
        self.rows_sent = 0
        self.batches_sent = 0
        self.rejected: list[Rejection] = []  # the first MAX_REJECTIONS_KEPT only
        self.rows_rejected = 0
        self._unannounced: list[Rejection] = []  # for an on_invalid callable, not yet handed
        self.tracker = JobTracker(
            transport,
            governor,
            rows_per_minute=rows_per_minute,
            events=kind == "event",
            on_job=options.on_job,
            on_poll=self._on_job_poll,
        )
        self.jobs = self.tracker.jobs
        # Unique to this import: every upload's file name says which batch it is, so an
        # upload whose answer was lost can be found in the job list instead of sent twice.
        self.upload_id = uuid.uuid4().hex[:16]
        self.waiting_for: WaitingFor | None = None
        self.sending_done = False
        self.started = anyio.current_time()
        self.journal: Journal | None = None
        self._held: list[Held] = []  # for the sifter, not yet handed over
        self._hand: ObjectSendStream[list[Held]] | None = None  # to the sifter, in a sync

    # -- reporting ---------------------------------------------------------------------------

    def result(self) -> ImportResult:
        """The import's result so far."""
        return ImportResult(
            rows_read=self.rows_read,
            rows_sent=self.rows_sent,
            rejected=list(self.rejected),
            jobs=list(self.jobs.values()),
            elapsed=anyio.current_time() - self.started,
            rows_skipped=self.rows_skipped,
            rows_rejected=self.rows_rejected,
        )

    @property
    def rows_skipped(self) -> int:
        """Records skipped because the journal says an earlier run sent them."""
        return self.journal.skipped if self.journal is not None else 0

    def rows_completed(self) -> int:
        """Rows the server reports as processed, over every job."""
        return self.tracker.rows_completed()

    async def report(self, waiting_for: WaitingFor | None = None) -> None:
        """Tell the progress callback where the import stands.

        Args:
            waiting_for: What the import is about to wait for, if anything.
        """
        self.waiting_for = waiting_for
        callback = self.options.on_progress
        if callback is None:
            return
        outcome = callback(
            ImportProgress(
                rows_read=self.rows_read,
                rows_sent=self.rows_sent,
                rows_rejected=self.rows_rejected,
                rows_completed=self.rows_completed(),
                batches_sent=self.batches_sent,
                waiting_for=waiting_for,
                rows_skipped=self.rows_skipped,
                sending_done=self.sending_done,
            )
        )
        if inspect.isawaitable(outcome):
            await outcome

    # -- the whole run -----------------------------------------------------------------------

    async def run(self, source: object) -> ImportResult:
        """Import every record of ``source``.

        Args:
            source: Records, or a file, as ``read_source`` takes them.

        Returns:
            The result, with the jobs in their final state when ``wait`` is on.

        Raises:
            ValidationError: The source cannot be read, or (``on_invalid="raise"``) a record
                is invalid; ``error.result`` holds what was accepted before.
            ImportAbortedError: A batch failed for good; ``result`` holds what was accepted.
        """
        if self.options.journal is None:
            return await self._run(source)
        self.journal = await Journal.open(self.options.journal, self.kind)
        try:
            if self.journal.latest_job_id is not None:
                # An earlier run's last job may still hold the account's one job slot.
                self.tracker.last_job = Job(self.journal.latest_job_id, JobStatus.UNKNOWN)
            return await self._run(source)
        finally:
            with anyio.CancelScope(shield=True):
                await self.journal.aclose()

    async def _run(self, source: object) -> ImportResult:
        send, receive = anyio.create_memory_object_stream[Batch](0)
        produced: list[BaseException] = []
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            skip = self.options.skip
            if skip is None:
                tasks.start_soon(self._produce, source, send, produced)
            else:
                # One run may wait between the stages: the producer reads the next one while
                # the sifter waits for the state.
                hand, runs = anyio.create_memory_object_stream[list[Held]](1)
                sifter = Sifter(skip, self._batcher(), self._check, self._announce_rejections)
                tasks.start_soon(sifter.run, runs, send.clone(), produced)
                tasks.start_soon(self._produce, source, send, produced, hand)
            try:
                await self._send_all(receive)
            except Exception as exc:
                # Keep the error out of the task group (which would wrap it in a group) and stop
                # the producer: nothing more will be sent.
                failure = exc
                tasks.cancel_scope.cancel()
        error = produced[0] if produced else failure
        if produced and isinstance(error, OSError):
            unreadable = ValidationError(f"reading the source failed: {error}", field="source")
            unreadable.result = self.result()
            raise unreadable from error
        if isinstance(error, ValidationError):
            error.result = self.result()
            raise error
        if error is not None:
            raise self._aborted(error) from error
        self.sending_done = True
        if self.options.wait:
            try:
                await self.tracker.wait_all()
            except APIError as exc:
                raise self._aborted(exc) from exc
        await self.report()
        return self.result()

    def _aborted(self, error: BaseException) -> ImportAbortedError:
        accepted = ", ".join(self.jobs) or "none"
        return ImportAbortedError(
            f"import stopped after {self.batches_sent} accepted batch(es) "
            f"({self.rows_sent:,} rows; jobs: {accepted}): {error}",
            result=self.result(),
        )

    # -- producer ----------------------------------------------------------------------------

    def _reject(self, position: int, record: object, reason: str, line: int | None) -> None:
        on_invalid = self.options.on_invalid
        if on_invalid == "raise":
            raise ValidationError(reason, position=position, line=line)
        rejection = Rejection(position, record, reason, line)
        self.rows_rejected += 1
        count("analytex.rows.rejected", self.kind)
        if len(self.rejected) < MAX_REJECTIONS_KEPT:
            self.rejected.append(rejection)
        if callable(on_invalid):
            self._unannounced.append(rejection)

    async def _announce_rejections(self) -> None:
        """Hand the rejections not yet seen to the ``on_invalid`` callable, in order."""
        callback = self.options.on_invalid
        while self._unannounced:
            assert callable(callback)  # noqa: S101 -- only callables queue rejections
            rejection = self._unannounced.pop(0)
            outcome = callback(rejection)
            if inspect.isawaitable(outcome):
                await outcome

    def _batcher(self) -> Batcher:
        return Batcher(max_records=self.options.batch_size, max_bytes=self.options.max_batch_bytes)

    async def _produce(
        self,
        source: object,
        send: ObjectSendStream[Batch],
        errors: list[BaseException],
        hand: ObjectSendStream[list[Held]] | None = None,
    ) -> None:
        """Read, validate and batch the source; with ``hand``, read only, for the sifter."""
        batcher = self._batcher()
        self._hand = hand
        async with send:
            try:
                if plain_iterable(source) and not is_table(source):
                    await self._produce_from_iterable(source, batcher, send)
                else:
                    async with aclosing(self._records(source)) as records:
                        async for item in records:
                            batch = self._take(
                                batcher, item.position, item.record, item.error, item.line
                            )
                            if self._unannounced:
                                await self._announce_rejections()
                            if batch is not None:
                                await send.send(batch)
                            elif self._held_enough():
                                await self._hand_over()
                await self._hand_over()
                if self.journal is not None:
                    self.journal.finish()
                last = batcher.flush()
                if last is not None:
                    await send.send(last)
            except anyio.BrokenResourceError:
                pass  # the sender (or the sifter) stopped; its own error says why
            except Exception as exc:  # re-raised by run(), outside the task group
                errors.append(exc)
            finally:
                if hand is not None:
                    await hand.aclose()

    async def _produce_from_iterable(
        self, source: Iterable[object], batcher: Batcher, send: ObjectSendStream[Batch]
    ) -> None:
        # The caller's own sync iterable, read here directly: no SourceRecord and no async
        # generator hop per record (they cost more than checking a small record does).
        pacer = Pacer(max_items=None, max_seconds=STALL_BUDGET)
        for position, record in enumerate(source):
            batch = self._take(batcher, position, record)
            if self._unannounced:
                await self._announce_rejections()
            if batch is not None:
                await send.send(batch)
                pacer.reset()
            elif self._held_enough():
                await self._hand_over()
                pacer.reset()
            elif pacer.due():
                await pacer.checkpoint()

    async def _records(self, source: object) -> AsyncGenerator[SourceRecord, None]:
        """The source's records, with the producer's CPU time sliced for the event loop."""
        pacer = Pacer(max_items=None, max_seconds=STALL_BUDGET)
        options = self.options
        records = read_source(
            source, self.kind, format=options.format, csv_multiline=options.csv_multiline
        )
        async with aclosing(records) as items:
            async for item in items:
                yield item
                if pacer.due():
                    await pacer.checkpoint()

    def _take(
        self,
        batcher: Batcher,
        position: int,
        record: object,
        error: str | None = None,
        line: int | None = None,
    ) -> Batch | None:
        self.rows_read += 1
        if self._hand is not None:
            self._held.append((position, record, error, line))  # the sifter checks it
            return None
        checked = self._check(batcher, position, record, error, line)
        if checked is None:
            return None
        if self.journal is not None and self.journal.covers(position, checked):
            return None  # an earlier run sent it
        return batcher.add(position, checked)

    def _check(
        self,
        batcher: Batcher,
        position: int,
        record: object,
        error: str | None = None,
        line: int | None = None,
    ) -> bytes | None:
        """A record's NDJSON line; ``None`` once it was rejected."""
        checked = check_record(record, self.kind, batcher, error)
        if isinstance(checked, str):
            self._reject(position, record, checked, line)
            return None
        return checked

    def _held_enough(self) -> bool:
        """Whether enough records are held to hand them to the sifter."""
        return len(self._held) >= SKIP_RUN_RECORDS

    async def _hand_over(self) -> None:
        """Hand the held records to the sifter."""
        if self._hand is not None and self._held:
            held, self._held = self._held, []
            await self._hand.send(held)

    # -- sender ------------------------------------------------------------------------------

    async def _send_all(self, receive: ObjectReceiveStream[Batch]) -> None:
        async with receive:
            async for batch in receive:
                # (batch, paid): the halves of a batch split after a 413 were paid for with it,
                # so the governor is not charged for their rows a second time.
                pending = deque([(batch, False)])
                while pending:
                    current, paid = pending.popleft()
                    with BatchTrace(self.kind, self.path, current.count, current.size) as trace:
                        job = await self._deliver(current, paid=paid)
                        trace.finished(None if job is None else job.job_id)
                    if job is None:  # the server found it too large: split it
                        if current.count == 1:
                            self._reject_too_large(current)
                            if self._unannounced:
                                await self._announce_rejections()
                        else:
                            pending.extendleft((half, True) for half in reversed(current.halves()))
                        continue
                    self._accepted(current, job)
                    if self.journal is not None:
                        # Accepted is accepted: record it even if we are being cancelled.
                        with anyio.CancelScope(shield=True):
                            await self.journal.record(
                                current.positions[0],
                                current.positions[-1],
                                current.lines,
                                job.job_id,
                                current.label,
                            )
                    if isinstance(self.governor, JobSlot):
                        expected = current.count * 60.0 / self.rows_per_minute
                        await self.governor.set_latest_job(job.job_id, ttl=2 * expected + 60)
                    await self.report()

    def _reject_too_large(self, batch: Batch) -> None:
        record = batch.lines[0].decode(errors="replace").rstrip("\n")
        reason = "the server refused the record as too large (413)"
        self._reject(batch.positions[0], record, reason, None)

    def _accepted(self, batch: Batch, job: Job) -> None:
        self.rows_sent += batch.count
        self.batches_sent += 1
        self.tracker.accepted(job, batch.count)
        if self.options.on_accepted is not None:
            self.options.on_accepted(batch.positions, job)

    async def _deliver(self, batch: Batch, *, paid: bool = False) -> Job | None:
        """Send one batch until the server accepts it; ``None`` when it is too large.

        Args:
            batch: The batch.
            paid: Its rows were already paid for (a half of a batch split after a 413).
        """
        # The job first, the rate last: the POST then follows its reserved start at once, so the
        # server sees batches spaced as the governor spaced them (job polls don't skew it).
        await self.tracker.wait_for_previous()
        # Events imports have their own slot and no documented rate: one import job at a time
        # paces them. The bulk row budget is the identify endpoints'.
        if not paid and self.kind != "event":
            await self.report("rate")
            with waiting("rate"):
                await self.governor.acquire(batch.count)
        unexplained = 0
        filename = upload_filename(self.upload_id, batch.label)
        body = MultipartFile(batch.lines, filename=filename, checked_size=batch.size).factory()

        async def on_retry(error: APIError, delay: float) -> None:
            await self._on_retry(error, delay)
            adopted = await self.tracker.adopt_lost(error, filename)
            if adopted is not None:
                raise _Adopted(adopted)

        while True:
            await self.report()
            try:
                response = await self.transport.request(
                    "POST", self.path, body=body, on_retry=on_retry
                )
            except _Adopted as adopted:
                return adopted.job
            except APIConnectionError as exc:
                found = await self.tracker.adopt_lost(exc, filename)
                if found is None:
                    raise
                return found
            except PayloadTooLargeError:
                return None
            except ConflictError:
                # Another job still runs (ours, or another process's): wait it out, then send
                # the same batch again.
                blocking = await self.tracker.running()
                if blocking is not None:
                    await self.tracker.wait(blocking)
                    continue
                unexplained += 1
                if unexplained > self.transport.retry.max_retries:
                    raise
                await self.report("job")
                await anyio.sleep(self.transport.retry.backoff(unexplained - 1))
                continue
            return job_of(response, f"POST {self.path}", self.transport.redact)

    async def _on_retry(self, error: APIError, delay: float) -> None:
        if isinstance(error, RateLimitError):
            await self.governor.push_back(delay)
        await self.report("retry")

    async def _on_job_poll(self, job: Job) -> None:
        await self.report("job")
