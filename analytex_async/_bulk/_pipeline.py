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
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .._constants import MAX_REJECTIONS_KEPT
from .._errors import (
    APIError,
    ConflictError,
    ImportAbortedError,
    NotFoundError,
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
from .._transport import Transport, bytes_body
from .._types import BodyFactory, RecordKind
from ..governors._local import Governor, JobSlot
from ._batching import Batch, Batcher
from ._jobs import fetch_job, fetch_jobs, is_finished, job_of, wait_until_finished
from ._journal import Journal
from ._multipart import MultipartFile
from ._options import ImportOptions
from ._pacing import Pacer
from ._records import check_record, plain_iterable
from ._sources import SourceRecord, read_source

logger = logging.getLogger("analytex_async")

JSON_KEYS: dict[RecordKind, bytes] = {"user": b"users", "company": b"companies"}
PATHS: dict[RecordKind, str] = {
    "user": "/v1/users/bulk_identify",
    "company": "/v1/companies/bulk_identify",
}
STALL_BUDGET = 0.001
"""Seconds of CPU work the producer does before it lets other tasks run."""
SKIP_RUN_RECORDS = 2_000
SKIP_RUN_BYTES = 4_000_000
"""Valid records (and their bytes) held for the ``skip`` filter before it is asked about them."""


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
        self.jobs: dict[str, Job] = {}
        self.job_rows: dict[str, int] = {}
        self.waiting_for: WaitingFor | None = None
        self.started = anyio.current_time()
        self.last_job: Job | None = None
        self.journal: Journal | None = None
        self._held: list[tuple[int, bytes]] = []  # for the skip filter, not yet asked
        self._held_bytes = 0

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
        done = 0
        for job_id, job in self.jobs.items():
            if job.status is JobStatus.COMPLETED:
                done += self.job_rows[job_id]
            elif job.completed_rows is not None:
                done += min(job.completed_rows, self.job_rows[job_id])
        return done

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
                self.last_job = Job(self.journal.latest_job_id, JobStatus.UNKNOWN)
            return await self._run(source)
        finally:
            with anyio.CancelScope(shield=True):
                await self.journal.aclose()

    async def _run(self, source: object) -> ImportResult:
        send, receive = anyio.create_memory_object_stream[Batch](0)
        produced: list[BaseException] = []
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._produce, source, send, produced)
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
        if self.options.wait:
            try:
                await self._wait_for_jobs()
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
        if len(self.rejected) < MAX_REJECTIONS_KEPT:
            self.rejected.append(rejection)
        if callable(on_invalid):
            self._unannounced.append(rejection)

    async def _announce_rejections(self) -> None:
        """Hand the rejections not yet seen to the ``on_invalid`` callable, in order."""
        callback = self.options.on_invalid
        assert callable(callback)  # noqa: S101 -- only callables queue rejections
        while self._unannounced:
            rejection = self._unannounced.pop(0)
            outcome = callback(rejection)
            if inspect.isawaitable(outcome):
                await outcome

    async def _produce(
        self, source: object, send: ObjectSendStream[Batch], errors: list[BaseException]
    ) -> None:
        batcher = Batcher(
            max_records=self.options.batch_size, max_bytes=self.options.max_batch_bytes
        )
        async with send:
            try:
                if plain_iterable(source):
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
                            elif self._held:
                                await self._sift(batcher, send)
                await self._sift(batcher, send, final=True)
                if self.journal is not None:
                    self.journal.finish()
                last = batcher.flush()
                if last is not None:
                    await send.send(last)
            except anyio.BrokenResourceError:
                pass  # the sender stopped; its own error says why
            except Exception as exc:  # re-raised by run(), outside the task group
                errors.append(exc)

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
            elif self._held and await self._sift(batcher, send):
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
        checked = check_record(record, self.kind, batcher, error)
        if isinstance(checked, str):
            self._reject(position, record, checked, line)
            return None
        if self.journal is not None and self.journal.covers(position, checked):
            return None  # an earlier run sent it
        if self.options.skip is not None:
            self._held.append((position, checked))
            self._held_bytes += len(checked)
            return None
        return batcher.add(position, checked)

    async def _sift(
        self, batcher: Batcher, send: ObjectSendStream[Batch], *, final: bool = False
    ) -> bool:
        """Ask the skip filter about the held records once enough are held; batch the rest.

        Returns:
            Whether the filter was asked.
        """
        skip = self.options.skip
        held = self._held
        if skip is None or not held:
            return False
        if not final and len(held) < SKIP_RUN_RECORDS and self._held_bytes < SKIP_RUN_BYTES:
            return False
        self._held, self._held_bytes = [], 0
        verdicts = await skip(held)
        for (position, line), skipped in zip(held, verdicts, strict=True):
            if not skipped:
                batch = batcher.add(position, line)
                if batch is not None:
                    await send.send(batch)
        return True

    # -- sender ------------------------------------------------------------------------------

    async def _send_all(self, receive: ObjectReceiveStream[Batch]) -> None:
        async with receive:
            async for batch in receive:
                # (batch, paid): the halves of a batch split after a 413 were paid for with it,
                # so the governor is not charged for their rows a second time.
                pending = deque([(batch, False)])
                while pending:
                    current, paid = pending.popleft()
                    job = await self._deliver(current, paid=paid)
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
        self.jobs[job.job_id] = job
        self.job_rows[job.job_id] = batch.count
        self.last_job = job
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
        await self._wait_for_previous_job()
        if not paid:
            await self.report("rate")
            await self.governor.acquire(batch.count)
        unexplained = 0
        body = self._body(batch)
        while True:
            await self.report()
            try:
                response = await self.transport.request(
                    "POST", self.path, body=body, on_retry=self._on_retry
                )
            except PayloadTooLargeError:
                return None
            except ConflictError:
                # Another job still runs (ours, or another process's): wait it out, then send
                # the same batch again.
                blocking = await self._running_job()
                if blocking is not None:
                    await self._wait_until_terminal(blocking)
                    continue
                unexplained += 1
                if unexplained > self.transport.retry.max_retries:
                    raise
                await self.report("job")
                await anyio.sleep(self.transport.retry.backoff(unexplained - 1))
                continue
            return job_of(response, f"POST {self.path}", self.transport.redact)

    def _body(self, batch: Batch) -> BodyFactory:
        if self.options.body == "json":
            # The lines are compact JSON records already; the JSON envelope is smaller than
            # the multipart framing the batcher's byte budget allows for.
            records = b",".join(line[:-1] for line in batch.lines)
            envelope = b'{"%s":[%s]}' % (JSON_KEYS[self.kind], records)
            return bytes_body(envelope, "application/json")
        # The default file name: the batcher's byte budget is sized for exactly its framing.
        # The batcher already checked the lines: no second pass over them on the event loop.
        return MultipartFile(batch.lines, checked_size=batch.size).factory()

    async def _on_retry(self, error: APIError, delay: float) -> None:
        if isinstance(error, RateLimitError):
            await self.governor.push_back(delay)
        await self.report("retry")

    # -- jobs --------------------------------------------------------------------------------

    async def _get_job(self, job_id: str) -> Job:
        job = await fetch_job(self.transport, job_id)
        if job.job_id in self.jobs:
            self.jobs[job.job_id] = job
            if self.options.on_job is not None:
                self.options.on_job(job)
        return job

    async def _running_job(self) -> Job | None:
        """The job that holds the account's one slot, if one can be seen."""
        if self.last_job is not None and not is_finished(self.last_job):
            job = await self._get_job(self.last_job.job_id)
            if not is_finished(job):
                return job
        try:
            listed = await fetch_jobs(self.transport)
        except APIError:
            return None
        return next((job for job in listed if not is_finished(job)), None)

    async def _on_job_poll(self, job: Job) -> None:
        await self.report("job")

    async def _wait_until_terminal(self, job: Job) -> Job:
        return await wait_until_finished(
            self._get_job,
            job,
            rows_per_minute=self.rows_per_minute,
            expected_rows=self.job_rows.get(job.job_id, job.total_rows or self.options.batch_size),
            on_poll=self._on_job_poll,
        )

    async def _wait_for_previous_job(self) -> None:
        # The server runs one job at a time: rather than collect a 409, wait for the job that
        # holds the slot to end -- ours, or (through a shared governor) another import's.
        if self.last_job is not None and not is_finished(self.last_job):
            try:
                self.last_job = await self._wait_until_terminal(self.last_job)
            except NotFoundError:
                self.last_job = None  # an earlier run's job the server no longer knows
        if isinstance(self.governor, JobSlot):
            latest = await self.governor.latest_job()
            if latest is not None and latest not in self.jobs:
                with contextlib.suppress(NotFoundError):
                    await self._wait_until_terminal(await self._get_job(latest))

    async def _wait_for_jobs(self) -> None:
        for job in list(self.jobs.values()):
            if not is_finished(job):
                await self._wait_until_terminal(job)
