"""The bulk rate governor: how fast an import may send rows.

The server meters bulk imports in rows per minute. The contract (step 3, "Govern") is that a
batch of ``n`` rows starts only when the rows already sent fit the rate: the start of batch
``k+1`` is at least ``n_k * 60 / rows_per_minute`` seconds after the start of batch ``k``.

That is GCRA (the generic cell rate algorithm) counted in rows, with zero burst tolerance. The
governor keeps one number, the *theoretical arrival time* ``tat``: the earliest moment the next
batch may start. A batch of ``n`` rows waits until ``now >= tat``, starts, and moves
``tat = start + n * 60 / rows_per_minute``. Two consequences worth spelling out:

* A batch larger than a minute's budget is not refused: it starts, and the batches after it pay
  for it (5,000 rows at 1,200 a minute hold the next batch back 250 seconds).
* Idle time is not banked: ``tat`` is set from the actual start, never from the previous ``tat``,
  so a governor left alone for an hour allows exactly one batch immediately, not a burst.

``Governor`` is the protocol the pipeline depends on, so a governor shared across processes
(e.g. one kept in Redis) can replace the in-process ``RowGovernor``.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import anyio

from .._types import RequestSlots

__all__ = ["Governor", "JobSlot", "KeyScoped", "RowGovernor", "SharedRequestWindows"]

# Added to every sleep so we wake just *after* ``tat``, not a rounding error before it:
# ``anyio.sleep(d)`` turns ``d`` back into the deadline ``now + d``, which can round below
# ``tat`` (and asyncio may fire a timer up to its clock resolution early). ``acquire`` compares
# against the stored ``tat`` after every wake-up, so starting early is impossible either way; the
# margin spares the extra, near-zero sleeps. It is strictly positive, so every sleep moves time
# forward. A microsecond per batch costs under 0.01% of the rate even for one-row batches at
# 1,200 rows a minute.
_WAKE_MARGIN = 1e-6


@runtime_checkable
class Governor(Protocol):
    """Decides when a batch of rows may start, so an import stays under the row rate.

    The bulk pipeline calls ``acquire`` before sending each batch and ``push_back`` when the
    server answers 429 anyway. Implement it to share one budget between clients, processes or
    hosts, and pass it as ``AsyncAnalytex(governor=...)``.

    Example:
        ```python
        class LoggingGovernor:
            def __init__(self, inner: Governor) -> None:
                self.inner = inner

            async def acquire(self, rows: int) -> float:
                waited = await self.inner.acquire(rows)
                print(f"{rows} rows may start after {waited:.1f} s")
                return waited

            async def push_back(self, seconds: float) -> None:
                await self.inner.push_back(seconds)
        ```
    """

    async def acquire(self, rows: int) -> float:
        """Wait until a batch of ``rows`` rows may start, and count it as started.

        Args:
            rows: The number of rows in the batch (at least 1).

        Returns:
            The seconds spent waiting.
        """
        ...

    async def push_back(self, seconds: float) -> None:
        """Hold every batch back for ``seconds`` from now: the server answered 429.

        Args:
            seconds: How long nothing may start, typically the response's Retry-After.
        """
        ...


@runtime_checkable
class JobSlot(Protocol):
    """Remembers the account's latest bulk job, for everyone who shares a governor.

    The server runs one bulk job at a time per account. Imports that share a governor (several
    on one client, or several workers sharing a Redis governor) use this to wait for the job
    that holds the slot instead of colliding with it and collecting 409s. It is an
    optimisation: a 409 is still handled safely when the slot's information is missing or late.
    A ``Governor`` may implement it too; the pipeline uses it when it is there.
    """

    async def latest_job(self) -> str | None:
        """The id of the latest job anyone sharing this governor submitted, if still fresh.

        Returns:
            The job id, or ``None``.
        """
        ...

    async def set_latest_job(self, job_id: str, ttl: float) -> None:
        """Record a job just accepted by the server.

        Args:
            job_id: The job's id.
            ttl: Seconds after which the record may be forgotten (well past the job's
                expected end).
        """
        ...


@runtime_checkable
class KeyScoped(Protocol):
    """A governor whose budget is per API key: the client tells it which key, as a hash."""

    def bind_key_hash(self, key_hash: str) -> None:
        """Scope the governor's budget to the account of this key.

        Args:
            key_hash: A hash of the API key (never the key itself).
        """
        ...


@runtime_checkable
class SharedRequestWindows(Protocol):
    """A governor that also shares the real-time request budgets (identify, track, delete)."""

    def request_window(self, rule: str, limit: int, period: float = 60.0) -> RequestSlots:
        """A request window shared by everyone using this governor.

        Args:
            rule: Which budget (``"identify"``, ``"track"``, ``"delete"``).
            limit: Requests allowed per period.
            period: The window's length in seconds.

        Returns:
            The shared window.
        """
        ...


class RowGovernor:
    """An in-process ``Governor``: at most ``rows_per_minute`` rows a minute, batch by batch.

    Batches are admitted first come, first served, so imports sharing one client share its
    budget fairly. A caller cancelled while waiting consumes nothing and does not hold up the
    callers behind it. There are no background tasks: all the work happens in ``acquire``.

    Args:
        rows_per_minute: The row rate to stay under (positive and finite).

    Raises:
        ValueError: ``rows_per_minute`` is not a positive finite number.

    Example:
        <!-- example: mock clock -->
        ```python
        governor = RowGovernor(rows_per_minute=1200)
        await governor.acquire(5000)  # starts at once
        await governor.acquire(100)  # waits 250 s: the first batch is paid for afterwards
        ```
    """

    def __init__(self, rows_per_minute: float = 1200) -> None:
        # ``not x > 0`` also refuses NaN.
        if not rows_per_minute > 0 or not math.isfinite(rows_per_minute):
            raise ValueError(
                f"rows_per_minute must be a positive finite number, got {rows_per_minute!r}"
            )
        self._rows_per_minute = float(rows_per_minute)
        self._seconds_per_row = 60.0 / self._rows_per_minute
        # Nothing has been sent yet, so the first batch may start whenever it comes.
        self._tat = -math.inf
        # anyio's Lock is fair: waiters get their turn in arrival order. The holder sleeps until
        # its start time while the rest queue behind it.
        self._turn = anyio.Lock()
        self._latest_job: tuple[str, float] | None = None

    @property
    def rows_per_minute(self) -> float:
        """The row rate this governor keeps to."""
        return self._rows_per_minute

    def __repr__(self) -> str:
        return f"RowGovernor(rows_per_minute={self._rows_per_minute:g})"

    async def acquire(self, rows: int) -> float:
        """Wait until a batch of ``rows`` rows may start, and count it as started.

        The batch starts when the batches before it are paid for; it then holds the next batch
        back by ``rows * 60 / rows_per_minute`` seconds.

        Args:
            rows: The number of rows in the batch (at least 1).

        Returns:
            The seconds spent waiting, including the wait for earlier callers' turns.

        Raises:
            ValueError: ``rows`` is less than 1.
        """
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows!r}")
        called_at = anyio.current_time()
        async with self._turn:
            while True:
                now = anyio.current_time()
                if now >= self._tat:
                    break
                # Re-checked on waking: a push_back may have moved ``tat`` while we slept.
                await anyio.sleep(self._tat - now + _WAKE_MARGIN)
            # No checkpoint from here on: a cancellation either lands before this point (and
            # nothing was consumed) or not at all.
            self._tat = now + rows * self._seconds_per_row
        return now - called_at

    async def push_back(self, seconds: float) -> None:
        """Hold every batch back for ``seconds`` from now: the server answered 429.

        Never brings the next start earlier. A caller already waiting in ``acquire`` notices the
        later time when it wakes and keeps waiting.

        Args:
            seconds: How long nothing may start (zero or more, finite).

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if not seconds >= 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds must be zero or more and finite, got {seconds!r}")
        self._tat = max(self._tat, anyio.current_time() + seconds)

    async def latest_job(self) -> str | None:
        """The latest job recorded by an import sharing this governor, if not expired.

        Returns:
            The job id, or ``None``.
        """
        if self._latest_job is None:
            return None
        job_id, expires = self._latest_job
        return job_id if anyio.current_time() < expires else None

    async def set_latest_job(self, job_id: str, ttl: float) -> None:
        """Record a job just accepted by the server.

        Args:
            job_id: The job's id.
            ttl: Seconds after which the record is forgotten.
        """
        self._latest_job = (job_id, anyio.current_time() + ttl)
