"""Bulk overflow: identifies the real-time window cannot carry within max_delay go through the
bulk API, under the row governor and one job at a time, and count as delivered when their job
completes. Against the emulator (600 real-time requests a minute, 1,200 bulk rows a minute) on
trio's MockClock, so minutes of rate cost nothing.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from analytex_async import AsyncAnalytex, DeliveryPolicy, JobFailedError
from analytex_async.emulator import Emulator
from analytex_async.testing import EMULATED_BASE_URL, EmulatorTransport

from ..conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

BULK = "/v1/users/bulk_identify"


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


def opened(emulator: Emulator, rate: int = 600, **policy: Any) -> AsyncAnalytex:
    http = httpx.AsyncClient(transport=EmulatorTransport(emulator))
    return AsyncAnalytex(
        api_key="sk_test", base_url=EMULATED_BASE_URL, http_client=http,
        delivery=DeliveryPolicy(**policy), requests_per_minute=rate,
    )  # fmt: skip


def statuses(emulator: Emulator, path: str) -> list[int | None]:
    return [r.status for r in emulator.requests if r.path == path]


async def test_identifies_beyond_the_window_overflow_to_bulk_and_all_arrive(
    emulator: Emulator,
) -> None:
    async with opened(emulator, max_delay=30) as analytex:
        for n in range(1_000):
            analytex.background.identify(f"u{n}", metadata={"n": n}, company="c1")
        stats = await analytex.background.flush()
    assert stats.delivered == 1_000
    # The window starts 600 at once and no more within 30 s (a slot frees 60 s after its
    # answer): the other 400 go in bulk.
    assert stats.via_bulk == 400
    assert stats.failed == stats.dropped == stats.pending == 0
    assert 429 not in statuses(emulator, "/v1/identify")
    assert statuses(emulator, "/v1/identify").count(202) == 600
    bulk = [r for r in emulator.requests if r.path == BULK]
    assert [r.status for r in bulk] == [202]
    assert len(emulator.users) == 1_000
    assert emulator.users["u999"].metadata == {"n": 999}
    assert emulator.users["u999"].company_id == "c1"


async def test_the_bulk_upload_is_multipart_ndjson_with_a_file_name_of_its_own(
    emulator: Emulator,
) -> None:
    """A named file lets a lost answer be looked up (no duplicate job), as for imports."""
    types: list[str] = []

    async def spy(request: httpx.Request) -> None:
        if request.url.path == BULK:
            types.append(request.headers["content-type"].split(";")[0])

    http = httpx.AsyncClient(transport=EmulatorTransport(emulator), event_hooks={"request": [spy]})
    client = AsyncAnalytex(
        api_key="k", base_url=EMULATED_BASE_URL, http_client=http,
        delivery=DeliveryPolicy(max_delay=1), requests_per_minute=2,
    )  # fmt: skip
    async with client:
        for n in range(5):
            client.background.identify(f"u{n}", metadata={"n": n})
        stats = await client.background.flush()
    assert types == ["multipart/form-data"]
    [job] = emulator.jobs.values()
    assert job.filename is not None
    assert job.filename.endswith(".ndjson")
    assert stats.via_bulk == 3
    assert {u: emulator.users[u].metadata for u in ("u2", "u3", "u4")} == {
        f"u{n}": {"n": n} for n in (2, 3, 4)
    }


@pytest.mark.parametrize(
    ("why", "calls"),
    [
        ("a track follows", lambda b, n: (b.identify(f"u{n}"), b.track(f"u{n}", "e"))),
        ("nested metadata", lambda b, n: b.identify(f"u{n}", metadata={"o": {"x": 1}})),
        ("a rich company", lambda b, n: b.identify(f"u{n}", company={"id": "c", "p": 1})),
    ],
)  # fmt: skip
async def test_identifies_the_bulk_api_would_change_stay_real_time(
    emulator: Emulator, why: str, calls: Any
) -> None:
    async with opened(emulator, rate=5, max_delay=1) as analytex:
        for n in range(30):
            calls(analytex.background, n)
        stats = await analytex.background.flush()
    assert stats.via_bulk == 0, why
    assert stats.failed == 0
    assert not any(r.path == BULK for r in emulator.requests)


async def test_a_failed_bulk_job_counts_its_records_failed(emulator: Emulator) -> None:
    errors: list[Exception] = []
    emulator.fail_next_jobs(1)
    on_error = lambda k, p, e: errors.append(e)  # noqa: E731
    async with opened(emulator, rate=10, max_delay=1, on_error=on_error) as a:
        for n in range(20):
            a.background.identify(f"u{n}", metadata={"n": n})
        stats = await a.background.flush()
    assert stats.via_bulk == 0
    assert stats.failed == 10  # the window starts 10 within 1 s at 10 a minute
    assert stats.delivered == 10
    assert len(errors) == 10
    assert all(isinstance(e, JobFailedError) for e in errors)


async def test_without_bulk_overflow_everything_waits_for_the_window(emulator: Emulator) -> None:
    async with opened(emulator, max_delay=1, bulk_overflow=False) as analytex:
        for n in range(700):
            analytex.background.identify(f"u{n}")
        stats = await analytex.background.flush()
    assert (stats.delivered, stats.via_bulk) == (700, 0)
    assert 429 not in statuses(emulator, "/v1/identify")
