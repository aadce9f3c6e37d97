"""DELETE /v1/users and /v1/companies: the store, validation, one request per interval."""

from __future__ import annotations

import pytest

from analytex_async.emulator import Emulator

pytestmark = pytest.mark.anyio


async def delete(client, kind, ids):
    return await client.request("DELETE", f"/v1/{kind}", json={kind: ids})


async def test_delete_users_and_companies(api, emulator, clock):
    await api.identify({"user_id": "u1", "company": {"id": "c1"}})
    await api.identify({"user_id": "u2"})
    response = await delete(api.client, "users", ["u1", "never-seen"])
    assert response.status_code == 202
    assert set(emulator.users) == {"u2"}
    assert emulator.account("test-key").deleted_users == ["u1", "never-seen"]
    clock.advance(2)
    assert (await delete(api.client, "companies", ["c1"])).status_code == 202
    assert emulator.companies == {}
    assert emulator.account("test-key").deleted_companies == ["c1"]
    assert emulator.requests[-1].records == 1


async def test_a_second_delete_within_the_interval_is_429(api, clock):
    assert (await delete(api.client, "users", ["u1"])).status_code == 202
    clock.advance(1.9)
    error = api.error(await delete(api.client, "companies", ["c1"]), 429)
    assert error["error_code"] == "rate_limited"
    assert error["details"]["rule"] == "delete"
    clock.advance(0.1)  # 2.0 s after the accepted one; the refused one did not count
    assert (await delete(api.client, "users", ["u1"])).status_code == 202


async def test_the_delete_interval_can_be_switched_off(clock, make_client):
    emulator = Emulator(clock=clock, delete_interval=None)
    async with make_client(emulator) as client:
        for _ in range(3):
            assert (await delete(client, "users", ["u"])).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"users": []},
        {"users": "u1"},
        {"users": ["u1", ""]},
        {"users": [1]},
        {"ids": ["u1"]},
        ["u1"],
    ],
)
async def test_an_invalid_delete_body_is_400(api, body):
    response = await api.client.request("DELETE", "/v1/users", json=body)
    assert api.error(response, 400)["error_code"] in {"invalid_payload", "invalid_id"}


async def test_a_delete_without_a_body_is_400(api):
    response = await api.client.request("DELETE", "/v1/users")
    assert api.error(response, 400)["error_code"] == "invalid_content_type"
