"""The Redis governor, against a real ``redis-server`` these tests start and stop themselves.

Three layers:

* the Lua scripts' arithmetic, driven with explicit "now" values (no clock involved);
* the governor on the server's real clock, at rates fast enough that the waits are
  milliseconds (marked ``slow``: a real clock cannot be mocked inside Redis), or on a virtual
  clock that the governor reads instead (its scripts take an explicit "now"), where what is
  checked must not depend on the machine's load (``VirtualTime``);
* several processes importing through one shared budget into one emulator served over a
  loopback socket, judged on the emulator's own (server-side) request times.

What the request window shares with the in-process one (at most ``limit`` a period, FIFO,
cancellation) is checked on both in ``test_request_slots_contract.py``.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio

from analytex_async import AnalytexError, ConfigurationError, ImportAbortedError
from analytex_async.emulator import Emulator
from analytex_async.governors import (
    GovernorUnavailableError,
    RedisGovernor,
    RedisRequestWindow,
    api_key_hash,
)
from analytex_async.governors import _redis as redis_governor_module
from analytex_async.governors._lua import row_cost
from analytex_async.testing import EmulatedAnalytex

from ._net import free_port, wait_until
from .redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio

KEY = "sk_test_REDIS_9f3b2c"
SECOND = 1_000_000  # the scripts count in microseconds
T0 = 1_700_000_000 * SECOND  # an explicit "now" for the scripts, any value works


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client; the trio refusal is tested on its own


@pytest.fixture
def name() -> str:
    """A budget name of its own for each test, so tests never share state."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def governor(redis_server: RedisServer, name: str) -> AsyncIterator[RedisGovernor]:
    async with RedisGovernor(redis_server.url, name=name, api_key=KEY) as gov:
        yield gov


# -- the scripts' arithmetic, with explicit times ----------------------------------------------


class Rows:
    """Drives the row-schedule scripts of one governor with explicit times."""

    def __init__(self, governor: RedisGovernor) -> None:
        self.scripts = governor._scripts
        self.keys = [governor._key("rows")]

    async def reserve(self, cost: int, now: int, rate: str = "1200.0") -> tuple[int, int]:
        got_now, start, finish, _ = await self.scripts.rows_reserve(
            keys=self.keys, args=[cost, rate, now]
        )
        assert got_now == now
        return start, finish

    async def previous_rate(self, now: int, rate: str) -> bytes:
        return (await self.scripts.rows_reserve(keys=self.keys, args=[1, rate, now]))[3]

    async def confirm(self, start: int, cost: int, now: int) -> tuple[int, int]:
        _, new_start, finish = await self.scripts.rows_confirm(
            keys=self.keys, args=[start, cost, now]
        )
        return new_start, finish

    async def release(self, start: int, finish: int) -> bool:
        return bool(await self.scripts.rows_release(keys=self.keys, args=[start, finish]))

    async def push_back(self, seconds: int, now: int) -> int:
        return (await self.scripts.rows_push_back(keys=self.keys, args=[seconds, now]))[1]


@pytest.fixture
def rows(governor: RedisGovernor) -> Rows:
    return Rows(governor)


async def test_each_start_follows_the_rows_reserved_before_it(rows: Rows) -> None:
    assert await rows.reserve(100, T0) == (T0, T0 + 100)
    assert await rows.reserve(5000, T0) == (T0 + 100, T0 + 5100)
    # Arrival time does not matter while the schedule is ahead of the clock: first come,
    # first served.
    assert await rows.reserve(1, T0 + 50) == (T0 + 5100, T0 + 5101)


async def test_idle_time_is_not_banked(rows: Rows) -> None:
    await rows.reserve(1000, T0)
    # Long after the schedule was paid for, a batch starts at once and is spaced from its own
    # start, never from the old schedule.
    assert await rows.reserve(1000, T0 + 3600 * SECOND) == (
        T0 + 3600 * SECOND,
        T0 + 3600 * SECOND + 1000,
    )


def test_a_batch_costs_its_rows_at_the_rate_rounded_up() -> None:
    assert row_cost(1200, 1200) == 60 * SECOND
    assert row_cost(1, 60_000) == 1000
    assert row_cost(1, 7) == math.ceil(60 * SECOND / 7) == 8_571_429  # never a hair fast


