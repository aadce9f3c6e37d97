"""Shared fixtures: both async backends, a respx router, and a client wired to it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
import redis.asyncio
import respx
from trio.testing import MockClock

from analytex_async import AsyncAnalytex, RetryPolicy

from .redis_server import RedisServer, running_redis

API_KEY = "sk_test_SECRET_4f9a1c77e2"
BASE_URL = "https://analytex.test"

# Retries without waiting: for behaviour tests that run on both backends. Tests about *how long*
# the client waits use the ``mock_clock`` backend below instead.
NO_WAIT = RetryPolicy(max_retries=4, initial_delay=0.0, max_delay=0.0, random=lambda: 0.0)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Every async test runs on asyncio and on trio."""
    return request.param


def trio_mock_clock() -> tuple[str, dict[str, Any]]:
    """Trio with a clock that jumps ahead whenever every task is asleep: time costs nothing."""
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
async def client(router: respx.MockRouter) -> AsyncIterator[AsyncAnalytex]:
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as c:
        yield c


# analytex_async.testing is a pytest plugin through its pytest11 entry point (the testing extra):
# its fixtures reach these tests the way they reach users', with no line here.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """In CI, a skipped test fails: it verified nothing. Install what it needs (the test extra).

    An expected failure (``xfail``) is not a skip: it still runs, and passing fails it.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a loopback port, one per test module (see ``redis_server``)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain Redis client on ``redis_server``, to look at the keys a test leaves."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
