"""Pacing: give the event loop a turn before CPU-bound work on it turns into a stall.

Work that runs on the loop without awaiting anything (iterating a caller's list, checking and
batching records) holds every other task back until it yields. A ``Pacer`` counts that work and
yields with ``anyio.lowlevel.checkpoint()`` once a slice of it is used up, by item count, by
elapsed time, or both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import anyio.lowlevel


class Pacer:
    """Yields to the event loop every ``max_items`` items or ``max_seconds`` of work.

    The clock measures CPU time spent on the loop, not a wait, so it is the process's
    performance counter rather than the event loop's (possibly mocked) clock. Tests inject
    their own ``clock`` to drive the time rule without working for real.

    The defaults (1,000 items or 2 ms) keep the loop's worst pause well under the 10 ms a
    responsive service can afford, while the checkpoints themselves stay too rare to cost
    anything measurable.

    Args:
        max_items: Checkpoint after this many ticks, or ``None`` for no item limit.
        max_seconds: Checkpoint once this long has passed since the slice began.
        clock: Where the time comes from (seconds, monotonic).

    Example:
        ```python
        pacer = Pacer()
        total = 0
        for item in range(10_000):
            total += item  # CPU work on the event loop
            await pacer.tick()  # a turn for the other tasks every 1,000 items or 2 ms
        ```
    """

    __slots__ = ("_clock", "_deadline", "_items", "_max_items", "_max_seconds")

    def __init__(
        self,
        *,
        max_items: int | None = 1_000,
        max_seconds: float = 0.002,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        # With no item limit the count never reaches this one, and tick() keeps a single
        # int-to-int comparison on its hot path.
        self._max_items = max_items if max_items is not None else sys.maxsize
        self._max_seconds = max_seconds
        self._clock = clock
        self._items = 0
        self._deadline = clock() + max_seconds

    def reset(self) -> None:
        """Begin a new slice: call it after anything that already gave the loop a turn."""
        self._items = 0
        self._deadline = self._clock() + self._max_seconds

    def due(self) -> bool:
        """Count one item of work; whether the slice is used up (then call ``checkpoint``).

        The synchronous half of ``tick``, for the hottest loops: no coroutine is made for the
        items that do not need one.
        """
        self._items += 1
        return self._items >= self._max_items or self._clock() >= self._deadline

    async def checkpoint(self) -> None:
        """Give the event loop a turn, and begin a new slice."""
        await anyio.lowlevel.checkpoint()
        self.reset()

    async def tick(self) -> None:
        """Count one item of work; checkpoint (and begin a new slice) when the slice is used up."""
        if self.due():
            await self.checkpoint()
