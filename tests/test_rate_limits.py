"""The real-time rate windows through the client, and the bound on requests in flight.

On a mock clock. What every request window keeps (at most ``limit`` a period, FIFO,
cancellation) is checked once for each implementation in ``test_request_slots_contract.py``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import httpx
import pytest
import respx

from analytex_async import AsyncAnalytex
from analytex_async.governors._windows import RequestWindow

from .conftest import API_KEY, BASE_URL, NO_WAIT, trio_mock_clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


class SlidingWindowServer:
    """A fake server that answers 429 beyond ``limit`` requests in any ``period`` seconds."""

    def __init__(self, limit: int, period: float, latency: float = 0.0) -> None:
        self.limit = limit
        self.period = period
        self.latency = latency
        self.seen: deque[float] = deque()
        self.times: list[float] = []
        self.rejected = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await anyio.sleep(self.latency / 2)  # request travels to the server
        now = anyio.current_time()
        while self.seen and now - self.seen[0] >= self.period:
            self.seen.popleft()
        if len(self.seen) >= self.limit:
            self.rejected += 1
            response = httpx.Response(429)
        else:
            self.seen.append(now)
            self.times.append(now)
            response = httpx.Response(202)
        await anyio.sleep(self.latency / 2)  # answer travels back
        return response


async def fire(count: int, call: Any) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(call, f"u{i}")


@pytest.mark.parametrize("latency", [0.0, 0.3])
async def test_5000_identifies_fired_at_once_draw_no_429(
    router: respx.MockRouter, latency: float
) -> None:
    server = SlidingWindowServer(600, 60.0, latency)
    router.post("/v1/identify").mock(side_effect=server)
    async with AsyncAnalytex(
        api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT, max_concurrency=64
    ) as client:
        start = anyio.current_time()
        await fire(5000, client.identify)
        elapsed = anyio.current_time() - start
    assert server.rejected == 0
    assert len(server.times) == 5000
    # 5,000 at 600 per minute: the first 600 at once, the last 200 in the ninth minute.
    assert 8 * 60 <= elapsed < 9 * 60 + 1
    for i in range(600, 5000):
        assert server.times[i] - server.times[i - 600] >= 60.0


async def test_identify_and_track_have_separate_budgets(router: respx.MockRouter) -> None:
    router.post("/v1/identify").respond(202)
    router.post("/v1/track").respond(202)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, max_concurrency=50) as client:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(600):
                tg.start_soon(client.identify, f"u{i}")
                tg.start_soon(client.track, f"u{i}", "e")
        assert anyio.current_time() == start


async def test_company_identify_shares_the_identify_budget(router: respx.MockRouter) -> None:
    router.post("/v1/identify").respond(202)
    router.post("/v1/companies/identify").respond(202)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, requests_per_minute=10) as client:
        start = anyio.current_time()
        for i in range(10):
            await client.identify(f"u{i}")
        await client.identify_company("c1")
        assert anyio.current_time() - start == pytest.approx(60.0)


async def test_rate_limit_can_be_turned_off(router: respx.MockRouter) -> None:
    router.post("/v1/identify").respond(202)
    async with AsyncAnalytex(
        api_key=API_KEY, base_url=BASE_URL, requests_per_minute=None
    ) as client:
        start = anyio.current_time()
        await fire(2000, client.identify)
        assert anyio.current_time() == start


async def test_deletes_are_spaced_two_seconds_after_the_previous_answer(
    router: respx.MockRouter,
) -> None:
    server = SlidingWindowServer(1, 2.0, latency=0.2)
    router.delete("/v1/users").mock(side_effect=server)
    async with (
        AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client,
        anyio.create_task_group() as tg,
    ):
        for i in range(4):
            tg.start_soon(client.delete_users, [f"u{i}"])
    assert server.rejected == 0
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert all(gap >= 2.0 for gap in gaps)
    assert gaps == pytest.approx([2.2, 2.2, 2.2])


async def test_requests_in_flight_are_bounded(router: respx.MockRouter) -> None:
    in_flight = peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(1.0)
        in_flight -= 1
        return httpx.Response(202)

    router.post("/v1/track").mock(side_effect=slow)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, max_concurrency=3) as client:
        await fire(12, lambda user: client.track(user, "e"))
    assert peak == 3


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="limit"):
        RequestWindow(0, 1.0)
    with pytest.raises(ValueError, match="period"):
        RequestWindow(1, 0)
