"""x-request-id: on every response (success, error, fault, inspection), in the request log."""

from __future__ import annotations

import itertools
import re

import pytest

from analytex_async.emulator import ConnectionDropped, Emulator

from .conftest import Api

pytestmark = pytest.mark.anyio

VENDOR_SHAPE = re.compile(r"[A-Za-z0-9]{20}")


async def test_every_answer_carries_a_fresh_request_id_in_the_vendors_shape(api, emulator):
    responses = [
        await api.identify({"user_id": "u"}),  # 202
        await api.identify({}),  # 400
        await api.client.get("/v1/background_jobs"),  # 200
        await api.job("nope"),  # 404
        await api.client.get("/v1/nowhere"),  # 404 from routing
        await api.client.put("/v1/identify"),  # 405
        await api.bulk_json("users", api.users(1)),  # 202
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(VENDOR_SHAPE.fullmatch(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)
    # the request log holds the id each request was answered with
    assert [entry.request_id for entry in emulator.requests] == ids


async def test_401_and_429_answers_carry_one(emulator, make_client):
    emulator.realtime_requests_per_minute = 1
    async with make_client(emulator, key=None) as anonymous:
        assert "x-request-id" in (await anonymous.post("/v1/identify", json={})).headers
    async with make_client(emulator) as client:
        await client.post("/v1/track", json={"user_id": "u", "event_name": "e"})
        limited = await client.post("/v1/track", json={"user_id": "u", "event_name": "e"})
    assert limited.status_code == 429
    assert "x-request-id" in limited.headers


async def test_fault_answers_carry_one_unless_the_fault_sets_its_own(api, emulator):
    emulator.faults.add("/v1/identify", status=503)
    emulator.faults.add("/v1/identify", status=500, headers={"X-Request-Id": "from-the-test"})
    first = await api.identify({"user_id": "u"})
    assert VENDOR_SHAPE.fullmatch(first.headers["x-request-id"])
    second = await api.identify({"user_id": "u"})
    assert second.headers.get_list("x-request-id") == ["from-the-test"]


async def test_inspection_routes_carry_one_and_are_still_not_logged(api, emulator):
    for path in ("/_emulator/events", "/_emulator/jobs", "/_emulator/users/nobody"):
        response = await api.client.get(path)
        assert VENDOR_SHAPE.fullmatch(response.headers["x-request-id"]), path
    assert emulator.requests == []


async def test_request_id_factory_makes_them_predictable(clock, make_client):
    counter = itertools.count(1)
    emulator = Emulator(clock=clock, request_id_factory=lambda: f"req-{next(counter)}")
    async with make_client(emulator) as client:
        api = Api(client)
        assert (await api.identify({"user_id": "u"})).headers["x-request-id"] == "req-1"
        assert (await api.identify({})).headers["x-request-id"] == "req-2"
    assert [entry.request_id for entry in emulator.requests] == ["req-1", "req-2"]


async def test_a_dropped_request_is_logged_with_the_id_it_would_have_had(api, emulator):
    emulator.faults.add("/v1/identify", drop_connection=True)
    with pytest.raises(ConnectionDropped):
        await api.identify({"user_id": "u"})
    assert VENDOR_SHAPE.fullmatch(emulator.requests[-1].request_id or "")
