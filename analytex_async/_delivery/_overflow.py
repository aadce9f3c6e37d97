"""Bulk overflow: identifies the real-time window cannot carry within ``max_delay``.

An account has two budgets: 600 real-time requests a minute and 1,200 bulk rows a minute. When
more identifies wait than the identify window can send within ``DeliveryPolicy.max_delay``, the
ones beyond that go out together through the bulk API (``/v1/users/bulk_identify``,
``/v1/companies/bulk_identify``, JSON bodies) under the row governor and the one-job-at-a-time
rule: the bulk pipeline does the batching (10,000 records, 50 MB), the 409 wait-and-resend and
the 413 split. A record sent that way counts as delivered when its job completes, as failed
when its job fails.

An identify stays real-time when the bulk API would refuse it or change its meaning: its
metadata is not primitives only, its company carries more than an ``id``, or tracks of the same
user are queued after it (they must follow its answer, and a bulk job's outcome comes minutes
later).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._bulk._jobs import is_finished
from .._bulk._options import RejectionCallback
from .._errors import ImportAbortedError, JobFailedError, ValidationError
from .._models import ImportResult, Job, JobStatus, Rejection
from .._types import RecordKind
from .._validation import bulk_record
from ._queue import DeliveryQueue, Entry
from ._worker import RETRY_DELAYS, DeliveryWorker, describe, is_transient

logger = logging.getLogger("analytex_async")

OnAccepted = Callable[[tuple[int, ...], Job], None]
BulkRun = Callable[
    [RecordKind, list[dict[str, Any]], OnAccepted, RejectionCallback], Awaitable[ImportResult]
]
"""Runs the bulk pipeline (JSON bodies, waiting for the jobs) over checked records."""

ROUTE_INTERVAL = 0.25
"""Seconds between two looks at the queue, at least."""

KINDS: dict[str, RecordKind] = {"identify": "user", "identify_company": "company"}


def bulk_form(entry: Entry) -> dict[str, Any] | None:
    """The entry as a bulk record, or ``None`` when it must stay real-time.

    Args:
        entry: A waiting entry.

    Returns:
        The record with the bulk API's fields, checked by the bulk rules.
    """
    kind = KINDS.get(entry.kind)
    if kind is None or entry.tracks_after:
        return None
    payload = entry.payload
    if kind == "user":
        company = payload.get("company")
        if company is not None and set(company) != {"id"}:
            return None
        record: dict[str, Any] = {"user_id": payload["user_id"]}
        if company is not None:
            record["company_id"] = company["id"]
    else:
        record = {"company_id": payload["company_id"]}
    if "metadata" in payload:
        record["metadata"] = payload["metadata"]
    try:
        return bulk_record(record, kind)
    except ValidationError:
        return None  # nested metadata, say: the bulk API refuses what real-time takes


class BulkOverflow:
    """Moves the identifies beyond the real-time window's reach to the bulk API.

    Args:
        queue: The delivery queue.
        worker: Its worker (for failures and ``on_error``).
        run_bulk: Runs the bulk pipeline.
        wait_job: Waits until a job is finished (``is_finished``) and returns it.
        reach: How many more identifies the real-time window can start within ``max_delay``.
    """

    def __init__(
        self,
        queue: DeliveryQueue,
        worker: DeliveryWorker,
        run_bulk: BulkRun,
        wait_job: Callable[[Job], Awaitable[Job]],
        reach: Callable[[], Awaitable[int]],
    ) -> None:
        self.queue = queue
        self.worker = worker
        self._run_bulk = run_bulk
        self._wait_job = wait_job
        self._reach = reach
        self._ready: dict[RecordKind, list[tuple[Entry, dict[str, Any]]]] = {
            "user": [],
            "company": [],
        }
        self._wake = anyio.Event()

    def route(self, carried: int) -> int:
        """Take the identifies the window cannot carry within ``max_delay``; how many moved.

        Identifies still waiting go in order: those past what the window can start within
        ``max_delay`` would wait longer than that (an estimate: the window is shared with
        awaited calls, and with other workers, which may take slots first).

        Args:
            carried: How many more identifies the window can start within ``max_delay``.

        Returns:
            How many identifies moved to the bulk route.
        """
        forms: dict[int, dict[str, Any]] = {}
        seen = 0
        if len(self.queue.identifies) <= carried:
            return 0

        def beyond_reach(entry: Entry) -> bool:
            nonlocal seen
            seen += 1
            if seen <= carried:
                return False
            form = bulk_form(entry)
            if form is None:
                return False
            forms[entry.seq] = form
            return True

        moved = self.queue.extract_identifies(beyond_reach)
        for entry in moved:
            self._ready[KINDS[entry.kind]].append((entry, forms[entry.seq]))
        if moved:
            self._wake.set()
        return len(moved)

    async def run(self) -> None:
        """Route and send until cancelled."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._watch)
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                for kind, ready in self._ready.items():
                    if ready:
                        self._ready[kind] = []
                        await self._send(kind, ready)

    async def _watch(self) -> None:
        while True:
            if not self.queue.identifies:
                # Idle: nothing to route until a record arrives (no timer wakes an idle client).
                await self.queue.wait_changed()
                continue
            self.route(await self._reach())
            await anyio.sleep(ROUTE_INTERVAL)
            # What the window can reach changes with time: look again at least every second.
            with anyio.move_on_after(1.0 - ROUTE_INTERVAL):
                await self.queue.wait_changed()

    async def _send(self, kind: RecordKind, batch: list[tuple[Entry, dict[str, Any]]]) -> None:
        tries = 0
        while batch:
            failure = await self._attempt(kind, batch)
            batch = [(e, form) for e, form in batch if not e.settled and not e.via_bulk]
            if failure is None or not batch:
                return
            if not is_transient(failure):
                for entry, _ in batch:
                    await self.worker.fail(entry, failure)
                return
            delay = RETRY_DELAYS[min(tries, len(RETRY_DELAYS) - 1)]
            tries += 1
            logger.warning(
                "bulk overflow will be sent again in %.0f s: %s", delay, describe(failure)
            )
            await anyio.sleep(delay)

    async def _attempt(
        self, kind: RecordKind, batch: list[tuple[Entry, dict[str, Any]]]
    ) -> Exception | None:
        """Run the pipeline once over ``batch``; settle what it decided; its failure, if any."""
        entries = [entry for entry, _ in batch]
        by_job: dict[str, list[Entry]] = {}
        refused: list[tuple[Entry, Rejection]] = []

        def accepted(positions: tuple[int, ...], job: Job) -> None:
            taken = [entries[p] for p in positions]
            for entry in taken:
                entry.via_bulk = True
                entry.mark_answered()
            by_job[job.job_id] = taken

        def rejected(rejection: Rejection) -> None:
            refused.append((entries[rejection.position], rejection))

        failure: Exception | None = None
        try:
            result = await self._run_bulk(kind, [form for _, form in batch], accepted, rejected)
        except ImportAbortedError as exc:
            result = exc.result
            failure = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        for entry, rejection in refused:
            await self.worker.fail(entry, ValidationError(rejection.reason))
        await self._settle_jobs(result, by_job)
        return failure

    async def _settle_jobs(self, result: ImportResult, by_job: dict[str, list[Entry]]) -> None:
        final = {job.job_id: job for job in result.jobs}
        for job_id, entries in by_job.items():
            job = final.get(job_id, Job(job_id, JobStatus.UNKNOWN))
            tries = 0
            while not is_finished(job):
                try:
                    job = await self._wait_job(job)
                except Exception as exc:
                    delay = RETRY_DELAYS[min(tries, len(RETRY_DELAYS) - 1)]
                    tries += 1
                    logger.warning(
                        "bulk overflow job %s: asking again in %.0f s (%s)",
                        job_id,
                        delay,
                        describe(exc),
                    )
                    await anyio.sleep(delay)
            for entry in entries:
                if job.status is JobStatus.FAILED:
                    await self.worker.fail(entry, JobFailedError(job))
                else:
                    self.queue.settle(entry, "delivered")
