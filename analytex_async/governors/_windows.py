"""A sliding-window limit on requests, so the client never draws a 429 it could have avoided.

The server counts requests per key in a window (600 identify calls a minute, one delete every
2 seconds). ``RequestWindow`` lets a request start only while fewer than ``limit`` requests are in
flight or finished within the last ``period`` seconds. A request's slot is freed ``period``
seconds after its *response* arrived, not after it was sent: the server saw the request before
it answered, so counting from the answer keeps us inside any window the server can measure,
whatever the network latency. This is the strictest reading of "N per period": it also satisfies
fixed-window counters and token buckets of capacity N.

Waiters are served first come, first served.

**429s belong to the window.** A 429 means the server's window is full whatever ours says (another
process, a restart): ``pause(seconds)`` holds every request of the window back until the
``Retry-After``, then lets exactly one request through as a probe; the rest follow once the probe
is answered (and wait again if it drew another 429). So one 429 never draws a wave of them.
"""

from __future__ import annotations

import math
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


class PauseGate:
    """What a 429 does to a window: a pause until its ``Retry-After``, then one probe.

    Every request passes the gate before it takes a slot. After ``pause``, none passes until
    the pause is over; then exactly one (the probe) passes, and the rest wait until it is
    answered (``leave``): answered without a new pause, the gate opens; with one (another 429),
    the next pause holds everyone back again.

    Call ``pause`` before the answered request leaves the gate (or at least before the next
    checkpoint), so that no waiter slips through between the answer and the pause.
    """

    def __init__(self) -> None:
        self._until = -math.inf
        self._pauses = 0  # how many 429s paused it (a probe compares before and after)
        self._probe: object | None = None  # the probe's token while it is in flight
        self._probe_pauses = 0  # ``_pauses`` when the probe passed
        self._need_probe = False
        self._left = anyio.Event()

    def pause(self, seconds: float) -> None:
        """Hold every request back ``seconds`` from now, then let one probe through.

        Args:
            seconds: The pause, typically the 429's ``Retry-After`` (capped by the caller).
        """
        self._until = max(self._until, anyio.current_time() + max(seconds, 0.0))
        self._pauses += 1
        self._need_probe = True

    @property
    def pauses(self) -> int:
        """How many times it was paused so far."""
        return self._pauses

    async def enter(self, token: object) -> None:
        """Wait until a request may go: no pause, or its turn as the probe.

        Args:
            token: The request's token (given again to ``leave``).
        """
        while True:
            now = anyio.current_time()
            if now < self._until:
                await anyio.sleep(self._until - now + 1e-6)
            elif self._need_probe and self._probe is not None:
                await self._left.wait()  # the probe's answer decides
            else:
                if self._need_probe:
                    self._probe, self._probe_pauses = token, self._pauses
                return

    def leave(self, token: object) -> None:
        """A request that passed the gate was answered (or given up).

        Args:
            token: The token it entered with.
        """
        if token is self._probe:
            self._probe = None
            if self._pauses == self._probe_pauses:  # no 429 since it passed: all may follow
                self._need_probe = False
            self._left.set()
            self._left = anyio.Event()


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
        self.gate = PauseGate()

    def __repr__(self) -> str:
        return f"RequestWindow(limit={self.limit}, period={self.period})"

    def _expire(self, now: float) -> None:
        while self._finished and now - self._finished[0] >= self.period:
            self._finished.popleft()

    async def _acquire(self, token: object) -> None:
        async with self._turn:
            await self.gate.enter(token)
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

    def free_now(self) -> int:
        """Slots free this instant (a lower bound of ``reachable_within``, in O(1) amortized)."""
        self._expire(anyio.current_time())
        return max(self.limit - self._in_flight - len(self._finished), 0)

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

    def _release(self, token: object) -> None:
        self._in_flight -= 1
        self._finished.append(anyio.current_time())
        self.gate.leave(token)
        self._released.set()
        self._released = anyio.Event()

    def pause(self, seconds: float) -> None:
        """The server answered 429: hold every request back ``seconds``, then probe once.

        Args:
            seconds: How long nothing may start (the response's ``Retry-After``).
        """
        self.gate.pause(seconds)

    def answered_ages(self) -> list[float]:
        """For each request answered within the last period, the seconds since its answer.

        Requests in flight count as answered now. A client closing writes these to its outbox,
        so that the next one (``seed``) starts from what the server still counts.

        Returns:
            The ages, oldest first.
        """
        now = anyio.current_time()
        self._expire(now)
        return [now - finished for finished in self._finished] + [0.0] * self._in_flight

    def seed(self, ages: list[float]) -> None:
        """Count requests another client made: each answered ``age`` seconds ago.

        Args:
            ages: The seconds since each answer (those older than the period are ignored; a
                negative age is an answer taken as later than now, for clock margins).
        """
        now = anyio.current_time()
        kept = sorted(now - age for age in ages if -self.period < age < self.period)
        self._finished = deque(sorted([*self._finished, *kept]))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot for the duration of the block.

        Yields:
            Nothing; send the request inside the block.
        """
        token = object()
        try:
            await self._acquire(token)
        except BaseException:
            self.gate.leave(token)  # cancelled while waiting: a probe that never went
            raise
        try:
            yield
        finally:
            self._release(token)


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