async def test_a_waiter_keeps_its_reservation_when_nothing_happened(rows: Rows) -> None:
    await rows.reserve(SECOND, T0)
    start, finish = await rows.reserve(SECOND, T0)
    assert await rows.confirm(start, SECOND, now=start) == (start, finish)


async def test_a_push_back_sends_waiters_behind_the_pause_in_their_order(rows: Rows) -> None:
    await rows.reserve(SECOND, T0)  # started at T0
    a, _ = await rows.reserve(SECOND, T0)  # asleep until T0 + 1 s
    b, _ = await rows.reserve(SECOND, T0)  # asleep until T0 + 2 s
    pause = await rows.push_back(10 * SECOND, now=T0 + SECOND // 2)
    assert pause == T0 + 10 * SECOND + SECOND // 2
    # Each waiter wakes at its start, finds the pause, and reserves again behind it, in the
    # order they wake (their original order). Their first slots are not reused: slower only.
    assert await rows.confirm(a, SECOND, now=a) == (pause, pause + SECOND)
    assert await rows.confirm(b, SECOND, now=b) == (pause + SECOND, pause + 2 * SECOND)


async def test_a_reservation_made_after_a_push_back_is_left_alone(rows: Rows) -> None:
    pause = await rows.push_back(5 * SECOND, now=T0)
    start, finish = await rows.reserve(SECOND, T0 + 1)
    assert (start, finish) == (pause, pause + SECOND)
    assert await rows.confirm(start, SECOND, now=start) == (start, finish)


async def test_a_push_back_never_brings_the_schedule_earlier(rows: Rows) -> None:
    await rows.reserve(60 * SECOND, T0)
    await rows.push_back(1 * SECOND, now=T0)
    assert await rows.reserve(1, T0 + 2 * SECOND) == (T0 + 60 * SECOND, T0 + 60 * SECOND + 1)


async def test_a_cancelled_reservation_is_given_back_only_if_it_is_the_latest(
    rows: Rows,
) -> None:
    await rows.reserve(SECOND, T0)
    a_start, a_finish = await rows.reserve(6 * SECOND, T0)
    assert await rows.release(a_start, a_finish)  # nobody behind it: given back
    assert await rows.reserve(SECOND, T0) == (a_start, a_start + SECOND)
    b_start, b_finish = await rows.reserve(6 * SECOND, T0)
    await rows.reserve(SECOND, T0)  # someone reserved behind b and sleeps on that time
    assert not await rows.release(b_start, b_finish)
    assert await rows.reserve(1, T0) == (b_finish + SECOND, b_finish + SECOND + 1)


async def test_the_schedule_expires_a_minute_after_it_stops_mattering(
    rows: Rows, governor: RedisGovernor, raw: redis.asyncio.Redis
) -> None:
    await rows.reserve(30 * SECOND, T0)
    ttl = await raw.pttl(governor._key("rows"))
    assert 89_000 < ttl <= 90_000  # 30 s of schedule + 60 s


async def test_the_schedule_reports_the_rate_the_last_worker_used(rows: Rows) -> None:
    assert await rows.previous_rate(T0, "1200.0") == b""
    assert await rows.previous_rate(T0, "600.0") == b"1200.0"


class Window:
    """Drives the request-window scripts of one window with explicit times."""

    def __init__(self, window: RedisRequestWindow, period: int) -> None:
        self.scripts = window.governor._scripts
        self.keys = window._keys()
        self.limit = window.limit
        self.period = period

    async def take(
        self, token: str, now: int, grace: int = 30 * SECOND, lease: int = 120 * SECOND
    ) -> tuple[int, bool]:
        got_now, start, ready = await self.scripts.window_take(
            keys=self.keys, args=[token, self.limit, self.period, grace, lease, now]
        )
        assert got_now == now
        return start, bool(ready)

    async def finish(self, token: str, now: int) -> None:
        await self.scripts.window_finish(keys=self.keys, args=[token, self.period, now])

    async def cancel(self, token: str) -> None:
        await self.scripts.window_cancel(keys=self.keys, args=[token])


@pytest.fixture
def window(governor: RedisGovernor) -> Window:
    return Window(governor.request_window("identify", 3, 10.0), 10 * SECOND)


async def test_the_window_lets_requests_go_at_once_while_there_is_room(window: Window) -> None:
    for n in range(3):
        assert await window.take(f"r{n}", T0 + n) == (T0 + n, True)
    start, ready = await window.take("r3", T0 + 3)
    assert not ready
    assert start == T0 + 10 * SECOND  # the first request's start + period (it is in flight)


async def test_waiters_queue_first_come_first_served_each_until_its_own_turn(
    window: Window,
) -> None:
    for n in range(3):
        await window.take(f"r{n}", T0 + n * SECOND)
        await window.finish(f"r{n}", T0 + n * SECOND)
    starts = [(await window.take(f"w{n}", T0 + 3 * SECOND))[0] for n in range(5)]
    # One period after each of the three, then one period after the first two waiters.
    assert starts == [
        T0 + 10 * SECOND,
        T0 + 11 * SECOND,
        T0 + 12 * SECOND,
        T0 + 20 * SECOND,
        T0 + 21 * SECOND,
    ]
    assert await window.take("w0", T0 + 10 * SECOND) == (T0 + 10 * SECOND, True)
    assert await window.take("w1", T0 + 11 * SECOND) == (T0 + 11 * SECOND, True)


async def test_a_request_counts_until_a_period_after_its_response(window: Window) -> None:
    for n in range(3):
        await window.take(f"r{n}", T0)
    start, _ = await window.take("w", T0 + 1)
    assert start == T0 + 10 * SECOND
    await window.finish("r0", T0 + 4 * SECOND)  # a slow response
    await window.finish("r1", T0 + 1 * SECOND)
    await window.finish("r2", T0 + 2 * SECOND)
    # Due at T0 + 10 s, the waiter sees that the request ahead only stopped counting at
    # T0 + 11 s (r1's response + period), and waits until then.
    assert await window.take("w", T0 + 10 * SECOND) == (T0 + 11 * SECOND, False)
    assert await window.take("w", T0 + 11 * SECOND) == (T0 + 11 * SECOND, True)


async def test_requests_in_flight_keep_counting_whatever_their_age(window: Window) -> None:
    for n in range(3):
        await window.take(f"r{n}", T0)
    await window.take("w", T0)
    # Nobody answered yet: whenever they do, their slots stay taken a period longer.
    assert await window.take("w", T0 + 10 * SECOND) == (T0 + 20 * SECOND, False)


async def test_waiters_behind_do_not_count_and_waiters_ahead_do(window: Window) -> None:
    for n in range(3):
        await window.take(f"r{n}", T0)
        await window.finish(f"r{n}", T0)
    a, _ = await window.take("a", T0)
    b, _ = await window.take("b", T0)
    assert (a, b) == (T0 + 10 * SECOND, T0 + 10 * SECOND)
    # b wakes first: a is ahead of it (same time, reserved first) and, two slots being free,
    # both fit.
    assert await window.take("b", T0 + 10 * SECOND) == (T0 + 10 * SECOND, True)
    assert await window.take("a", T0 + 10 * SECOND) == (T0 + 10 * SECOND, True)


async def test_a_cancelled_waiter_gives_its_place_back(window: Window) -> None:
    for n in range(3):
        await window.take(f"r{n}", T0)
        await window.finish(f"r{n}", T0 + n * SECOND)
    assert await window.take("gone", T0 + 3 * SECOND) == (T0 + 10 * SECOND, False)
    await window.cancel("gone")
    assert await window.take("next", T0 + 3 * SECOND) == (T0 + 10 * SECOND, False)
    assert await window.take("last", T0 + 3 * SECOND) == (T0 + 11 * SECOND, False)


async def test_holders_that_went_away_are_forgotten(window: Window) -> None:
    await window.take("crashed-in-flight", T0, lease=5 * SECOND)
    await window.take("r1", T0)
    await window.finish("r1", T0)
    await window.take("r2", T0)
    await window.finish("r2", T0)
    assert await window.take("never-came", T0) == (T0 + 10 * SECOND, False)
    # The waiter's grace ran out at T0 + 40 s and the request's lease at T0 + 5 s: both are
    # forgotten, and the finished ones aged out too.
    assert await window.take("fresh", T0 + 41 * SECOND) == (T0 + 41 * SECOND, True)
    assert await window.take("fresh2", T0 + 41 * SECOND) == (T0 + 41 * SECOND, True)
    assert await window.take("fresh3", T0 + 41 * SECOND) == (T0 + 41 * SECOND, True)


# -- the governor on the server's clock ---------------------------------------------------------


async def test_the_window_estimates_its_reach_from_every_workers_requests(
    redis_server: RedisServer, name: str
) -> None:
    """Background delivery routes identifies to bulk by this estimate (``max_delay``): it must
    see the requests of the other workers, not only its own process's."""
    other = RedisGovernor(redis_server.url, name=name, api_key=KEY)
    mine = RedisGovernor(redis_server.url, name=name, api_key=KEY)
    theirs = other.request_window("identify", 3, 10.0)
    ours = mine.request_window("identify", 3, 10.0)
    answer, both_hold, holding = anyio.Event(), anyio.Event(), []
    try:
        assert await ours.reachable_within(5) == 3  # empty: every slot starts now
        async with anyio.create_task_group() as tg:

            async def hold() -> None:
                async with theirs.slot():
                    holding.append(1)
                    if len(holding) == 2:
                        both_hold.set()
                    await answer.wait()

            for _ in range(2):
                tg.start_soon(hold)
            await both_hold.wait()
            # Two of the three slots are in flight in the other worker: they free a period
            # after their answers at the earliest.
            assert await ours.reachable_within(5) == 1
            assert await ours.reachable_within(10.5) == 4  # the free one twice, those once
            answer.set()
        assert await ours.reachable_within(5) == 1  # answered: they count a period longer
    finally:
        await other.aclose()
        await mine.aclose()


class VirtualTime:
    """Seconds that pass only when every worker sleeps: a mock clock for asyncio governors.

    Redis' TIME cannot be mocked, but every script takes an explicit "now": the governors get
    this clock's, their sleeps are this clock's, and time jumps to the earliest sleeper's
    deadline once every worker is asleep or done (a worker waiting for Redis holds time
    still). What a run does is then fixed, whatever the machine's load: no real-time bound.
    """

    def __init__(self, workers: int) -> None:
        self.now = 0.0
        self._workers = workers
        self._done = 0
        self._sleepers: list[tuple[float, int, Any]] = []
        self._count = 0

    def current_time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        import asyncio  # noqa: PLC0415 - a test clock for redis-py's asyncio client

        woken = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), self._count, woken))
        self._advance()
        await woken

    def finished(self) -> None:
        self._done += 1
        self._advance()

    def _advance(self) -> None:
        if self._sleepers and len(self._sleepers) + self._done == self._workers:
            deadline, _, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            woken.set_result(None)

    def governed(self, governor: RedisGovernor, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make ``governor`` read this clock: its scripts' "now" and its own sleeps."""
        run = governor._run

        async def at_virtual_now(script: Any, keys: Any, args: Any) -> Any:
            if args and args[-1] == "":  # the script would read Redis' TIME
                args = [*args[:-1], T0 + round(self.now * SECOND)]
            return await run(script, keys, args)

        monkeypatch.setattr(governor, "_run", at_virtual_now)


class AnyioOnVirtualTime:
    """anyio as the governor module sees it, with ``sleep`` and ``current_time`` virtual."""

    def __init__(self, clock: VirtualTime) -> None:
        self.sleep = clock.sleep
        self.current_time = clock.current_time

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)


