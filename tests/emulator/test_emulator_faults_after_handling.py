"""Faults with after_handling=True: the request is handled, then its answer is lost or late."""

from __future__ import annotations

import json

import anyio
import pytest

from analytex_async.emulator import ConnectionDropped, Emulator

from ..conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

EVENT = {
    "event_type": "track",
    "user_id": "u1",
    "event_name": "e",
    "source": "backend-http-import",
    "inserted_at": "2024-07-28T08:55:35Z",
}


async def import_file(api, filename="import-1-1.ndjson"):
    data = json.dumps(EVENT).encode() + b"\n"
    return await api.client.post(
        "/v1/imports", files={"file": (filename, data, "application/x-ndjson")}
    )


async def test_a_dropped_answer_after_handling_leaves_the_job_created(api, emulator):
    fault = emulator.faults.add("/v1/imports", drop_connection=True, after_handling=True)
    with pytest.raises(ConnectionDropped):
        await import_file(api)
    # the server did the work: the job exists, with the upload's file name
    [job] = emulator.jobs.values()
    assert (job.filename, job.type) == ("import-1-1.ndjson", "import")
    entry = emulator.requests[-1]
    assert (entry.status, entry.records, entry.fault) == (None, 1, fault)
    # the client can find it by file name, and a resend meets the import slot
    listed = (await api.client.get("/v1/background_jobs")).json()
    assert [j["job_id"] for j in listed if j["filename"] == "import-1-1.ndjson"] == [job.job_id]
    assert (await import_file(api)).status_code == 409


async def test_a_dropped_answer_after_a_bulk_submit(api, emulator):
    emulator.faults.add("/v1/users/bulk_identify", drop_connection=True, after_handling=True)
    with pytest.raises(ConnectionDropped):
        await api.upload("users", api.ndjson(api.users(3)), filename="batch-7.ndjson")
    [job] = emulator.jobs.values()
    assert (job.filename, job.total_rows) == ("batch-7.ndjson", 3)


async def test_a_dropped_answer_after_an_identify_keeps_the_user_and_counts_the_rate(api, emulator):
    emulator.realtime_requests_per_minute = 1
    emulator.faults.add("/v1/identify", drop_connection=True, after_handling=True)
    with pytest.raises(ConnectionDropped):
        await api.identify({"user_id": "u1"})
    assert "u1" in emulator.users
    assert (await api.identify({"user_id": "u2"})).status_code == 429


async def test_an_answer_refused_before_its_body_was_read_is_dropped_cleanly(clock, make_client):
    # a 413 on Content-Length alone leaves the body unread: it is drained before the drop
    emulator = Emulator(clock=clock, max_bytes=100)
    emulator.faults.add("/v1/imports", drop_connection=True, after_handling=True)
    async with make_client(emulator) as client:
        with pytest.raises(ConnectionDropped):
            await client.post(
                "/v1/imports", files={"file": ("e.ndjson", b"x" * 500, "application/x-ndjson")}
            )
    assert emulator.jobs == {}


async def test_a_status_after_handling_replaces_the_answer(api, emulator):
    emulator.faults.add("/v1/imports", status=502, after_handling=True)
    response = await import_file(api)
    error = api.error(response, 502)
    assert error["error_code"] == "injected_fault"
    assert len(emulator.jobs) == 1  # handled all the same
    assert emulator.requests[-1].status == 502


async def test_a_drop_after_handling_can_show_a_chosen_status(api, emulator):
    emulator.faults.add("/v1/imports", drop_connection=True, status=504, after_handling=True)
    with pytest.raises(ConnectionDropped):
        await import_file(api)
    assert len(emulator.jobs) == 1


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_a_delay_after_handling_holds_the_answer_of_a_handled_request(api, emulator):
    # trio's MockClock with autojump: the stall and the cancellation cost no real time.
    emulator.faults.add("/v1/imports", delay=60, after_handling=True)
    with anyio.move_on_after(30) as scope:
        await import_file(api)
    assert scope.cancelled_caught  # the caller gave up waiting: a read timeout
    assert len(emulator.jobs) == 1  # but the server had created the job first
    assert emulator.requests[-1].status is None


@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_a_delay_after_handling_then_answers_as_handled(api, emulator):
    emulator.faults.add("/v1/imports", delay=5, after_handling=True)
    started = anyio.current_time()
    response = await import_file(api)
    assert response.status_code == 200
    assert anyio.current_time() - started >= 5
    assert response.json()["job_id"] in emulator.jobs
    assert "x-request-id" in response.headers


def test_after_handling_alone_does_nothing_and_is_refused():
    with pytest.raises(ValueError, match="needs a status"):
        Emulator().faults.add("/v1/imports", after_handling=True)
