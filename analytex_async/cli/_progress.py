"""The state of an import as the command line shows it: counts, pace, ETA, what it waits for.

The import pipeline reports through ``on_progress`` (an ``ImportProgress`` after each step);
:class:`ImportWatch` keeps the latest report and derives the rate and the ETA from it. It also
keeps the import's jobs as the display last saw them (``_server_jobs`` refreshes them), so that
what the server completed stays fresh between the pipeline's own polls. The displays
(``_display``) draw the watch; the words and numbers they use are here.

What the import waits for is named by the binding constraint: the client's rate ("next batch at
12:04:31: the rate"), when the next batch could not go before that even once the server's job
is done; else the server's running job. The rate is never named when no batch is left to send,
nor for an events import, which the rate does not pace. The running job's rows done and the
"completed" count come from the same states of the jobs, so they never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs

from .._bulk._jobs import is_finished
from .._models import ImportProgress, Job
from ._report import completed_rows

STAGES: tuple[str, ...] = ("read", "sent", "completed")
"""The counts an import display shows."""
DRY_RUN_STAGES: tuple[str, ...] = ("read",)
"""A dry run only reads and validates."""


def count(value: float) -> str:
    """A count with thousands separators: ``12,345``."""
    return f"{round(value):,}"


def counted(value: float, noun: str) -> str:
    """A count and its noun, plural unless one: ``1 row``, ``12,345 rows``, ``2 batches``."""
    plural = noun + ("es" if noun.endswith(("s", "ch")) else "s")
    return f"{count(value)} {noun if round(value) == 1 else plural}"


def duration(seconds: float) -> str:
    """A duration as ``H:MM:SS``."""
    whole = max(round(seconds), 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def clock_time(moment: float) -> str:
    """A moment (seconds since the epoch) as the local time of day: ``12:04:31``."""
    return time.strftime("%H:%M:%S", time.localtime(moment))


@attrs.define
class ImportWatch:
    """The latest state of one import, and what follows from it.

    Attributes:
        rows_per_minute: The rate the client keeps to (the ETA's fallback).
        wait: Whether the import waits for the server to complete the rows.
        paced: Whether ``rows_per_minute`` paces the batches (not for an events import).
        total: The records the source holds (counted ahead), when known.
        clock: Seconds, for elapsed time and rates (a display concern: no wait uses it).
        wall_clock: Seconds since the epoch, to tell a moment as a time of day.
        progress: The last report of the pipeline.
        started: When the watch began.
        first_sent_at: When the server first accepted a batch.
        last_sent_at: When the server last accepted a batch.
        sent_before_last: The rows sent before that batch.
        last_batch_rows: The rows of the last accepted batch.
        last_batch_started_at: When that batch left (its rate wait over), on ``clock``.
        jobs: The import's jobs as the display last saw them, by id.
        outcome: ``"done"`` or ``"stopped"`` once the import is over.
    """

    rows_per_minute: float
    wait: bool = True
    paced: bool = True
    total: int | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    progress: ImportProgress = attrs.field(factory=ImportProgress)
    started: float = attrs.field(init=False)
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    sent_before_last: int = 0
    last_batch_rows: int = 0
    last_batch_started_at: float | None = None
    jobs: dict[str, Job] = attrs.field(factory=dict)
    outcome: str | None = None
    _batch_left_at: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.started = self.clock()

    def restart(self) -> None:
        """Start the clock again: the import begins now (after the demo's set-up, say)."""
        self.started = self.clock()

    def update(self, progress: ImportProgress) -> None:
        """Take a new report.

        Args:
            progress: The pipeline's report.
        """
        now = self.clock()
        if progress.rows_sent > self.progress.rows_sent:
            self.last_sent_at = now
            self.sent_before_last = self.progress.rows_sent
            self.last_batch_rows = progress.rows_sent - self.progress.rows_sent
            # A batch split after a 413 skips the rate wait: its start is then unknown.
            self.last_batch_started_at = self._batch_left_at or now
            self._batch_left_at = None
            if self.first_sent_at is None:
                self.first_sent_at = self.last_sent_at
        elif self.progress.waiting_for == "rate" and progress.waiting_for is None:
            self._batch_left_at = now  # the rate let the next batch go: it is on its way
        self.progress = progress

    def saw_job(self, job: Job) -> None:
        """Take the latest state of one of the import's jobs (accepted, or polled).

        Args:
            job: The job.
        """
        self.jobs[job.job_id] = job

    def unfinished_jobs(self) -> list[Job]:
        """The import's jobs the server had not finished when last seen."""
        return [job for job in self.jobs.values() if not is_finished(job)]

    @property
    def rows_completed(self) -> int:
        """Rows the server completed: the pipeline's count, or the display's fresher one."""
        seen = sum(completed_rows(job) for job in self.jobs.values())
        return max(self.progress.rows_completed, seen)

    def next_batch_at(self) -> float | None:
        """When the rate lets the next batch go (on ``clock``), if a batch went already.

        The governor starts a batch once the rows before it fit the rate: the last batch's
        rows, at ``rows_per_minute``, after that batch started.
        """
        if self.last_batch_started_at is None:
            return None
        return self.last_batch_started_at + self.last_batch_rows * 60.0 / self.rows_per_minute

    @property
    def elapsed(self) -> float:
        """Seconds since the watch began."""
        return self.clock() - self.started

    @property
    def expected_rows(self) -> int | None:
        """Rows this run should send: the source's records less the rejected and skipped ones."""
        if self.total is None:
            return None
        return max(self.total - self.progress.rows_rejected - self.progress.rows_skipped, 0)

    def rate(self) -> float | None:
        """Rows a minute sent, measured between the first and the last accepted batch.

        The governor starts a batch once the rows before it fit the rate, so the rows sent
        before the last batch, over the time from the first batch to the last, measure the pace
        (whatever the batches' sizes). ``None`` until a second batch went.
        """
        if self.first_sent_at is None or self.last_sent_at is None:
            return None
        rows = self.sent_before_last
        seconds = self.last_sent_at - self.first_sent_at
        if rows <= 0 or seconds <= 0:
            return None
        return rows * 60.0 / seconds

    def eta(self) -> float | None:
        """Seconds until the last row is done (completed, or sent with ``--no-wait``)."""
        expected = self.expected_rows
        if expected is None:
            return None
        done = self.rows_completed if self.wait else self.progress.rows_sent
        remaining = max(expected - done, 0)
        if not remaining:
            return 0.0
        per_minute = self.rate() or (self.rows_per_minute if self.paced else None)
        return None if per_minute is None else remaining * 60.0 / per_minute

    def waiting_text(self) -> str:
        """What the import is doing or waiting for, in words."""
        if self.outcome is not None:
            return self.outcome
        waiting = self.progress.waiting_for
        if waiting is None:
            return "reading and sending"
        if waiting == "retry":
            return "waiting for a retry after an error"
        now = self.clock()
        next_batch = self.next_batch_at()
        if waiting == "job" and not self._rate_binds(now, next_batch):
            return self._job_text()
        rate = f"the rate ({count(self.rows_per_minute)} rows/min)"
        if next_batch is None or next_batch <= now:
            return f"waiting for {rate}"
        return f"next batch at {clock_time(self.wall_clock() + next_batch - now)}: {rate}"

    def _rate_binds(self, now: float, next_batch: float | None) -> bool:
        """Whether the rate, not the server's job, holds the next batch back.

        The job's rows still to do are assumed to go at the rate too: the server's pace is
        unknown, and the API's is the rate the client keeps to. With nothing left to send, or
        for an import the rate does not pace, the rate holds nothing back.
        """
        if not self.paced or self.progress.sending_done:
            return False
        if next_batch is None or next_batch <= now:
            return False
        to_do = max(self.progress.rows_sent - self.rows_completed, 0)
        return next_batch >= now + to_do * 60.0 / self.rows_per_minute

    def _job_text(self) -> str:
        running = self.unfinished_jobs()
        if not running and self.progress.sending_done and self.jobs:
            return "finishing: the server is done"
        if len(running) == 1 and running[0].total_rows:
            job = running[0]
            total = job.total_rows or 0
            # What the other jobs cannot account for of the "completed" count is this job's.
            others = sum(completed_rows(j) for j in self.jobs.values() if j is not job)
            done = min(max(completed_rows(job), self.rows_completed - others), total)
            return (
                f"waiting for the server's running job ({count(done)} of {count(total)} rows done)"
            )
        return "waiting for the server's running job"

    def status_parts(self) -> list[str]:
        """The rate, elapsed time, ETA and state, as short phrases."""
        rate = self.rate()
        eta = self.eta()
        return [
            f"{count(rate)} rows/min" if rate is not None else "rate -",
            f"elapsed {duration(self.elapsed)}",
            f"ETA {duration(eta)}" if eta is not None else "ETA -",
            self.waiting_text(),
        ]

    def line(self, stages: Sequence[str] = STAGES) -> str:
        """The whole state on one line, for logs.

        Args:
            stages: Which counts to show.
        """
        p = self.progress
        values = {"read": p.rows_read, "sent": p.rows_sent, "completed": self.rows_completed}
        shown = [f"{stage} {count(values[stage])}" for stage in stages]
        if shown and stages[0] == "read" and self.total is not None:
            shown[0] += f" of {count(self.total)}"
        shown.append(f"rejected {count(p.rows_rejected)}")
        if p.rows_skipped:
            shown.append(f"skipped {count(p.rows_skipped)} (journal)")
        counts = ", ".join(shown)
        elapsed = duration(self.elapsed)
        if tuple(stages) == DRY_RUN_STAGES:  # nothing is sent, nothing waits
            return f"[{elapsed}] {counts}"
        rate, _, eta, waiting = self.status_parts()
        return f"[{elapsed}] {counts}; {rate}, {eta}; {waiting}"
