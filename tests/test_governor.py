"""The bulk rate governor (GCRA in rows), on trio's mock clock: time costs nothing."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import hypothesis.strategies as st
import pytest
import trio
from hypothesis import given, settings
from trio.testing import MockClock

from analytex_async.governors._local import Governor, RowGovernor

from .conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

# What the wake-up margin and float rounding may add to a wait, in seconds.
SLACK = 1e-5


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_first_batch_starts_at_once_on_either_backend() -> None:
    governor = RowGovernor(1200)
    start = anyio.current_time()
    assert await governor.acquire(10_000) < 1.0  # a real clock: "at once" is not exactly 0
    assert anyio.current_time() - start < 1.0


async def test_starts_are_spaced_by_the_rows_of_the_batch_before() -> None:
    governor = RowGovernor(1200)  # 20 rows a second
    sizes = [100, 5000, 1, 2400, 7]
    t0 = anyio.current_time()
    starts = []
    for rows in sizes:
        await governor.acquire(rows)
        starts.append(anyio.current_time() - t0)
    assert starts == pytest.approx([0.0, 5.0, 255.0, 255.05, 375.05], abs=SLACK)


async def test_acquire_returns_the_seconds_waited() -> None:
    governor = RowGovernor(600)  # 10 rows a second
    assert await governor.acquire(50) == 0.0
    await anyio.sleep(2.0)
    assert await governor.acquire(1) == pytest.approx(3.0, abs=SLACK)


async def test_a_batch_over_a_minutes_budget_starts_and_is_paid_for_afterwards() -> None:
    governor = RowGovernor(1200)
    t0 = anyio.current_time()
    assert await governor.acquire(5000) == 0.0
    assert await governor.acquire(1) == pytest.approx(250.0, abs=SLACK)
    assert anyio.current_time() - t0 == pytest.approx(250.0, abs=SLACK)


async def test_idle_time_is_not_banked() -> None:
    governor = RowGovernor(1200)
    await governor.acquire(1200)
    await anyio.sleep(3600)
    # An hour idle buys one immediate batch, then the rate applies again from its start.
    assert await governor.acquire(1200) == 0.0
    t1 = anyio.current_time()
    assert await governor.acquire(1) == pytest.approx(60.0, abs=SLACK)
    assert anyio.current_time() - t1 == pytest.approx(60.0, abs=SLACK)


async def test_a_batch_arriving_late_is_spaced_from_its_own_start() -> None:
    governor = RowGovernor(1200)
    await governor.acquire(1200)  # paid for by t=60
    await anyio.sleep(70)
    t1 = anyio.current_time()
    await governor.acquire(200)  # starts at once, at t=70
    await governor.acquire(1)
    assert anyio.current_time() - t1 == pytest.approx(10.0, abs=SLACK)


async def test_concurrent_waiters_are_served_first_come_first_served() -> None:
    governor = RowGovernor(1200)
    t0 = anyio.current_time()
    order: list[tuple[int, float]] = []

    async def take(n: int) -> None:
        await governor.acquire(1200)
        order.append((n, anyio.current_time() - t0))

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(take, n)
            await anyio.sleep(0.01)  # arrival order 0, 1, 2, 3, 4
    assert [n for n, _ in order] == [0, 1, 2, 3, 4]
    assert [t for _, t in order] == pytest.approx([0, 60, 120, 180, 240], abs=SLACK)


async def test_a_cancelled_waiter_consumes_nothing() -> None:
    governor = RowGovernor(1200)
    await governor.acquire(1200)  # the next batch may start at t=60
    with anyio.move_on_after(10) as scope:
        await governor.acquire(6000)
    assert scope.cancelled_caught
    # Had the cancelled 6,000 rows counted, the next start would be at t=360.
    assert await governor.acquire(1) == pytest.approx(50.0, abs=SLACK)
    assert await governor.acquire(1) == pytest.approx(0.05, abs=SLACK)


async def test_a_cancelled_waiter_frees_its_turn_for_the_next() -> None:
    governor = RowGovernor(1200)
    t0 = anyio.current_time()
    await governor.acquire(1200)
    started: dict[str, float] = {}
    first = anyio.CancelScope()

    async def take(name: str, rows: int, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            await governor.acquire(rows)
            started[name] = anyio.current_time() - t0

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "cancelled", 6000, first)  # asleep until t=60, holding the turn
        await anyio.sleep(0.01)
        tg.start_soon(take, "next", 10)  # queued behind the first waiter
        await anyio.sleep(0.01)
        tg.start_soon(take, "last", 10)
        await anyio.sleep(10)
        first.cancel()
    assert "cancelled" not in started
    assert started == pytest.approx({"next": 60.0, "last": 60.5}, abs=SLACK)


async def test_push_back_delays_every_waiter_including_one_already_asleep() -> None:
    governor = RowGovernor(1200)
    t0 = anyio.current_time()
    await governor.acquire(1200)  # the next batch may start at t=60
    started: list[float] = []

    async def take() -> None:
        await governor.acquire(20)
        started.append(anyio.current_time() - t0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)  # asleep until t=60
        await anyio.sleep(1)
        tg.start_soon(take)  # queued behind it
        await anyio.sleep(9)
        await governor.push_back(100)  # the server said 429 at t=10: nothing before t=110
    assert started == pytest.approx([110.0, 111.0], abs=SLACK)


async def test_push_back_applies_to_an_idle_governor_and_never_moves_the_start_earlier() -> None:
    governor = RowGovernor(1200)
    t0 = anyio.current_time()
    await governor.push_back(30)
    await governor.acquire(1200)
    assert anyio.current_time() - t0 == pytest.approx(30.0, abs=SLACK)
    await governor.push_back(5)  # earlier than the t=90 the rate already demands
    await governor.acquire(1)
    assert anyio.current_time() - t0 == pytest.approx(90.0, abs=SLACK)


async def test_arguments_are_checked() -> None:
    for bad_rate in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rows_per_minute"):
            RowGovernor(bad_rate)
    governor = RowGovernor(1200)
    for bad_rows in (0, -5):
        with pytest.raises(ValueError, match="rows"):
            await governor.acquire(bad_rows)
    for bad_seconds in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds"):
            await governor.push_back(bad_seconds)
    # A refused call consumed nothing.
    assert await governor.acquire(1) == 0.0


def test_row_governor_is_a_governor_and_says_its_rate() -> None:
    governor = RowGovernor(750.5)
    assert isinstance(governor, Governor)
    assert governor.rows_per_minute == 750.5
    assert repr(governor) == "RowGovernor(rows_per_minute=750.5)"
    assert RowGovernor().rows_per_minute == 1200
    assert not isinstance(object(), Governor)


# Property tests drive trio.run themselves: hypothesis examples and pytest's async fixtures do
# not mix, and a fresh mock clock per example keeps each one deterministic.


def run_on_mock_clock(main: Any) -> None:
    trio.run(main, clock=MockClock(autojump_threshold=0))


def assert_spacing(rate: float, batches: list[tuple[float, int]]) -> None:
    """Each start is at least the previous batch's rows' worth of time after the last."""
    for (start, rows), (next_start, _) in itertools.pairwise(batches):
        assert next_start - start >= rows * 60 / rate - 1e-9


rates = st.sampled_from([60.0, 600.0, 1200.0, 5000.0, 100_000.0])
batch_sizes = st.integers(min_value=1, max_value=10_000)


@settings(max_examples=60, deadline=None)
@given(
    rate=rates,
    plan=st.lists(
        st.tuples(batch_sizes, st.floats(min_value=0, max_value=600, allow_nan=False)),
        min_size=1,
        max_size=40,
    ),
)
def test_every_start_respects_the_spacing_whatever_the_arrivals(
    rate: float, plan: list[tuple[int, float]]
) -> None:
    batches: list[tuple[float, int]] = []

    async def main() -> None:
        governor = RowGovernor(rate)
        for rows, delay in plan:
            await trio.sleep(delay)
            arrived = trio.current_time()
            waited = await governor.acquire(rows)
            start = trio.current_time()
            assert waited == pytest.approx(start - arrived)
            batches.append((start, rows))

    run_on_mock_clock(main)
    assert_spacing(rate, batches)


@settings(max_examples=60, deadline=None)
@given(
    rate=rates,
    importers=st.lists(st.lists(batch_sizes, min_size=1, max_size=30), min_size=1, max_size=4),
)
def test_saturated_importers_sharing_a_governor_get_99_percent_of_the_rate(
    rate: float, importers: list[list[int]]
) -> None:
    batches: list[tuple[float, int]] = []

    async def main() -> None:
        governor = RowGovernor(rate)

        async def importer(sizes: list[int]) -> None:
            for rows in sizes:
                await governor.acquire(rows)
                batches.append((trio.current_time(), rows))

        async with trio.open_nursery() as nursery:
            for sizes in importers:
                nursery.start_soon(importer, sizes)

    run_on_mock_clock(main)
    batches.sort()
    assert_spacing(rate, batches)
    # Throughput up to the moment the last batch is paid for, so it counts every row it sent.
    rows = sum(n for _, n in batches)
    first_start, (last_start, last_rows) = batches[0][0], batches[-1]
    paid_until = last_start + last_rows * 60 / rate
    rows_per_minute = rows * 60 / (paid_until - first_start)
    assert 0.99 * rate <= rows_per_minute <= rate * (1 + 1e-9)
