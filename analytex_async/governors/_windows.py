"""A sliding-window limit on requests, so the client never draws a 429 it could have avoided.

The server counts requests per key in a window (600 identify calls a minute, one delete every
2 seconds). ``RequestWindow`` lets a request start only while fewer than ``limit`` requests are in
flight or finished within the last ``period`` seconds. A request's slot is freed ``period``
seconds after its *response* arrived, not after it was sent: the server saw the request before
it answered, so counting from the answer keeps us inside any window the server can measure,
whatever the network latency. This is the strictest reading of "N per period": it also satisfies
fixed-window counters and token buckets of capacity N.

Waiters are served first come, first served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from .._constants import DELETE_INTERVAL
from .._types import RequestSlots
from ._local import SharedRequestWindows

__all__ = ["ClientWindows", "RequestSlots", "RequestWindow"]


def requests_within(seconds: float, limit: int, period: float, frees: list[float]) -> int:
    """How many requests a window can start within ``seconds``, given when its used slots free.

    Args:
        seconds: The horizon.
        limit: The window's slots.
        period: The window's length in seconds.
        frees: For each slot in use (or promised to a waiter), the seconds from now until it
            frees; the other slots are free now.

    Returns:
        The number of requests: each slot serves once when it frees, and again each ``period``.
    """
    starts = [0.0] * max(limit - len(frees), 0) + frees
    return sum(int((seconds - start) // period) + 1 for start in starts if start <= seconds)


class RequestWindow:
    """At most ``limit`` requests in any ``period`` seconds.

    Args:
        limit: Requests allowed per window (at least 1).
        period: The window's length in seconds.
    """

    def __init__(self, limit: int, period: float) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self.limit = limit
        self.period = period
        self._finished: deque[float] = deque()
        self._in_flight = 0
        self._turn = anyio.Lock()  # FIFO among waiters
        self._released = anyio.Event()

    def __repr__(self) -> str:
        return f"RequestWindow(limit={self.limit}, period={self.period})"

    def _expire(self, now: float) -> None:
        while self._finished and now - self._finished[0] >= self.period:
            self._finished.popleft()

    async def _acquire(self) -> None:
        async with self._turn:
            while True:
                now = anyio.current_time()
                self._expire(now)
                if self._in_flight + len(self._finished) < self.limit:
                    self._in_flight += 1
                    return
                if self._finished:
                    # The extra microsecond makes sure the slot has expired when we wake:
                    # without it, float rounding can leave us a hair short, again and again.
                    await anyio.sleep(self._finished[0] + self.period - now + 1e-6)
                else:
                    # Every slot is held by a request still in flight: wait for an answer.
                    await self._released.wait()

    def reachable_within(self, seconds: float) -> int:
        """How many more requests could start within ``seconds`` from now.

        Free slots start now; a slot in use frees ``period`` after its request's answer (one in
        flight is counted as answered now, the earliest it can be); every slot serves again
        each ``period`` after that. Background delivery uses it to tell which identifies would
        wait longer than its ``max_delay``.

        Args:
            seconds: The horizon.

        Returns:
            The number of requests.
        """
        now = anyio.current_time()
        self._expire(now)
        frees = [finished + self.period - now for finished in self._finished]
        frees += [self.period] * self._in_flight
        return requests_within(seconds, self.limit, self.period, frees)

    def _release(self) -> None:
        self._in_flight -= 1
        self._finished.append(anyio.current_time())
        self._released.set()
        self._released = anyio.Event()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot for the duration of the block.

        Yields:
            Nothing; send the request inside the block.
        """
        await self._acquire()
        try:
            yield
        finally:
            self._release()


class ClientWindows:
    """A client's real-time budgets: identify (users and companies), track, and delete.

    In process by default; shared with every process using the governor when it shares
    request windows (``RedisGovernor``).

    Args:
        requests_per_minute: The identify and the track budget each; ``None`` turns them off.
        governor: The client's governor, asked for shared windows when it offers them.

    Attributes:
        identify: The identify window, or ``None`` when off.
        track: The track window, or ``None`` when off.
        delete: One delete every 2 seconds, as the API requires.
    """

    def __init__(self, requests_per_minute: int | None, governor: object) -> None:
        shared = governor if isinstance(governor, SharedRequestWindows) else None

        def window(rule: str, limit: int, period: float) -> RequestSlots:
            if shared is not None:
                return shared.request_window(rule, limit, period)
            return RequestWindow(limit, period)

        self.identify: RequestSlots | None = None
        self.track: RequestSlots | None = None
        if requests_per_minute is not None:
            self.identify = window("identify", requests_per_minute, 60.0)
            self.track = window("track", requests_per_minute, 60.0)
        self.delete = window("delete", 1, DELETE_INTERVAL)

    def __repr__(self) -> str:
        return f"ClientWindows(identify={self.identify!r}, track={self.track!r})"
