"""An unmodified AsyncAnalytex against the emulator: every documented behaviour, end to end."""

from __future__ import annotations

import pytest

from analytex_async import (
    APIConnectionError,
    AsyncAnalytex,
    AuthenticationError,
    BadRequestError,
    Company,
    ConflictError,
    InternalServerError,
    JobFailedError,
    JobStatus,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    User,
)
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from .conftest import FAST, Wired

pytestmark = pytest.mark.anyio


async def test_identify_lands_in_the_store(wired: Wired) -> None:
    await wired.client.identify(
        "user_001", metadata={"name": "Jane"}, company={"id": "company_001"}
    )
    user = wired.emulator.users["user_001"]
    assert user.metadata == {"name": "Jane"}
    assert user.company_id == "company_001"


async def test_company_identify_and_track(wired: Wired) -> None:
    await wired.client.identify_company("c1", metadata={"name": "Acme"})
    await wired.client.track("u1", "Signed Up", metadata={"plan": "pro"})
    assert wired.emulator.companies["c1"].metadata == {"name": "Acme"}
    (event,) = wired.emulator.events
    assert (event.user_id, event.event_name, event.metadata) == ("u1", "Signed Up", {"plan": "pro"})


async def test_bulk_job_runs_to_completion(wired: Wired) -> None:
    users = [User(f"u{i}", metadata={"n": i}) for i in range(50)]
    job = await wired.client.bulk_identify(users)
    assert job.status in (JobStatus.QUEUED, JobStatus.PROCESSING)
    done = await wired.client.wait_for_job(job.job_id, poll_interval=0.01, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert done.total_rows == done.completed_rows == 50
    assert wired.emulator.users["u49"].metadata == {"n": 49}
    assert [j.job_id for j in await wired.client.list_jobs()] == [job.job_id]


async def test_bulk_companies(wired: Wired) -> None:
    job = await wired.client.bulk_identify_companies([Company("c1", metadata={"seats": 3})])
    await wired.client.wait_for_job(job.job_id, poll_interval=0.01, timeout=10)
    assert wired.emulator.companies["c1"].metadata == {"seats": 3}


async def test_a_second_job_while_one_runs_is_a_409(wired: Wired) -> None:
    wired.emulator.rows_per_minute = 1  # the first job will run for a long time
    await wired.client.bulk_identify([{"user_id": "u1"}, {"user_id": "u2"}])
    with pytest.raises(ConflictError) as info:
        await wired.client.bulk_identify([{"user_id": "u3"}])
    assert info.value.status_code == 409
    assert info.value.errors


async def test_the_emulator_413_is_a_payload_too_large_error(wired: Wired) -> None:
    wired.emulator.max_records = 3
    with pytest.raises(PayloadTooLargeError):
        await wired.client.bulk_identify([{"user_id": f"u{i}"} for i in range(4)])


async def test_the_emulator_429_is_a_rate_limit_error(wired: Wired) -> None:
    wired.emulator.realtime_requests_per_minute = 2
    for i in range(2):
        await wired.client.track(f"u{i}", "e")
    with pytest.raises(RateLimitError) as info:
        await wired.client.track("u3", "e")
    assert info.value.attempts == FAST.max_retries + 1


async def test_a_failed_job_raises_job_failed(wired: Wired) -> None:
    wired.emulator.fail_next_jobs(1, reason="boom")
    job = await wired.client.bulk_identify([{"user_id": "u1"}])
    with pytest.raises(JobFailedError) as info:
        await wired.client.wait_for_job(job.job_id, poll_interval=0.01, timeout=10)
    assert info.value.job.status is JobStatus.FAILED


async def test_unknown_job_is_not_found(wired: Wired) -> None:
    with pytest.raises(NotFoundError):
        await wired.client.get_job("no-such-job")


async def test_job_ids_that_need_encoding_round_trip(wired: Wired) -> None:
    wired.emulator.job_id_factory = lambda: "bulk:jobs:NX-1:a/b c"
    job = await wired.client.bulk_identify([{"user_id": "u1"}])
    assert job.job_id == "bulk:jobs:NX-1:a/b c"
    assert (await wired.client.get_job(job.job_id)).job_id == job.job_id


async def test_delete_users(wired: Wired) -> None:
    await wired.client.identify("u1")
    await wired.client.delete_users(["u1"])
    assert "u1" not in wired.emulator.users


async def test_server_errors_are_retried_until_they_pass(wired: Wired) -> None:
    wired.emulator.faults.add("/v1/identify", status=503, times=2)
    await wired.client.identify("u1")
    assert "u1" in wired.emulator.users
    statuses = [r.status for r in wired.emulator.requests if r.path == "/v1/identify"]
    assert statuses == [503, 503, 202]


async def test_a_server_error_storm_ends_in_an_error(wired: Wired) -> None:
    wired.emulator.faults.add("/v1/track", status=500, times=None)
    with pytest.raises(InternalServerError) as info:
        await wired.client.track("u1", "e")
    assert info.value.attempts == FAST.max_retries + 1


async def test_a_dropped_connection_is_retried(wired: Wired) -> None:
    wired.emulator.faults.add("/v1/identify", drop_connection=True, times=1)
    await wired.client.identify("u1")
    assert "u1" in wired.emulator.users


async def test_dropped_connections_every_time_end_in_a_connection_error(wired: Wired) -> None:
    wired.emulator.faults.add("/v1/identify", drop_connection=True, times=None)
    with pytest.raises(APIConnectionError):
        await wired.client.identify("u1")


async def test_an_injected_400_is_a_bad_request(wired: Wired) -> None:
    wired.emulator.faults.add("/v1/track", status=400, times=1)
    with pytest.raises(BadRequestError):
        await wired.client.track("u1", "e")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_wrong_key_is_an_authentication_error(anyio_backend: str) -> None:
    emulator = Emulator(api_keys={"the-right-key"})
    async with EmulatedAnalytex(emulator, api_key="the-wrong-key") as analytex:
        with pytest.raises(AuthenticationError):
            await analytex.client.identify("u1")
    async with EmulatedAnalytex(emulator, api_key="the-right-key") as analytex:
        await analytex.client.identify("u1")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_pytest_plugin_fixtures(anyio_backend: str, analytex_client: AsyncAnalytex) -> None:
    await analytex_client.identify("u1")
