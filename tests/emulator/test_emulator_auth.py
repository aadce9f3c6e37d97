"""Authentication, accounts, the error body, unknown routes, and what is never logged."""

from __future__ import annotations

import logging

import pytest

from analytex_async.emulator import Emulator

pytestmark = pytest.mark.anyio


async def test_missing_authorization_is_401_with_the_error_body(emulator, make_client, api):
    async with make_client(emulator, key=None) as anonymous:
        response = await anonymous.post("/v1/identify", json={"user_id": "u1"})
    error = api.error(response, 401)
    assert error["error"] == "unauthorized"
    assert error["error_code"] == "missing_api_key"
    assert response.headers["www-authenticate"] == "Token"
    assert emulator.users == {}


@pytest.mark.parametrize("header", ["Bearer abc", "Token", "Token   ", "abc", "Basic dXNlcjpwYXNz"])
async def test_a_malformed_authorization_header_is_401(emulator, make_client, api, header):
    async with make_client(emulator, key=None) as client:
        response = await client.post(
            "/v1/identify", json={"user_id": "u1"}, headers={"Authorization": header}
        )
    assert api.error(response, 401)["error_code"] == "invalid_authorization"


async def test_any_non_empty_key_is_accepted_by_default(emulator, make_client):
    async with make_client(emulator, key="whatever") as client:
        response = await client.post("/v1/identify", json={"user_id": "u1"})
    assert response.status_code == 202
    assert response.content == b""


async def test_the_scheme_is_case_insensitive(emulator, make_client):
    async with make_client(emulator, key=None) as client:
        response = await client.post(
            "/v1/identify", json={"user_id": "u1"}, headers={"Authorization": "token k1"}
        )
    assert response.status_code == 202


async def test_only_listed_keys_are_accepted_when_api_keys_is_given(clock, make_client, api):
    emulator = Emulator(api_keys={"good"}, clock=clock)
    async with make_client(emulator, key="bad") as bad, make_client(emulator, key="good") as good:
        assert api.error(await bad.get("/v1/background_jobs"), 401)["error_code"] == (
            "invalid_api_key"
        )
        assert (await good.get("/v1/background_jobs")).status_code == 200
    with pytest.raises(KeyError):
        emulator.account("bad")


async def test_each_key_is_its_own_account(emulator, make_client, api):
    async with make_client(emulator, key="key-a") as a, make_client(emulator, key="key-b") as b:
        await a.post("/v1/identify", json={"user_id": "ua"})
        await b.post("/v1/identify", json={"user_id": "ub"})
        submitted = await a.post("/v1/users/bulk_identify", json={"users": [{"user_id": "x"}]})
        job_id = submitted.json()["job_id"]
        # the job is a's: b does not see it, and b may submit while a's job runs
        assert api.error(await b.get(f"/v1/background_jobs/{job_id}"), 404)["error_code"] == (
            "job_not_found"
        )
        assert (await b.get("/v1/background_jobs")).json() == []
        other = await b.post("/v1/users/bulk_identify", json={"users": [{"user_id": "y"}]})
        assert other.status_code == 202
    assert set(emulator.account("key-a").users) == {"ua"}
    assert set(emulator.account("key-b").users) == {"ub"}
    assert len(emulator.accounts) == 2
    with pytest.raises(LookupError, match=r"emulator\.account"):
        _ = emulator.users


async def test_unknown_path_and_wrong_method_get_the_error_body(api):
    error = api.error(await api.client.get("/v1/nothing-here"), 404)
    assert error["error_code"] == "not_found"
    response = await api.client.get("/v1/identify")
    assert api.error(response, 405)["error_code"] == "method_not_allowed"
    assert "POST" in response.headers["allow"]
    # no redirect for a trailing slash: a client bug should show as an error
    assert api.error(await api.client.post("/v1/identify/", json={}), 404)


async def test_the_api_key_never_appears_in_logs_or_the_request_log(emulator, make_client, caplog):
    secret = "sk-very-secret-key-0123456789"
    caplog.set_level(logging.DEBUG, logger="analytex_async.emulator")
    async with make_client(emulator, key=secret) as client:
        await client.post("/v1/identify", json={"user_id": "u1"})
        await client.post("/v1/users/bulk_identify", json={"users": [{"user_id": "u2"}]})
        await client.post("/v1/identify", json={})
    assert caplog.records, "the emulator logs each request at DEBUG"
    assert secret not in caplog.text
    assert secret not in repr(emulator.requests)
    assert all("authorization" not in r.headers for r in emulator.requests)
    assert secret not in repr(emulator.account(secret))
    assert secret not in repr(emulator.accounts) + repr(emulator.jobs)


async def test_requests_are_logged_with_time_records_and_size(emulator, api, clock):
    await api.identify({"user_id": "u1"})
    clock.advance(1.5)
    body = api.ndjson(api.users(3))
    await api.upload("users", body)
    await api.client.get("/v1/nothing")
    first, second, third = emulator.requests
    assert (first.method, first.path, first.status, first.records) == (
        "POST",
        "/v1/identify",
        202,
        1,
    )
    assert first.time == 1000.0
    assert second.time == 1001.5
    assert second.records == 3
    assert second.body_size > len(body)
    assert second.account == first.account
    assert first.account.startswith("acct-")
    assert third.status == 404
    assert third.account is None
    assert third.records is None
    assert first.headers["content-type"] == "application/json"


async def test_reset_forgets_everything_but_the_settings(emulator, api):
    await api.identify({"user_id": "u1"})
    emulator.faults.add("/v1/track", status=500)
    emulator.fail_next_jobs()
    emulator.reset()
    assert emulator.users == {}
    assert emulator.requests == []
    assert len(emulator.faults) == 0
    response = await api.bulk_json("users", [{"user_id": "u"}])
    assert response.status_code == 202
    assert emulator.max_records == 10_000


async def test_the_default_clock_is_read_lazily_inside_the_event_loop(make_client):
    emulator = Emulator()  # anyio.current_time: constructed outside any loop use
    async with make_client(emulator) as client:
        response = await client.post("/v1/users/bulk_identify", json={"users": [{"user_id": "u"}]})
        assert response.status_code == 202
        assert response.json()["submitted_at"].endswith("Z")
    assert emulator.requests[0].time > 0


def test_inspection_outside_an_event_loop_shows_the_last_state():
    emulator = Emulator()
    assert emulator.users == {}
    assert emulator.jobs == {}
    assert emulator.events == []
    assert emulator.account("k").users == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_keys": []},
        {"api_keys": [""]},
        {"rows_per_minute": 0},
        {"realtime_requests_per_minute": 0},
        {"delete_interval": -1},
        {"max_records": 0},
        {"max_bytes": 0},
        {"queue_delay": -0.1},
    ],
)
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by setting
        Emulator(**kwargs)


def test_api_keys_must_not_be_a_single_string():
    with pytest.raises(TypeError):
        Emulator(api_keys="abc")
