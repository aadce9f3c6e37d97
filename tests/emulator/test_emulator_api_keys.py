"""The allow-list of keys: only the listed keys are accepted, any other is a 401 like the API's."""

from __future__ import annotations

import pytest

from analytex_async import AuthenticationError
from analytex_async.emulator import Emulator, run
from analytex_async.testing import EmulatedAnalytex

pytestmark = pytest.mark.anyio

ENDPOINTS = [
    ("POST", "/v1/identify", {"user_id": "u1"}),
    ("POST", "/v1/companies/identify", {"company_id": "c1"}),
    ("POST", "/v1/track", {"user_id": "u1", "event_name": "e"}),
    ("POST", "/v1/users/bulk_identify", {"users": [{"user_id": "u1"}]}),
    ("POST", "/v1/companies/bulk_identify", {"companies": [{"company_id": "c1"}]}),
    ("GET", "/v1/background_jobs", None),
    ("GET", "/v1/background_jobs/some-job", None),
    ("DELETE", "/v1/users", {"users": ["u1"]}),
    ("DELETE", "/v1/companies", {"companies": ["c1"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_an_unlisted_key_is_refused_on_every_endpoint_and_changes_nothing(
    clock, make_client, api, method, path, body
):
    emulator = Emulator(api_keys=["key-one", "key-two"], clock=clock)
    async with make_client(emulator, key="key-three") as stranger:
        response = await stranger.request(method, path, json=body)
    error = api.error(response, 401)
    assert (error["error"], error["error_code"]) == ("unauthorized", "invalid_api_key")
    assert error["message"] == "the API key is not valid"
    assert response.headers["www-authenticate"] == "Token"
    assert "key-three" not in response.text
    assert emulator.accounts == []
    assert emulator.requests[-1].status == 401
    assert emulator.requests[-1].account is None


async def test_every_listed_key_is_accepted_as_its_own_account(clock, make_client):
    emulator = Emulator(api_keys=("key-one", "key-two"), clock=clock)
    async with (
        make_client(emulator, key="key-one") as one,
        make_client(emulator, key="key-two") as two,
    ):
        assert (await one.post("/v1/identify", json={"user_id": "u1"})).status_code == 202
        assert (await two.post("/v1/identify", json={"user_id": "u2"})).status_code == 202
    assert set(emulator.account("key-one").users) == {"u1"}
    assert set(emulator.account("key-two").users) == {"u2"}


async def test_a_refused_key_that_looks_like_an_app_token_is_told_so(clock, make_client, api):
    emulator = Emulator(api_keys={"the-api-key"}, clock=clock)
    async with make_client(emulator, key="NX-98ii14b") as client:
        error = api.error(await client.post("/v1/identify", json={"user_id": "u1"}), 401)
    assert error["error_code"] == "invalid_api_key"
    assert "app token" in error["message"]
    assert "NX-98ii14b" not in error["message"]


async def test_the_client_sees_a_refused_key_as_an_authentication_error(clock):
    emulator = Emulator(api_keys={"the-right-key"}, clock=clock)
    async with EmulatedAnalytex(emulator, api_key="a-wrong-key", max_retries=0) as analytex:
        with pytest.raises(AuthenticationError) as raised:
            await analytex.client.identify("u1")
    assert raised.value.status_code == 401
    assert emulator.accounts == []
    async with EmulatedAnalytex(emulator, api_key="the-right-key") as analytex:
        await analytex.client.identify("u1")
    assert set(emulator.users) == {"u1"}


@pytest.mark.parametrize("keys", [[" padded"], ["padded\n"], ["ok", "\tpadded"]])
def test_a_key_with_surrounding_whitespace_is_refused_because_it_could_never_match(keys):
    with pytest.raises(ValueError, match="whitespace"):
        Emulator(api_keys=keys)


def test_run_refuses_api_keys_beside_a_configured_emulator():
    # The emulator's own setting would silently win: a person would think the list applies.
    with pytest.raises(ValueError, match="api_keys"):
        run(port=0, api_keys=["k"], emulator=Emulator())


def test_run_refuses_an_empty_key_before_serving():
    with pytest.raises(ValueError, match="non-empty"):
        run(port=0, api_keys=[""])
