"""How long the client waits between attempts: backoff, jitter, Retry-After, and the cap.

These tests run on trio with ``MockClock(autojump_threshold=0)``: every sleep jumps the clock
ahead at once, so a test can assert a 7-second wait in microseconds of real time.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest
import respx

from analytex_async import (
    APIConnectionError,
    AsyncAnalytex,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
)
from analytex_async._retry import parse_retry_after

from .conftest import API_KEY, BASE_URL, trio_mock_clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def make_client(**policy: Any) -> AsyncAnalytex:
    policy.setdefault("random", lambda: 0.0)
    return AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=RetryPolicy(**policy))


def stamped(route: respx.Route, responses: list[httpx.Response | Exception]) -> list[float]:
    """Answer with ``responses`` in turn and record the (mock) time of each attempt."""
    times: list[float] = []
    answers = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    route.mock(side_effect=handler)
    return times


async def test_backoff_doubles_from_half_a_second(router: respx.MockRouter) -> None:
    times = stamped(
        router.post("/v1/identify"),
        [httpx.Response(503), httpx.Response(500), httpx.ConnectError("x"), httpx.Response(202)],
    )
    async with make_client() as client:
        start = anyio.current_time()
        await client.identify("u1")
    gaps = [round(b - a, 6) for a, b in zip([start, *times], times, strict=False)][1:]
    assert gaps == [0.5, 1.0, 2.0]


async def test_backoff_is_capped_at_eight_seconds(router: respx.MockRouter) -> None:
    times = stamped(router.post("/v1/identify"), [httpx.Response(503)] * 7 + [httpx.Response(202)])
    async with make_client(max_retries=7) as client:
        await client.identify("u1")
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


async def test_jitter_takes_up_to_a_quarter_off(router: respx.MockRouter) -> None:
    times = stamped(router.post("/v1/identify"), [httpx.Response(503), httpx.Response(202)])
    async with make_client(random=lambda: 0.999999) as client:
        await client.identify("u1")
    assert times[1] - times[0] == pytest.approx(0.5 * 0.75, abs=1e-5)


async def test_max_retries_is_respected_exactly(router: respx.MockRouter) -> None:
    route = router.post("/v1/identify").respond(500)
    async with make_client(max_retries=2) as client:
        with pytest.raises(InternalServerError) as info:
            await client.identify("u1")
    assert route.call_count == 3
    assert info.value.attempts == 3


async def test_zero_retries_means_one_attempt(router: respx.MockRouter) -> None:
    route = router.post("/v1/identify").mock(side_effect=httpx.ConnectError("down"))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            await client.identify("u1")
    assert route.call_count == 1


async def test_retry_after_seconds_is_honoured(router: respx.MockRouter) -> None:
    times = stamped(
        router.post("/v1/track"),
        [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(202)],
    )
    async with make_client() as client:
        await client.track("u1", "e")
    assert times[1] - times[0] == pytest.approx(7.0)


async def test_retry_after_ms_is_honoured(router: respx.MockRouter) -> None:
    times = stamped(
        router.post("/v1/track"),
        [httpx.Response(503, headers={"Retry-After-Ms": "1500"}), httpx.Response(202)],
    )
    async with make_client() as client:
        await client.track("u1", "e")
    assert times[1] - times[0] == pytest.approx(1.5)


async def test_retry_after_is_capped(router: respx.MockRouter) -> None:
    times = stamped(
        router.post("/v1/track"),
        [httpx.Response(429, headers={"Retry-After": "86400"}), httpx.Response(202)],
    )
    async with make_client(max_retry_after=30.0) as client:
        await client.track("u1", "e")
    assert times[1] - times[0] == pytest.approx(30.0)


def test_retry_after_http_date_is_read_relative_to_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": later}), now=now.timestamp()) == 42
    past = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": past}), now=now.timestamp()) == 0


@pytest.mark.parametrize("value", ["soon", "", "nan", "inf", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_falls_back_to_backoff(value: str) -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": value})) is None


async def test_http_date_retry_after_drives_the_wait(router: respx.MockRouter) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    times = stamped(
        router.post("/v1/identify"),
        [httpx.Response(429, headers={"Retry-After": when}), httpx.Response(202)],
    )
    async with make_client() as client:
        await client.identify("u1")
    assert 18.0 <= times[1] - times[0] <= 20.0


async def test_each_attempt_sends_the_whole_body_again(router: respx.MockRouter) -> None:
    route = router.post("/v1/users/bulk_identify")
    stamped(
        route,
        [httpx.ReadError("reset"), httpx.Response(502),
         httpx.Response(202, json={"job_id": "j1", "status": "queued"})],
    )  # fmt: skip
    async with make_client() as client:
        await client.bulk_identify([{"user_id": "u1"}, {"user_id": "u2"}])
    bodies = {call.request.content for call in route.calls}
    assert bodies == {b'{"users":[{"user_id":"u1"},{"user_id":"u2"}]}'}
    assert route.call_count == 3


async def test_a_400_is_never_retried_or_delayed(router: respx.MockRouter) -> None:
    route = router.post("/v1/identify").respond(400)
    async with make_client() as client:
        start = anyio.current_time()
        with pytest.raises(BadRequestError):
            await client.identify("u1")
        assert anyio.current_time() == start
    assert route.call_count == 1


async def test_a_429_storm_ends_in_rate_limit_error_with_all_attempts(
    router: respx.MockRouter,
) -> None:
    route = router.post("/v1/identify").respond(429, headers={"Retry-After": "1"})
    async with make_client(max_retries=3) as client:
        start = anyio.current_time()
        with pytest.raises(RateLimitError) as info:
            await client.identify("u1")
        assert anyio.current_time() - start == pytest.approx(3.0)
    assert route.call_count == 4
    assert info.value.retry_after == 1.0
    assert info.value.attempts == 4
