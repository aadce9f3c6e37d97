"""Fault injection: status, body, headers, delay, times, method, patterns, dropped connections."""

from __future__ import annotations

import re

import anyio
import pytest
import trio
import trio.testing

from analytex_async.emulator import ConnectionDropped, Emulator

from ..conftest import trio_mock_clock

pytestmark = pytest.mark.anyio


async def test_a_status_fault_answers_the_next_request_with_the_error_body(api, emulator):
    fault = emulator.faults.add("/v1/identify", status=503)
    error = api.error(await api.identify({"user_id": "u1"}), 503)
    assert (error["error"], error["error_code"]) == ("service_unavailable", "injected_fault")
    assert (fault.hits, fault.remaining) == (1, 0)
    # faulted requests change nothing; the next one is handled normally
    assert emulator.users == {}
    assert (await api.identify({"user_id": "u1"})).status_code == 202
    assert "u1" in emulator.users
    assert emulator.requests[0].fault is fault
    assert emulator.requests[1].fault is None


async def test_times_counts_down_and_none_means_until_removed(api, emulator):
    emulator.faults.add("/v1/track", status=500, times=2)
    body = {"user_id": "u", "event_name": "e"}
    assert [(await api.track(body)).status_code for _ in range(3)] == [500, 500, 202]
    forever = emulator.faults.add("/v1/track", status=502, times=None)
    assert [(await api.track(body)).status_code for _ in range(4)] == [502] * 4
    emulator.faults.remove(forever)
    assert (await api.track(body)).status_code == 202


async def test_headers_and_custom_bodies(api, emulator):
    emulator.faults.add("/v1/identify", status=429, headers={"Retry-After": "7"})
    emulator.faults.add("/v1/identify", status=500, body="upstream exploded")
    emulator.faults.add("/v1/identify", status=502, body=b"")
    emulator.faults.add("/v1/identify", status=400, body={"errors": [{"message": "odd"}]})
    emulator.faults.add("/v1/identify", status=202, body=b"ok", headers={"Content-Type": "x/y"})
    first = await api.identify({"user_id": "u"})
    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    assert first.json()["errors"][0]["error"] == "too_many_requests"
    plain = await api.identify({"user_id": "u"})
    assert (plain.status_code, plain.text) == (500, "upstream exploded")
    assert plain.headers["content-type"].startswith("text/plain")
    empty = await api.identify({"user_id": "u"})
    assert (empty.status_code, empty.content) == (502, b"")
    custom = await api.identify({"user_id": "u"})
    assert custom.json() == {"errors": [{"message": "odd"}]}
    typed = await api.identify({"user_id": "u"})
    assert (typed.status_code, typed.content, typed.headers["content-type"]) == (202, b"ok", "x/y")


async def test_faults_match_method_and_patterns(api, emulator):
    emulator.faults.add(
        re.compile(r"/v1/background_jobs(/.*)?"), status=500, method="get", times=None
    )
    assert (await api.client.get("/v1/background_jobs")).status_code == 500
    assert (await api.job("anything")).status_code == 500
    assert (await api.client.post("/v1/background_jobs")).status_code == 405  # not GET
    emulator.faults.clear()
    emulator.faults.add("/v1/users/bulk_identify", status=500, method="DELETE")
    assert (await api.bulk_json("users", [{"user_id": "u"}])).status_code == 202


async def test_a_fault_acts_before_authentication(emulator, make_client):
    emulator.faults.add("/v1/identify", status=503)
    async with make_client(emulator, key=None) as anonymous:
        assert (await anonymous.post("/v1/identify", json={})).status_code == 503


async def test_a_faulted_request_does_not_count_toward_the_rate(api, emulator):
    emulator.realtime_requests_per_minute = 1
    emulator.faults.add("/v1/identify", status=500)
    assert (await api.identify({"user_id": "u"})).status_code == 500
    assert (await api.identify({"user_id": "u"})).status_code == 202


# trio's MockClock with autojump: the stall and the timeout that cuts it cost no real time.
@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_a_delay_stalls_the_request_through_anyio_sleep(api, emulator):
    emulator.faults.add("/v1/identify", delay=30)
    with anyio.move_on_after(29) as scope:
        await api.identify({"user_id": "slow"})
    assert scope.cancelled_caught  # still sleeping: the delay is real and cancellable
    emulator.faults.add("/v1/identify", delay=0.01)
    assert (await api.identify({"user_id": "u2"})).status_code == 202  # then handled normally
    assert "u2" in emulator.users


async def test_a_delay_with_a_status(api, emulator):
    emulator.faults.add("/v1/identify", delay=0.01, status=504)
    api.error(await api.identify({"user_id": "u"}), 504)


async def test_a_dropped_connection_raises_into_an_in_process_client(api, emulator):
    emulator.faults.add("/v1/users/bulk_identify", drop_connection=True)
    with pytest.raises(ConnectionDropped):
        await api.bulk_json("users", [{"user_id": "u"}])
    assert emulator.requests[-1].status is None
    assert emulator.jobs == {}
    assert (await api.bulk_json("users", [{"user_id": "u"}])).status_code == 202


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"status": 42}, {"status": 500, "times": 0}, {"delay": -1}],
)
def test_a_fault_that_would_do_nothing_or_is_out_of_range_is_refused(kwargs):
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies
        Emulator().faults.add("/v1/identify", **kwargs)


def test_faults_are_listed():
    emulator = Emulator()
    fault = emulator.faults.add("/v1/identify", status=500)
    assert list(emulator.faults) == [fault]
    assert len(emulator.faults) == 1


def test_a_delay_follows_a_mocked_event_loop_clock(emulator, make_client):
    # trio's MockClock with autojump: an hour-long delay passes instantly in real time.
    emulator.faults.add("/v1/identify", delay=3600, status=504)

    async def scenario():
        async with make_client(emulator) as client:
            started = trio.current_time()
            response = await client.post("/v1/identify", json={"user_id": "u"})
            return response.status_code, trio.current_time() - started

    status, waited = trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    assert status == 504
    assert waited >= 3600
