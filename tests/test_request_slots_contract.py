"""The contract every ``RequestSlots`` implementation keeps, checked on each of them.

* the in-process ``RequestWindow``, on trio's mock clock (exact times, no real waiting);
* ``RedisRequestWindow`` against a real ``redis-server``, on the server's real clock (``slow``),
  with its slots handed out in turn by two governors with their own connections, as two
  workers sharing one budget would.

The contract: at most ``limit`` slots in any ``period`` (a slot counts from the start of its
block until ``period`` after the block ends), a slot freed exactly then, waiters served first
come, first served, and a waiter cancelled (or a block that raised) giving its place back.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from analytex_async._types import RequestSlots
from analytex_async.governors import RedisGovernor, RedisRequestWindow, RequestWindow

from .conftest import trio_mock_clock
from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

KEY = "sk_test_SLOTS_5d1e0a"


@dataclass(frozen=True)
class Implementation:
    """How to make windows of one implementation, and how exactly its clock can be read.

    Attributes:
        make: A window of ``limit`` slots per ``period``.
        period: The period the tests use: long on a mock clock, short on a real one.
        early: How much earlier than the contract's time a start may be seen (float rounding;
            on the real clock, Redis's clock against this process's).
        late: How much later than the contract's time a start may be seen (wake-up latency).
    """

    make: Callable[[int], RequestSlots]
    period: float
    early: float
    late: float

    def on_time(self, started: float, due: float) -> bool:
        return due - self.early <= started <= due + self.late


class TakeTurns:
    """Hands out the slots of several windows in turn, like workers sharing one budget."""

    def __init__(self, windows: list[RedisRequestWindow]) -> None:
        self._windows = itertools.cycle(windows)

    def slot(self) -> AbstractAsyncContextManager[None]:
        return next(self._windows).slot()


@pytest.fixture(params=["in-process", pytest.param("redis", marks=pytest.mark.slow)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(kind: str) -> Any:
    # redis-py's asyncio client needs asyncio; the in-process window runs on the mock clock.
    return "asyncio" if kind == "redis" else trio_mock_clock()


@pytest.fixture
def redis_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    """The test server's URL; the server is started only for the Redis implementation."""
    if kind != "redis":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
async def implementation(redis_url: str | None) -> AsyncIterator[Implementation]:
    if redis_url is None:
        yield Implementation(lambda limit: RequestWindow(limit, 10.0), 10.0, 1e-9, 1e-5)
        return
    name = f"t-{uuid.uuid4().hex[:12]}"
    period = 0.4
    rules = (f"rule{n}" for n in itertools.count())
    async with (
        RedisGovernor(redis_url, name=name, api_key=KEY) as a,
        RedisGovernor(redis_url, name=name, api_key=KEY) as b,
    ):

        def make(limit: int) -> RequestSlots:
            rule = next(rules)
            return TakeTurns(
                [a.request_window(rule, limit, period), b.request_window(rule, limit, period)]
            )

        # Early: Redis's clock against ours (the order of events is causal, so only the
        # clocks' rates can differ). Late: waking up on a busy two-core machine.
        yield Implementation(make, period, 0.002, 0.1)


async def hold(
    window: RequestSlots,
    seconds: float,
    spans: list[tuple[float, float]],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Hold a slot for ``seconds``; record (start, end), the end taken inside the block."""
    async with window.slot():
        task_status.started()
        started = anyio.current_time()
        await anyio.sleep(seconds)
        spans.append((started, anyio.current_time()))


async def test_no_period_ever_holds_more_than_limit_slots(implementation: Implementation) -> None:
    limit, period = 4, implementation.period
    window = implementation.make(limit)
    spans: list[tuple[float, float]] = []
    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for n in range(14):
            # Some blocks last longer than others, as some answers are slower.
            tg.start_soon(hold, window, 0.03 * period * (n % 3), spans)
    elapsed = anyio.current_time() - t0
    assert len(spans) == 14
    # At every start, fewer than `limit` other slots are held or ended within the last period.
    for n, (start, _) in enumerate(spans):
        counting = [
            m
            for m, (s, f) in enumerate(spans)
            if m != n and s <= start < f + period - implementation.early
        ]
        assert len(counting) < limit
    # And nobody waits longer than the limit demands: 14 slots, 4 a period, all held by the
    # fourth period (three periods plus four blocks of at most 0.06 periods).
    assert elapsed <= 3.25 * period + 5 * implementation.late


async def test_a_slot_is_free_again_a_period_after_its_block_ends(
    implementation: Implementation,
) -> None:
    period = implementation.period
    window = implementation.make(2)
    first: list[tuple[float, float]] = []
    second: list[tuple[float, float]] = []
    after: list[tuple[float, float]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(hold, window, 0.2 * period, first)
        await tg.start(hold, window, 0.5 * period, second)
        await tg.start(hold, window, 0.0, after)  # waits for the first freed slot
        await tg.start(hold, window, 0.0, after)  # and this one for the second
    # Each slot is taken again a period after its block ended, not after it started.
    assert implementation.on_time(after[0][0], first[0][1] + period)
    assert implementation.on_time(after[1][0], second[0][1] + period)


async def test_waiters_are_served_first_come_first_served(implementation: Implementation) -> None:
    period = implementation.period
    window = implementation.make(1)
    order: list[int] = []
    spans: list[tuple[float, float]] = []

    async def take(n: int) -> None:
        async with window.slot():
            order.append(n)
            spans.append((anyio.current_time(), anyio.current_time()))

    async with anyio.create_task_group() as tg:
        await tg.start(hold, window, 0.0, spans)
        for n in range(5):
            tg.start_soon(take, n)
            await anyio.sleep(0.1 * period)  # arrival order 0, 1, 2, 3, 4
    assert order == [0, 1, 2, 3, 4]
    # One slot a period: each waiter starts a period after the one before it ended.
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert implementation.on_time(start, end + period)


async def test_a_waiter_cancelled_while_waiting_gives_its_place_back(
    implementation: Implementation,
) -> None:
    period = implementation.period
    window = implementation.make(1)
    spans: list[tuple[float, float]] = []
    await hold(window, 0.0, spans)
    with anyio.move_on_after(0.2 * period) as scope:
        async with window.slot():
            pytest.fail("the window should have been full")
    assert scope.cancelled_caught
    # The next request takes the slot when it frees, not a period behind the cancelled one.
    await hold(window, 0.0, spans)
    assert implementation.on_time(spans[1][0], spans[0][1] + period)


async def test_a_block_that_raises_frees_its_slot_a_period_later(
    implementation: Implementation,
) -> None:
    period = implementation.period
    window = implementation.make(1)
    ended: list[float] = []

    async def failing_request() -> None:
        async with window.slot():
            ended.append(anyio.current_time())
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError, match="the request failed"):
        await failing_request()
    spans: list[tuple[float, float]] = []
    await hold(window, 0.0, spans)
    assert implementation.on_time(spans[0][0], ended[0] + period)
