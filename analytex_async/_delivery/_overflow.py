"""Bulk overflow: identifies the real-time window cannot carry within ``max_delay``.

An account has two budgets: 600 real-time requests a minute and 1,200 bulk rows a minute. An
identify that becomes ready (the head of its chain) while more identifies are ready than the
identify window can start within ``DeliveryPolicy.max_delay`` goes to a bulk lane instead: the
choice is made once per record, as it becomes ready, in O(1) (no rescans of what waits).

The bulk sender takes up to 10,000 records of a bulk lane at a time and hands them to the bulk
pipeline as a multipart NDJSON upload with a file name unique to the batch, under the row governor
and the one-job-at-a-time rule: the pipeline batches (10,000 records, 50 MB), waits out a 409 and
resends, splits after a 413, and after a lost answer adopts the job it finds by that file name
(no duplicate job). A record sent that way is ``IN_JOB`` until its job finishes: delivered when it
completed, failed when it failed; its chain's next record waits until then, so a newer value never
lands before an older one.

An identify stays real-time when the bulk API would refuse it or change its meaning: its
metadata is not primitives only, its company carries more than an ``id``, or records of the same
user wait behind it (they must follow its answer, and a bulk job's outcome comes minutes later).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from .._bulk._jobs import is_finished
from .._bulk._options import RejectionCallback
from .._constants import MAX_RECORDS
from .._errors import ImportAbortedError, JobFailedError, ValidationError
from .._models import ImportResult, Job, JobStatus, Rejection
from .._types import RecordKind
from .._validation import bulk_record
from ._ledger import Ledger
from ._record import Lane, Record, State
from ._senders import Failures, RealtimeSenders, describe, is_transient, retry_delay

logger = logging.getLogger("analytex_async")

OnAccepted = Callable[[tuple[int, ...], Job], None]
BulkRun = Callable[
    [RecordKind, list[dict[str, Any]], OnAccepted, RejectionCallback], Awaitable[ImportResult]
]
"""Runs the bulk pipeline (multipart NDJSON, waiting for the jobs) over checked records."""

REACH_FRESH = 0.25
"""Seconds a reach estimate is used before it is asked again, while identifies are ready."""

STALE_REACH = 1.0
"""Seconds after which a reach estimate is asked again inline, at the first identify."""

FORM_CHUNK = 500
"""Records put in bulk form between two checkpoints (the event loop is never held long)."""

KINDS: dict[str, RecordKind] = {"identify": "user", "identify_company": "company"}

_PRIMITIVES = (str, int, float, bool, type(None))


def could_go_bulk(record: Record) -> bool:
    """A cheap look at whether the bulk API takes the record as real-time would send it.

    Args:
        record: A user or company identify.

    Returns:
        False when its company carries more than an ``id`` or its metadata is not primitives
        only (the bulk sender still checks each record fully before it goes).
    """
    payload = record.payload
    company = payload.get("company")
    if company is not None and (len(company) != 1 or "id" not in company):
        return False
    metadata = payload.get("metadata")
    return metadata is None or all(isinstance(v, _PRIMITIVES) for v in metadata.values())


def bulk_form(record: Record) -> dict[str, Any] | None:
    """The record as a bulk record, or ``None`` when it must stay real-time.

    Args:
        record: A user or company identify.

    Returns:
        The record with the bulk API's fields, checked by the bulk rules.
    """
    kind = KINDS[record.kind]
    payload = record.payload
    if kind == "user":
        form: dict[str, Any] = {"user_id": payload["user_id"]}
        company = payload.get("company")
        if company is not None:
            form["company_id"] = company["id"]
    else:
        form = {"company_id": payload["company_id"]}
    if "metadata" in payload:
        form["metadata"] = payload["metadata"]
    try:
        return bulk_record(form, kind)
    except ValidationError:
        return None  # the bulk API refuses what real-time takes (a long id, say)


class BulkOverflow:
    """Routes the identifies beyond the window's reach to the bulk API, and sends them there.

    Args:
        ledger: The ledger (it asks ``route`` as identifies become ready).
        senders: The real-time senders (how many identifies they started, for the estimate).
        failures: Where permanent failures go.
        max_delay: Seconds an identify may wait for the window before it goes bulk.
        run_bulk: Runs the bulk pipeline.
        wait_job: Waits until a job is finished (``is_finished``) and returns it.
        reach: How many more identifies the window can start within ``max_delay``.
        quick_reach: The same, without a request, when the window can tell at once.
    """

    def __init__(
        self,
        ledger: Ledger,
        senders: RealtimeSenders,
        failures: Failures,
        *,
        run_bulk: BulkRun,
        wait_job: Callable[[Job], Awaitable[Job]],
        reach: Callable[[], Awaitable[int]],
        quick_reach: Callable[[int], int | None],
    ) -> None:
        self.ledger = ledger
        self.senders = senders
        self.failures = failures
        self._run_bulk = run_bulk
        self._wait_job = wait_job
        self._reach = reach
        self._quick_reach = quick_reach
        self.lanes: dict[str, Lane] = {"identify": OrderedDict(), "identify_company": OrderedDict()}
        self._estimate: int | None = None
        self._estimated_at = -float("inf")
        self._started_then = 0
        self._lower_bound = False  # the estimate is only the window's free slots
        self._has_work = anyio.Event()

    # -- routing: called by the ledger, synchronously, as an identify becomes ready ----------

    def route(self, record: Record, followed: bool) -> Lane:
        """The identify lane, or a bulk lane when the window cannot carry it in time.

        Args:
            record: A user or company identify that becomes the head of its chain.
            followed: Records of the same key wait behind it.

        Returns:
            The lane.
        """
        identifies = self.ledger.identifies
        if followed or len(identifies) < self._reach_now(len(identifies)):
            return identifies
        if not could_go_bulk(record):
            return identifies
        self._has_work.set()
        return self.lanes[record.kind]

    def _reach_now(self, backlog: int) -> int:
        """How many more identifies the window starts within ``max_delay``, estimated."""
        now = anyio.current_time()
        if self._estimate is not None and now - self._estimated_at <= STALE_REACH:
            reach = self._estimate - (self.senders.started - self._started_then)
            if reach > backlog or not self._lower_bound:
                return reach
        quick = self._quick_reach(backlog)
        if quick is not None:
            # The window's free slots, when they are enough (a lower bound, kept for a second),
            # else its full estimate.
            self._remember(quick, now, lower_bound=quick > backlog)
        if self._estimate is None:
            return 1 << 62  # a shared window not asked yet: the refresher asks it at once
        return self._estimate - (self.senders.started - self._started_then)

    def _remember(self, reach: int, now: float, *, lower_bound: bool = False) -> None:
        self._estimate, self._estimated_at = reach, now
        self._started_then = self.senders.started
        self._lower_bound = lower_bound

    # -- sending -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the estimate fresh while identifies wait; send the bulk lanes; until cancelled."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._refresh)
            while True:
                await self._has_work.wait()
                self._has_work = anyio.Event()
                for kind, lane in self.lanes.items():
                    while lane:
                        await self._send(KINDS[kind], lane)

    async def _refresh(self) -> None:
        while True:
            # Idle: nothing to estimate until an identify waits (no timer wakes an idle client).
            await self.ledger.wait_ready(self.ledger.identifies)
            self._remember(await self._reach(), anyio.current_time())
            await anyio.sleep(REACH_FRESH)

    async def _send(self, kind: RecordKind, lane: Lane) -> None:
        records = self.ledger.take_many(lane, MAX_RECORDS)
        batch: list[tuple[Record, dict[str, Any]]] = []
        for number, record in enumerate(records, start=1):
            form = bulk_form(record)
            if form is None:
                self.ledger.ready_again(record, self.ledger.identifies)
            else:
                batch.append((record, form))
            if number % FORM_CHUNK == 0:
                await anyio.lowlevel.checkpoint()
        tries = 0
        while batch:
            failure = await self._attempt(kind, batch)
            # What is still ``SENDING`` was neither accepted in a job nor refused.
            batch = [(record, form) for record, form in batch if record.state is State.SENDING]
            if failure is None or not batch:
                return
            if not is_transient(failure):
                for record, _ in batch:
                    await self.failures.fail(record, failure)
                return
            tries += 1
            delay = retry_delay(tries)
            logger.warning(
                "bulk overflow will be sent again in %.0f s: %s", delay, describe(failure)
            )
            for record, _ in batch:
                self.ledger.retrying(record)
            await anyio.sleep(delay)
            batch = [(record, form) for record, form in batch if self.ledger.resume(record)]

    async def _attempt(
        self, kind: RecordKind, batch: list[tuple[Record, dict[str, Any]]]
    ) -> Exception | None:
        """Run the pipeline once over ``batch``; settle what it decided; its failure, if any."""
        records = [record for record, _ in batch]
        by_job: dict[str, list[Record]] = {}
        refused: list[tuple[Record, Rejection]] = []

        def accepted(positions: tuple[int, ...], job: Job) -> None:
            taken = [records[p] for p in positions]
            for record in taken:
                self.ledger.in_job(record)
            by_job[job.job_id] = taken

        def rejected(rejection: Rejection) -> None:
            refused.append((records[rejection.position], rejection))

        failure: Exception | None = None
        try:
            result = await self._run_bulk(kind, [form for _, form in batch], accepted, rejected)
        except ImportAbortedError as exc:
            result = exc.result
            failure = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        for record, rejection in refused:
            await self.failures.fail(record, ValidationError(rejection.reason))
        await self._settle_jobs(result, by_job)
        return failure

    async def _settle_jobs(self, result: ImportResult, by_job: dict[str, list[Record]]) -> None:
        final = {job.job_id: job for job in result.jobs}
        for job_id, records in by_job.items():
            job = final.get(job_id, Job(job_id, JobStatus.UNKNOWN))
            tries = 0
            while not is_finished(job):
                try:
                    job = await self._wait_job(job)
                except Exception as exc:
                    tries += 1
                    delay = retry_delay(tries)
                    logger.warning(
                        "bulk overflow job %s: asking again in %.0f s (%s)",
                        job_id,
                        delay,
                        describe(exc),
                    )
                    await anyio.sleep(delay)
            for record in records:
                if job.status is JobStatus.FAILED:
                    await self.failures.fail(record, JobFailedError(job))
                else:
                    self.ledger.settle(record, "delivered")