async def test_workers_with_their_own_connections_share_one_budget(
    redis_server: RedisServer, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60,000 rows a minute: 100 rows hold the next batch back 100 ms (of virtual time).
    governors = [
        RedisGovernor(redis_server.url, rows_per_minute=60_000, name=name, api_key=KEY)
        for _ in range(3)
    ]
    clock = VirtualTime(workers=len(governors))
    monkeypatch.setattr(redis_governor_module, "anyio", AnyioOnVirtualTime(clock))
    for gov in governors:
        clock.governed(gov, monkeypatch)
    starts: list[tuple[int, float]] = []

    async def worker(n: int, gov: RedisGovernor) -> None:
        try:
            for _ in range(3):
                await gov.acquire(100)
                starts.append((n, clock.now))
        finally:
            clock.finished()

    try:
        async with anyio.create_task_group() as tg:
            for n, gov in enumerate(governors):
                tg.start_soon(worker, n, gov)
    finally:
        for gov in governors:
            await gov.aclose()
    times = [t for _, t in starts]
    # One schedule for the three: 9 batches 100 ms apart, none early, no gap (each worker
    # reserves its next start while the others' reservations still fill the schedule).
    assert times == pytest.approx([0.1 * k for k in range(9)], abs=1e-3)
    # Nobody starves: each worker's first reservation is made before any time passes, so it
    # is among the first four starts, whatever order Redis received them in.
    assert {n for n, _ in starts[:4]} == {0, 1, 2}
    assert sorted(n for n, _ in starts) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.slow
async def test_acquire_returns_the_seconds_waited(redis_server: RedisServer, name: str) -> None:
    async with RedisGovernor(
        redis_server.url, rows_per_minute=60_000, name=name, api_key=KEY
    ) as gov:
        assert await gov.acquire(200) < 0.05
        waited = await gov.acquire(1)
        assert 0.19 < waited < 0.3


@pytest.mark.slow
async def test_a_cancelled_waiter_does_not_hold_up_the_next(
    redis_server: RedisServer, name: str
) -> None:
    async with RedisGovernor(
        redis_server.url, rows_per_minute=60_000, name=name, api_key=KEY
    ) as gov:
        await gov.acquire(100)  # the next batch may start 100 ms from now
        with anyio.move_on_after(0.05) as scope:
            await gov.acquire(60_000)  # would hold everyone back a minute
        assert scope.cancelled_caught
        assert await gov.acquire(1) < 0.1


@pytest.mark.slow
async def test_a_push_back_in_one_worker_holds_back_a_waiter_in_another(
    redis_server: RedisServer, name: str
) -> None:
    async with (
        RedisGovernor(redis_server.url, rows_per_minute=60_000, name=name, api_key=KEY) as a,
        RedisGovernor(redis_server.url, rows_per_minute=60_000, name=name, api_key=KEY) as b,
    ):
        await a.acquire(100)
        waited: list[float] = []

        async def wait_in_b() -> None:
            waited.append(await b.acquire(10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_in_b)  # asleep until ~100 ms
            await anyio.sleep(0.02)
            await a.push_back(0.5)  # a 429 seen by worker a
        assert waited[0] >= 0.5


@pytest.mark.slow
async def test_the_latest_job_is_shared_and_expires(redis_server: RedisServer, name: str) -> None:
    async with (
        RedisGovernor(redis_server.url, name=name, api_key=KEY) as a,
        RedisGovernor(redis_server.url, name=name, api_key=KEY) as b,
    ):
        assert await b.latest_job() is None
        await a.set_latest_job("bulk:jobs:1", ttl=0.3)
        assert await b.latest_job() == "bulk:jobs:1"
        await anyio.sleep(0.35)
        assert await b.latest_job() is None


@pytest.mark.slow
async def test_budgets_are_namespaced_by_name_and_key_hash_never_the_key(
    redis_server: RedisServer, name: str, raw: redis.asyncio.Redis
) -> None:
    rate = 60_000
    async with (
        RedisGovernor(redis_server.url, rows_per_minute=rate, name=name, api_key=KEY) as a,
        RedisGovernor(redis_server.url, rows_per_minute=rate, name=name, api_key="other") as b,
        RedisGovernor(redis_server.url, rows_per_minute=rate, name=f"{name}x", api_key=KEY) as c,
    ):
        await a.acquire(60_000)  # a minute's worth
        assert await b.acquire(1) < 0.05  # another account
        assert await c.acquire(1) < 0.05  # another budget of the same account
        await a.set_latest_job("job-1", ttl=60)
    keys = [k.decode() async for k in raw.scan_iter(match=f"analytex:{{{name}*")]
    assert keys
    assert all(KEY not in k for k in keys)
    assert f"analytex:{{{name}:{api_key_hash(KEY)}}}:rows" in keys
    assert f"analytex:{{{name}:{api_key_hash(KEY)}}}:job" in keys


def test_the_key_hash_is_stable_and_reveals_nothing() -> None:
    digest = api_key_hash(KEY)
    assert digest == api_key_hash(KEY)
    assert len(digest) == 32
    assert int(digest, 16) >= 0
    assert KEY not in digest
    assert digest != api_key_hash(KEY + "x")


@pytest.mark.slow
async def test_a_governor_needs_to_know_its_api_key(redis_server: RedisServer) -> None:
    async with RedisGovernor(redis_server.url) as gov:
        with pytest.raises(ConfigurationError, match="does not know the API key"):
            await gov.acquire(1)
        gov.bind_key_hash(api_key_hash(KEY))
        gov.bind_key_hash(api_key_hash(KEY))  # again, by a second client: harmless
        with pytest.raises(ConfigurationError, match="another API key"):
            gov.bind_key_hash(api_key_hash("someone else"))
        assert gov.key_hash == api_key_hash(KEY)
        assert await gov.acquire(1) < 0.05


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rows_per_minute": 0}, "rows_per_minute"),
        ({"rows_per_minute": float("nan")}, "rows_per_minute"),
        ({"name": "a b"}, "name"),
        ({"name": "{x}"}, "name"),
        ({"fallback": "ignore"}, "fallback"),
        ({"api_key": KEY, "key_hash": "abc"}, "not both"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    options: dict[str, Any], message: str, redis_server: RedisServer
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisGovernor(redis_server.url, **options)


def test_the_repr_never_shows_the_redis_password() -> None:
    gov = RedisGovernor("redis://user:hunter2@127.0.0.1:1/0", api_key=KEY)
    assert "hunter2" not in repr(gov)
    assert "user:***@127.0.0.1:1" in repr(gov)


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:port/0", "redis://:hunter2@h/0?db=x"])
def test_a_url_redis_py_refuses_is_a_configuration_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as caught:
        RedisGovernor(url, api_key=KEY)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_it_says_it_needs_asyncio(redis_server: RedisServer) -> None:
    gov = RedisGovernor(redis_server.url, api_key=KEY)
    with pytest.raises(ConfigurationError, match="needs the asyncio event loop"):
        await gov.acquire(1)
    with pytest.raises(ConfigurationError, match="needs the asyncio event loop"):
        async with gov.request_window("identify", 600).slot():
            pass


async def test_workers_that_disagree_on_the_rate_are_warned(
    redis_server: RedisServer, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        RedisGovernor(redis_server.url, rows_per_minute=60_000, name=name, api_key=KEY) as a,
        RedisGovernor(redis_server.url, rows_per_minute=120_000, name=name, api_key=KEY) as b,
    ):
        await a.acquire(1)
        with caplog.at_level(logging.WARNING, logger="analytex_async"):
            await b.acquire(1)
    assert "disagree on rows_per_minute" in caplog.text


# -- Redis away ---------------------------------------------------------------------------------


async def test_an_unreachable_redis_is_a_clear_error_by_default() -> None:
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    async with RedisGovernor(url, api_key=KEY, timeout=1) as gov:
        with pytest.raises(GovernorUnavailableError) as caught:
            await gov.acquire(1)
        with pytest.raises(GovernorUnavailableError):
            async with gov.request_window("identify", 10).slot():
                pass
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message
    assert "hunter2" not in message
    assert "fallback='local'" in message
    # An outage, not a usage error (the CLI exits 1 on it, not 2).
    assert not isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, AnalytexError)


@pytest.mark.slow
async def test_with_the_local_fallback_it_warns_keeps_the_rate_and_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    port = free_port()
    gov = RedisGovernor(
        f"redis://127.0.0.1:{port}/0",
        rows_per_minute=60_000,
        name=name,
        api_key=KEY,
        fallback="local",
        retry_interval=0.2,
        timeout=1,
    )
    async with gov:
        with caplog.at_level(logging.WARNING, logger="analytex_async"):
            await gov.acquire(100)  # Redis refuses: the first batch starts on the local budget
            assert gov.using_fallback
            assert await gov.acquire(100) == pytest.approx(0.1, abs=0.03)  # still paced
            async with gov.request_window("identify", 10).slot():
                pass
            assert caplog.text.count("cannot be used") == 1  # one warning, not one per call
            with running_redis(tmp_path, port):
                await anyio.sleep(0.2)
                await gov.acquire(100)
                assert not gov.using_fallback
                assert "is back" in caplog.text
                # The shared schedule starts from the rows this process sent on its own.
                assert await gov.acquire(1) == pytest.approx(0.1, abs=0.03)


# -- through the client: several imports, one account, one job at a time ----------------------


@pytest.mark.slow
async def test_imports_on_two_governors_share_the_job_slot_and_lose_nothing(
    redis_server: RedisServer, name: str
) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    users = [[{"user_id": f"{side}-{n}"} for n in range(300)] for side in ("a", "b")]
    async with (
        RedisGovernor(redis_server.url, rows_per_minute=120_000, name=name, api_key=KEY) as ga,
        RedisGovernor(redis_server.url, rows_per_minute=120_000, name=name, api_key=KEY) as gb,
        EmulatedAnalytex(emulator, api_key=KEY, governor=ga, rows_per_minute=120_000) as a,
        EmulatedAnalytex(emulator, api_key=KEY, governor=gb, rows_per_minute=120_000) as b,
    ):
        results: list[Any] = []

        async def run(client: Any, records: list[dict[str, str]]) -> None:
            results.append(await client.import_users(records, batch_size=50))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, a.client, users[0])
            tg.start_soon(run, b.client, users[1])
    assert all(r.ok and r.rows_sent == 300 for r in results)
    assert len(emulator.users) == 600
    conflicts = [r for r in emulator.requests if r.status == 409]
    assert len(conflicts) <= 2  # the job slot keeps them rare; each one was resent


async def test_an_import_stops_cleanly_when_redis_is_away() -> None:
    async with (
        RedisGovernor(f"redis://127.0.0.1:{free_port()}/0", api_key=KEY, timeout=1) as gov,
        EmulatedAnalytex(api_key=KEY, governor=gov) as analytex,
    ):
        with pytest.raises(ImportAbortedError) as caught:
            await analytex.client.import_users([{"user_id": "u1"}])
    assert isinstance(caught.value.__cause__, GovernorUnavailableError)
    assert caught.value.result.rows_sent == 0


# -- several processes, one budget, one server -----------------------------------------------

EMULATOR_PROCESS = """
import json, sys
from analytex_async.emulator import Emulator, run

port, rows_per_minute, log_path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
emulator = Emulator(rows_per_minute=rows_per_minute, realtime_requests_per_minute=None)
try:
    run(port=port, emulator=emulator, log_level="warning")
finally:
    # Stopped by SIGINT: hand the server-side request log to the test.
    with open(log_path, "w") as log:
        json.dump(
            [
                {"path": r.path, "time": r.time, "status": r.status, "records": r.records}
                for r in emulator.requests
            ],
            log,
        )
"""

WORKER_PROCESS = """
import asyncio, json, sys, time
from analytex_async import AsyncAnalytex
from analytex_async.governors import RedisGovernor

redis_url, base_url, key, name, worker = sys.argv[1:6]
rate, start_at = float(sys.argv[6]), float(sys.argv[9])
batch, batches = int(sys.argv[7]), int(sys.argv[8])

async def main():
    records = [{"user_id": f"w{worker}-{n}"} for n in range(batch * batches)]
    governor = RedisGovernor(redis_url, rows_per_minute=rate, name=name, api_key=key)
    async with governor, AsyncAnalytex(
        api_key=key, base_url=base_url, rows_per_minute=rate, governor=governor
    ) as client:
        await asyncio.sleep(max(start_at - time.time(), 0))  # every worker starts together
        result = await client.import_users(records, batch_size=batch)
    print(json.dumps({"rows_sent": result.rows_sent, "ok": result.ok}))

asyncio.run(main())
"""


def serves_http(base_url: str) -> bool:
    try:
        httpx.get(f"{base_url}/v1/background_jobs", headers={"Authorization": "Token x"})
    except httpx.TransportError:
        return False
    return True


def _max_ahead(submits: list[tuple[float, int]], seconds_per_row: float) -> float:
    """The most any stretch of batch starts ran ahead of the rate, in seconds.

    For batches i < j, the rows of batches i..j-1 need ``rows * seconds_per_row`` seconds; the
    server saw ``t_j - t_i``. Positive means the rate was exceeded over that stretch.
    """
    worst = -math.inf
    for i in range(len(submits)):
        rows = 0
        for j in range(i + 1, len(submits)):
            rows += submits[j - 1][1]
            worst = max(worst, rows * seconds_per_row - (submits[j][0] - submits[i][0]))
    return worst


@pytest.mark.slow
def test_four_processes_share_one_budget_on_one_server(
    redis_server: RedisServer, tmp_path: Path, name: str
) -> None:
    """4 worker processes, one Redis budget, one emulator: judged on the server's clock.

    The emulator processes jobs ten times faster than the budget, so its one-job-at-a-time
    rule never paces the imports: only the shared governor does.
    """
    rate, batch, batches, workers = 60_000.0, 500, 6, 4  # a batch every 500 ms, 12 s in all
    port = free_port()
    log_path = tmp_path / "requests.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR_PROCESS, str(port), str(rate * 10), str(log_path)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[str]] = []
    try:
        # Wait for an HTTP answer, not just an open port: the emulator's first answer is slow,
        # and were it a worker's first batch, that batch would reach the server late.
        if not wait_until(lambda: serves_http(base_url), process=emulator):
            exited = emulator.poll() is not None
            pytest.fail(emulator.stderr.read() if exited and emulator.stderr else "no answer")
        start_at = time.time() + 3  # time for every worker to import and connect
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_PROCESS,
                    redis_server.url,
                    base_url,
                    KEY,
                    name,
                    str(n),
                    str(rate),
                    str(batch),
                    str(batches),
                    str(start_at),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(workers)
        ]
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        # SIGINT: uvicorn stops gracefully and re-raises it, so the log is written on the way out.
        emulator.send_signal(signal.SIGINT)
        emulator.communicate(timeout=15)
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err
        assert json.loads(out) == {"rows_sent": batch * batches, "ok": True}

    log = json.loads(log_path.read_text())
    submits = sorted(
        (r["time"], r["records"])
        for r in log
        if r["path"] == "/v1/users/bulk_identify" and r["status"] == 202
    )
    assert sum(n for _, n in submits) == workers * batch * batches
    conflicts = sum(1 for r in log if r["status"] == 409)
    span = submits[-1][0] - submits[0][0]
    achieved = sum(n for _, n in submits[:-1]) / span * 60  # rows a minute between starts
    ahead = _max_ahead(submits, 60 / rate)
    print(
        f"\n{workers} processes, {len(submits)} batches of {batch}: {achieved:,.0f} rows/min "
        f"= {achieved / rate:.2%} of {rate:,.0f}; max ahead over any stretch "
        f"{ahead * 1000:.1f} ms ({ahead * rate / 60:.0f} rows); 409s: {conflicts}"
    )
    assert rate * 0.95 <= achieved <= rate * 1.005
    # The governor's starts are exact; what the server sees also carries the time between a
    # start and its POST (the pipeline checks the job slot in between, a few requests on a busy
    # machine). That noise, never a drift, is all any stretch may run ahead: under half a batch.
    assert ahead < 0.5 * batch * 60 / rate


# -- wired into the client ---------------------------------------------------------------------


async def test_the_client_binds_its_key_hash_and_shares_its_request_windows(
    redis_server: RedisServer, name: str, raw: redis.asyncio.Redis
) -> None:
    governor = RedisGovernor(redis_server.url, name=name, rows_per_minute=600_000)
    emulator = Emulator(rows_per_minute=600_000)
    async with governor, EmulatedAnalytex(emulator, api_key=KEY, governor=governor) as analytex:
        assert governor.key_hash == api_key_hash(KEY)
        assert isinstance(analytex.client._windows.identify, RedisRequestWindow)
        assert isinstance(analytex.client._windows.track, RedisRequestWindow)
        await analytex.client.identify("u1")
        await analytex.client.track("u1", "e")
        result = await analytex.client.import_users(
            [{"user_id": f"u{i}"} for i in range(50)], batch_size=20
        )
        assert result.rows_sent == 50
        keys = [k.decode() for k in await raw.keys(f"*{name}*")]
    assert any(k.endswith(":rows") for k in keys)
    assert any("window:identify" in k for k in keys)
    assert all(KEY not in k for k in keys)
