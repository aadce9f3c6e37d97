"""Jobs: progress from the clock, one at a time per account, failures, opaque ids."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest

from analytex_async.emulator import Emulator

EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)

pytestmark = pytest.mark.anyio


async def submit(api, count, start=0):
    response = await api.upload("users", api.ndjson(api.users(count, start)))
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


async def test_a_job_goes_queued_processing_completed_at_rows_per_minute(api, emulator, clock):
    job_id = await submit(api, 100)  # 1200 rows/min = 20 rows/s: done 5 s after it starts
    first = (await api.job(job_id)).json()
    assert (first["status"], first["completed_rows"]) == ("processing", 0)
    assert first["start_time"] == "2025-01-01T00:16:40.000Z"
    assert first["elapsed_time"] == 0.0

    clock.advance(2.5)
    middle = (await api.job(job_id)).json()
    assert (middle["status"], middle["completed_rows"], middle["end_time"]) == (
        "processing",
        50,
        None,
    )
    assert middle["elapsed_time"] == 2.5
    # rows are applied to the store as they complete
    assert set(emulator.users) == {f"u{i}" for i in range(50)}

    clock.advance(60)
    done = (await api.job(job_id)).json()
    assert (done["status"], done["completed_rows"], done["total_rows"]) == ("completed", 100, 100)
    assert done["end_time"] == "2025-01-01T00:16:45.000Z"
    assert done["elapsed_time"] == 5.0
    assert len(emulator.users) == 100
    assert emulator.users["u7"].metadata == {"n": 7}
    assert emulator.job(job_id).status == "completed"


async def test_queue_delay_keeps_a_job_queued(clock, make_client, api):
    emulator = Emulator(clock=clock, queue_delay=3.0, epoch=EPOCH)
    async with make_client(emulator) as client:
        job_api = type(api)(client)
        job_id = await submit(job_api, 20)
        clock.advance(2.9)
        queued = (await job_api.job(job_id)).json()
        assert (queued["status"], queued["start_time"], queued["elapsed_time"]) == (
            "queued",
            None,
            None,
        )
        clock.advance(0.1 + 0.5)
        processing = (await job_api.job(job_id)).json()
        assert (processing["status"], processing["completed_rows"]) == ("processing", 10)
        assert processing["start_time"] == "2025-01-01T00:16:43.000Z"


async def test_a_submit_while_a_job_runs_is_409_then_accepted_once_it_completes(
    api, emulator, clock
):
    job_id = await submit(api, 100)
    clock.advance(4.9)
    conflict = api.error(await api.upload("users", api.ndjson(api.users(1, 500))), 409)
    assert conflict["error"] == "conflict"
    assert conflict["error_code"] == "job_in_progress"
    assert conflict["details"]["job_id"] == job_id
    # users and companies share the one-job rule
    companies = api.ndjson([{"company_id": "c1"}])
    assert api.error(await api.upload("companies", companies), 409)
    assert api.error(await api.bulk_json("users", [{"user_id": "x"}]), 409)
    assert len(emulator.jobs) == 1
    clock.advance(0.1)  # the 100th row completes at exactly 5 s
    again = await api.upload("users", api.ndjson(api.users(1, 500)))
    assert again.status_code == 202
    assert len(emulator.jobs) == 2


async def test_fail_next_jobs_makes_jobs_end_failed(api, emulator, clock):
    emulator.fail_next_jobs(1, reason="bad rows", after_rows=10)
    failing = await submit(api, 100)
    clock.advance(0.4)
    assert (await api.job(failing)).json()["status"] == "processing"
    clock.advance(0.2)
    failed = (await api.job(failing)).json()
    assert (failed["status"], failed["completed_rows"], failed["error"]) == (
        "failed",
        10,
        "bad rows",
    )
    assert failed["end_time"] == "2025-01-01T00:16:40.500Z"
    assert len(emulator.users) == 10  # the rows done before the failure were applied
    # failed is terminal: the next job is accepted, and completes normally
    ok = await submit(api, 1, start=1000)
    clock.advance(1)
    assert (await api.job(ok)).json()["status"] == "completed"


async def test_a_job_can_fail_immediately(api, emulator, clock):
    emulator.fail_next_jobs()
    job_id = await submit(api, 5)
    job = (await api.job(job_id)).json()
    assert (job["status"], job["completed_rows"]) == ("failed", 0)
    assert "injected" in job["error"]
    assert emulator.users == {}


def test_fail_next_jobs_refuses_nonsense():
    with pytest.raises(ValueError, match="count"):
        Emulator().fail_next_jobs(0)


async def test_listing_jobs_returns_the_accounts_jobs_in_submission_order(api, clock):
    first = await submit(api, 1)
    clock.advance(1)
    second = await submit(api, 1, start=1)
    response = await api.client.get("/v1/background_jobs")
    assert response.status_code == 200
    jobs = response.json()
    assert [job["job_id"] for job in jobs] == [first, second]
    assert [job["status"] for job in jobs] == ["completed", "processing"]


async def test_an_unknown_job_is_404(api):
    error = api.error(await api.job("no-such-job"), 404)
    assert error["error_code"] == "job_not_found"
    assert error["details"] == {"job_id": "no-such-job"}


async def test_ids_that_need_percent_encoding_round_trip(clock, make_client, api):
    counter = itertools.count(1)
    emulator = Emulator(
        clock=clock, job_id_factory=lambda: f"bulk:jobs:NX-{next(counter)}:abc/def ?#%é"
    )
    async with make_client(emulator) as client:
        job_api = type(api)(client)
        job_id = await submit(job_api, 3)
        assert job_id == "bulk:jobs:NX-1:abc/def ?#%é"
        response = await job_api.job(job_id)
        assert response.status_code == 200
        assert response.json()["job_id"] == job_id
        link = response.json()["links"]["self"]
        assert (
            link
            == "http://test/v1/background_jobs/bulk%3Ajobs%3ANX-1%3Aabc%2Fdef%20%3F%23%25%C3%A9"
        )
        assert emulator.requests[-1].path == "/v1/background_jobs/" + link.rsplit("/", 1)[1]
        # an unencoded "/" is a different path: not this job
        unencoded = await client.get(
            "/v1/background_jobs/bulk%3Ajobs%3ANX-1%3Aabc/def%20%3F%23%25%C3%A9"
        )
        assert unencoded.status_code == 404


async def test_a_reused_job_id_is_a_configuration_error(clock, make_client):
    emulator = Emulator(clock=clock, job_id_factory=lambda: "same")
    async with make_client(emulator) as client:
        await client.post("/v1/users/bulk_identify", json={"users": [{"user_id": "u"}]})
        clock.advance(10)
        with pytest.raises(RuntimeError, match="reused"):
            await client.post("/v1/users/bulk_identify", json={"users": [{"user_id": "u"}]})


async def test_job_times_follow_the_epoch_and_the_clock(clock, make_client):

    epoch = dt.datetime(2030, 6, 1, 12, 0, 0)  # naive: read as UTC
    emulator = Emulator(clock=clock, epoch=epoch)
    async with make_client(emulator) as client:
        response = await client.post("/v1/users/bulk_identify", json={"users": [{"user_id": "u"}]})
    assert response.json()["submitted_at"] == "2030-06-01T12:16:40.000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", response.json()["submitted_at"])


async def test_rows_per_minute_is_read_per_job(api, emulator, clock):
    emulator.rows_per_minute = 60_000  # 1000 rows/s
    job_id = await submit(api, 500)
    clock.advance(0.25)
    assert (await api.job(job_id)).json()["completed_rows"] == 250


async def test_jobs_are_inspectable_by_id(api, emulator, clock):
    job_id = await submit(api, 40)
    clock.advance(1)
    job = emulator.job(job_id)
    assert (job.status, job.completed_rows, job.total_rows, job.kind) == (
        "processing",
        20,
        40,
        "users",
    )
    assert emulator.jobs[job_id] is job
    with pytest.raises(KeyError):
        emulator.job("missing")
