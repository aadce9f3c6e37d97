"""The request window shared through Redis: the real-time budgets of every worker.

The server limits identify and track calls per account (600 a minute each), whichever worker
sends them. :class:`RedisRequestWindow` keeps each limit as a sorted set in Redis, so every
worker's requests count against the same window, with the rules of the in-process
:class:`~analytex_async.governors.RequestWindow`: a request counts from its start until
``period`` seconds after its response, and waiters are served first come, first served, each
asleep in its own process until its turn (the ``_WINDOW_TAKE`` script in :mod:`._lua` says how).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from .._errors import ConfigurationError, GovernorUnavailableError
from ._lua import MICROS
from ._redis_base import WAKE_MARGIN, UseLocal, check_name, check_rate, require_asyncio
from ._windows import RequestWindow, requests_within

if TYPE_CHECKING:
    from ._redis import RedisGovernor

# How long a waiter may be late to claim its reserved request slot before the others treat it
# as gone (a crashed process), and how long a request may stay in flight before its slot is
# reclaimed. Both only matter when a process dies mid-wait or mid-request.
_CLAIM_GRACE = 30.0
_FLIGHT_LEASE = 120.0


class RedisRequestWindow:
    """At most ``limit`` requests in any ``period`` seconds, across every worker.

    The shared counterpart of the client's in-process request window, with the same
    ``slot()`` shape. A request counts from its start until ``period`` seconds after its
    response arrived, so no window the server measures can see more than ``limit``, whatever
    the latency. Waiters are served first come, first served, each asleep until its own turn.

    Make one with :meth:`RedisGovernor.request_window`.

    Args:
        governor: The governor whose Redis, namespace and fallback policy it uses.
        rule: The budget's name.
        limit: Requests allowed in any ``period`` (at least 1).
        period: The window's length in seconds.

    Raises:
        ConfigurationError: ``rule``, ``limit`` or ``period`` is malformed.

    Examples:
        <!-- example: redis -->
        ```python
        import os

        from analytex_async.governors import RedisGovernor

        redis_url, api_key = os.environ["REDIS_URL"], os.environ["ANALYTEX_API_KEY"]
        async with RedisGovernor(redis_url, api_key=api_key) as governor:
            identify = governor.request_window("identify", 600)
            async with identify.slot():
                ...  # send one identify request
        ```
    """

    def __init__(self, governor: RedisGovernor, rule: str, limit: int, period: float) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a positive integer, got {limit!r}")
        self.governor = governor
        self.rule = check_name("rule", rule)
        self.limit = limit
        self.period = check_rate("period", period)
        self._local = RequestWindow(limit, self.period)
        self.gate = self._local.gate  # a 429 pauses this process's requests, shared or local

    def __repr__(self) -> str:
        return f"RedisRequestWindow({self.rule!r}, limit={self.limit}, period={self.period:g})"

    def _keys(self) -> list[str]:
        base = self.governor._key(f"window:{self.rule}")
        return [base, f"{base}:pending", f"{base}:inflight"]

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot of the shared window for the duration of the block.

        Yields:
            Nothing; send the request inside the block.

        Raises:
            GovernorUnavailableError: Redis cannot be used and the governor's fallback is
                ``"error"``.
            ConfigurationError: Running under trio, or no API key is known.
        """
        require_asyncio("RedisRequestWindow")
        token = uuid.uuid4().hex
        keys = self._keys()
        try:
            await self.gate.enter(token)
            taken = await self._take(keys, token)
        except BaseException:
            self.gate.leave(token)
            raise
        if not taken:
            self.gate.leave(token)  # the local window passes its own gate
            async with self._local.slot():
                yield
            return
        try:
            yield
        finally:
            self.gate.leave(token)
            await self.governor._shielded(
                self.governor._scripts.window_finish,
                keys,
                [token, math.ceil(self.period * MICROS), ""],
            )

    def pause(self, seconds: float) -> None:
        """The server answered 429: hold this process's requests back, then probe once.

        Args:
            seconds: How long nothing may start (the response's ``Retry-After``).
        """
        self.gate.pause(seconds)

    async def reachable_within(self, seconds: float) -> int:
        """How many more requests could start within ``seconds`` from now, across every worker.

        The same estimate as :meth:`RequestWindow.reachable_within`, from what the shared
        window holds: every worker's requests in flight, finished within the period, or
        waiting for their turn.

        Args:
            seconds: The horizon.

        Returns:
            The number of requests (the local window's answer while the governor falls back).
        """
        governor = self.governor
        try:
            if not governor._shared():
                return self._local.reachable_within(seconds)
            now, *frees = await governor._run(
                governor._scripts.window_load,
                self._keys(),
                [math.ceil(self.period * MICROS), ""],
            )
        except (UseLocal, GovernorUnavailableError):
            # An estimate: with Redis away, what this process's own window holds is the best one.
            return self._local.reachable_within(seconds)
        waits = [(int(free) - int(now)) / MICROS for free in frees]
        return requests_within(seconds, self.limit, self.period, waits)

    async def _take(self, keys: list[str], token: str) -> bool:
        """Wait for a shared slot; False when the governor falls back to the local window."""
        governor = self.governor
        if not governor._shared():
            return False
        args = [
            token,
            self.limit,
            math.ceil(self.period * MICROS),
            int(_CLAIM_GRACE * MICROS),
            int(_FLIGHT_LEASE * MICROS),
            "",
        ]
        scripts = governor._scripts
        try:
            while True:
                now, start, ready = await governor._run(scripts.window_take, keys, args)
                if ready:
                    return True
                await anyio.sleep((start - now) / MICROS + WAKE_MARGIN)
        except UseLocal:
            return False
        except BaseException:
            # Nothing was sent: the slot, pending or just granted, is given back.
            await governor._shielded(scripts.window_cancel, keys, [token])
            raise
