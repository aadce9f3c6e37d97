"""The state of an import as the command line shows it: counts, pace, ETA, what it waits for.

The import pipeline reports through ``on_progress`` (an ``ImportProgress`` after each step);
:class:`ImportWatch` keeps the latest report and derives the rate and the ETA from it. The
displays (``_display``) draw the watch; the words and numbers they use are here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs

from .._models import ImportProgress

STAGES: tuple[str, ...] = ("read", "sent", "completed")
"""The counts an import display shows."""
DRY_RUN_STAGES: tuple[str, ...] = ("read",)
"""A dry run only reads and validates."""
WAITING_FOR = {
    "rate": "the rate budget",
    "job": "the server's running job",
    "retry": "a retry after an error",
}


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


@attrs.define
class ImportWatch:
    """The latest state of one import, and what follows from it.

    Attributes:
        rows_per_minute: The rate the client keeps to (the ETA's fallback).
        wait: Whether the import waits for the server to complete the rows.
        total: The records the source holds (counted ahead), when known.
        clock: Seconds, for elapsed time and rates (a display concern: no wait uses it).
        progress: The last report of the pipeline.
        started: When the watch began.
        first_sent_at: When the server first accepted a batch.
        last_sent_at: When the server last accepted a batch.
        sent_before_last: The rows sent before that batch.
        outcome: ``"done"`` or ``"stopped"`` once the import is over.
    """

    rows_per_minute: float
    wait: bool = True
    total: int | None = None
    clock: Callable[[], float] = time.monotonic
    progress: ImportProgress = attrs.field(factory=ImportProgress)
    started: float = attrs.field(init=False)
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    sent_before_last: int = 0
    outcome: str | None = None

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
        if progress.rows_sent > self.progress.rows_sent:
            self.last_sent_at = self.clock()
            self.sent_before_last = self.progress.rows_sent
            if self.first_sent_at is None:
                self.first_sent_at = self.last_sent_at
        self.progress = progress

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
        done = self.progress.rows_completed if self.wait else self.progress.rows_sent
        remaining = max(expected - done, 0)
        if not remaining:
            return 0.0
        per_minute = self.rate() or self.rows_per_minute
        return remaining * 60.0 / per_minute

    def waiting_text(self) -> str:
        """What the import is doing or waiting for, in words."""
        if self.outcome is not None:
            return self.outcome
        waiting = self.progress.waiting_for
        if waiting is None:
            return "reading and sending"
        if waiting == "rate":
            return f"waiting for the rate budget ({count(self.rows_per_minute)} rows/min)"
        return f"waiting for {WAITING_FOR[waiting]}"

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
        values = {"read": p.rows_read, "sent": p.rows_sent, "completed": p.rows_completed}
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
