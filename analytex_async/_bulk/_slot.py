"""An import's jobs, and the account's one job slot as the import sees it.

The server runs one bulk job at a time per account (users and companies together), and one
events import at a time, separately. Before each batch the import waits for the job that holds
its slot -- its own last one, or (through a governor that remembers jobs) another import's --
rather than collect a 409; after a 409 it looks for the running job and waits it out. After an
answer was lost, it looks its own upload up by file name before sending it again (sdk.md, "No
duplicate jobs").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio

from .._errors import APIConnectionError, APIError, NotFoundError
from .._models import Job, JobStatus
from .._retry import RetryPolicy
from .._transport import Transport
from ..governors._local import Governor, JobSlot
from ._jobs import fetch_job, find_job, is_finished, is_import_job, wait_until_finished

logger = logging.getLogger("analytex_async")

LOOKUP_ONCE = RetryPolicy(max_retries=0)
"""The lost-answer lookup is brief: one try, then the upload is sent again."""


class JobTracker:
    """The jobs of one import, and waiting for the slot they share with other imports.

    Args:
        transport: Sends the requests.
        governor: The row governor; when it remembers jobs (``JobSlot``), imports sharing it
            wait for each other's jobs.
        rows_per_minute: The server's processing rate, for the poll schedule (not for an
            events import's jobs, which it does not pace).
        events: The import sends events (``/v1/imports``), whose slot is their own.
        on_job: Told each fresh state of one of the import's jobs.
        on_poll: Told each state of a job being waited for.
    """

    def __init__(
        self,
        transport: Transport,
        governor: Governor,
        *,
        rows_per_minute: float,
        events: bool = False,
        on_job: Callable[[Job], None] | None = None,
        on_poll: Callable[[Job], Awaitable[None]] | None = None,
    ) -> None:
        self.transport = transport
        self.governor = governor
        self.rows_per_minute = rows_per_minute
        self.events = events
        self._on_job = on_job
        self._on_poll = on_poll
        self.jobs: dict[str, Job] = {}
        self.job_rows: dict[str, int] = {}
        self.submitted_at: dict[str, float] = {}  # clock readings, for the poll schedule
        self.seen_at: dict[str, float] = {}  # when each job's state at hand was had
        self.last_job: Job | None = None

    def accepted(self, job: Job, rows: int) -> None:
        """Record a job the server created for one of the import's batches.

        Args:
            job: The job.
            rows: Rows in its batch.
        """
        now = anyio.current_time()
        self.jobs[job.job_id] = job
        self.job_rows[job.job_id] = rows
        self.submitted_at[job.job_id] = self.seen_at[job.job_id] = now
        self.last_job = job

    def rows_completed(self) -> int:
        """Rows the server reports as processed, over every job."""
        done = 0
        for job_id, job in self.jobs.items():
            if job.status is JobStatus.COMPLETED:
                done += self.job_rows[job_id]
            elif job.completed_rows is not None:
                done += min(job.completed_rows, self.job_rows[job_id])
        return done

    async def get(self, job_id: str) -> Job:
        """Fetch a job, keeping the import's own jobs up to date.

        Args:
            job_id: The job's id.

        Returns:
            Its current state.
        """
        job = await fetch_job(self.transport, job_id)
        if job.job_id in self.jobs:
            self.seen_at[job.job_id] = anyio.current_time()
            if not is_finished(self.jobs[job.job_id]) and is_finished(job):
                self._log_finished(job)
            self.jobs[job.job_id] = job
            if self._on_job is not None:
                self._on_job(job)
        return job

    async def wait(self, job: Job) -> Job:
        """Wait until ``job`` is finished, on the one poll schedule.

        One of the import's own jobs is timed from its submit, from the state last had of it;
        another job is fetched first.

        Args:
            job: The job.

        Returns:
            Its finished state.
        """
        job_id = job.job_id
        seen_at = None
        if job_id in self.jobs:
            job, seen_at = self.jobs[job_id], self.seen_at[job_id]
        expected = self.job_rows.get(job_id)  # else the job's own total_rows, if it says
        return await wait_until_finished(
            self.get,
            job,
            rows_per_minute=None if self.events else self.rows_per_minute,
            expected_rows=expected,
            submitted_at=self.submitted_at.get(job_id),
            seen_at=seen_at,
            on_poll=self._on_poll,
        )

    def _log_finished(self, job: Job) -> None:
        rows = self.job_rows[job.job_id]
        done = rows if job.status is JobStatus.COMPLETED else (job.completed_rows or 0)
        logger.info(
            "job %s %s: %d of %d rows processed",
            job.job_id,
            job.status.value,
            min(done, rows),
            rows,
            extra={"job_id": job.job_id, "rows": rows, "rows_completed": min(done, rows)},
        )

    def _shares_slot(self, job: Job) -> bool:
        return is_import_job(job) == self.events

    async def running(self) -> Job | None:
        """The job that holds the import's slot, if one can be seen (after a 409)."""
        if self.last_job is not None and not is_finished(self.last_job):
            job = await self.get(self.last_job.job_id)
            if not is_finished(job):
                return job
        try:
            return await find_job(
                self.transport, lambda job: not is_finished(job) and self._shares_slot(job)
            )
        except APIError:
            return None

    async def wait_for_previous(self) -> None:
        """Wait for the job holding the slot to end: the import's own, or another import's."""
        if self.last_job is not None and not is_finished(self.last_job):
            try:
                self.last_job = await self.wait(self.last_job)
            except NotFoundError:
                self.last_job = None  # an earlier run's job the server no longer knows
        if not self.events and isinstance(self.governor, JobSlot):
            latest = await self.governor.latest_job()
            if latest is not None and latest not in self.jobs:
                with contextlib.suppress(NotFoundError):
                    await self.wait(Job(latest, JobStatus.UNKNOWN))

    async def wait_all(self) -> None:
        """Wait until every job of the import is finished."""
        for job in list(self.jobs.values()):
            if not is_finished(job):
                await self.wait(job)

    async def adopt_lost(self, error: APIError, filename: str) -> Job | None:
        """After an answer that may have been lost, the job the server made of the upload.

        Args:
            error: Why the upload has no answer.
            filename: The upload's file name, unique to it.

        Returns:
            The job to adopt instead of sending again, or ``None``.
        """
        if not isinstance(error, APIConnectionError) or not error.request_sent:
            return None
        job = await self.find_upload(filename)
        if job is not None:
            logger.warning(
                "the answer to upload %s was lost, but the server made job %s of it: adopted, "
                "not sent again",
                filename,
                job.job_id,
            )
        return job

    async def find_upload(self, filename: str) -> Job | None:
        """The job the server made of an upload whose answer was lost, if it made one.

        Args:
            filename: The upload's file name (unique to its batch).

        Returns:
            The job, or ``None`` when no page of the job list holds one with that file name
            (or a page cannot be had at once: the upload is then sent again). However long
            the account's history, the whole list is read if need be.
        """
        try:
            return await find_job(
                self.transport, lambda job: job.raw.get("filename") == filename, retry=LOOKUP_ONCE
            )
        except APIError:
            return None
