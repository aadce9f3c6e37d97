"""Waiting for jobs: adaptive polling, failure, and timeouts, on a mock clock."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import httpx
import pytest
import respx

from analytex_async import AsyncAnalytex, JobFailedError, JobStatus, ValidationError

from .conftest import API_KEY, BASE_URL, NO_WAIT, trio_mock_clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


class ProgressingJob:
    """A job of ``total`` rows that the fake server processes at ``rows_per_minute``."""

    def __init__(self, total: int, rows_per_minute: float, *, fail: bool = False) -> None:
        self.total = total
        self.rate = rows_per_minute / 60
        self.fail = fail
        self.start: float | None = None
        self.polls: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = anyio.current_time()
        if self.start is None:
            self.start = now
        self.polls.append(now - self.start)
        done = min(int((now - self.start) * self.rate), self.total)
        status = "processing" if done < self.total else ("failed" if self.fail else "completed")
        return httpx.Response(
            200,
            json={"job_id": "j1", "status": status, "total_rows": self.total,
                  "completed_rows": done},
        )  # fmt: skip


async def test_wait_for_job_returns_the_completed_job(router: respx.MockRouter) -> None:
    server = ProgressingJob(10_000, 1200)
    router.get("/v1/background_jobs/j1").mock(side_effect=server)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        job = await client.wait_for_job("j1")
    assert job.status is JobStatus.COMPLETED
    assert job.completed_rows == 10_000
    # 10,000 rows at 1,200/min take 500 s; polls come every 30 s and then when the job should
    # end, so there are few of them and the last comes right after the job ends.
    assert len(server.polls) <= 20
    assert 500 <= server.polls[-1] <= 502


async def test_wait_for_job_raises_job_failed_with_the_job(router: respx.MockRouter) -> None:
    router.get("/v1/background_jobs/j1").mock(side_effect=ProgressingJob(100, 1200, fail=True))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        with pytest.raises(JobFailedError, match="job j1 failed after 100 of 100 rows") as info:
            await client.wait_for_job("j1")
    assert info.value.job.status is JobStatus.FAILED


async def test_wait_for_job_times_out_with_the_last_status(router: respx.MockRouter) -> None:
    router.get("/v1/background_jobs/j1").mock(side_effect=ProgressingJob(10_000, 1200))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        start = anyio.current_time()
        with pytest.raises(TimeoutError, match="last status processing"):
            await client.wait_for_job("j1", timeout=60)
        assert anyio.current_time() - start == pytest.approx(60)


async def test_fixed_poll_interval(router: respx.MockRouter) -> None:
    server = ProgressingJob(100, 1200)  # 5 s of work
    router.get("/v1/background_jobs/j1").mock(side_effect=server)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        await client.wait_for_job("j1", poll_interval=2)
    assert server.polls == [0, 2, 4, 6]


async def test_jobs_without_counts_are_polled_with_growing_intervals(
    router: respx.MockRouter,
) -> None:
    times: list[float] = []
    answers = iter(["queued"] * 6 + ["completed"])

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        return httpx.Response(200, json={"job_id": "j1", "status": next(answers)})

    router.get("/v1/background_jobs/j1").mock(side_effect=handler)
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        await client.wait_for_job("j1")
    # Nothing tells how long it takes: each gap is the job's age so far (0.25 s at least), at
    # most 10 s, the bound for a job past (or without) an expected duration.
    ages = [round(t - times[0], 6) for t in times]
    assert ages == [0, 0.25, 0.5, 1, 2, 4, 8]
    answers = iter(["queued"] * 8 + ["completed"])
    times.clear()
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        await client.wait_for_job("j1")
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.25, 0.25, 0.5, 1, 2, 4, 8, 10]


async def test_polling_survives_a_transient_error(router: respx.MockRouter) -> None:
    router.get("/v1/background_jobs/j1").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"job_id": "j1",
                                                                    "status": "completed"})]
    )  # fmt: skip
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        job = await client.wait_for_job("j1")
    assert job.is_terminal


@pytest.mark.parametrize("options", [{"timeout": 0}, {"timeout": -1}, {"poll_interval": 0}])
async def test_wait_for_job_refuses_bad_arguments(options: dict[str, float]) -> None:
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        with pytest.raises(ValidationError, match=next(iter(options))):
            await client.wait_for_job("j1", **options)
