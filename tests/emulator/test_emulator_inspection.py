"""The read-only inspection routes under /_emulator/: what a person at a terminal can see."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest

from analytex_async.emulator import Emulator

from .conftest import EPOCH

pytestmark = pytest.mark.anyio

SECRET = "sk-inspection-secret-0123456789"


async def test_a_user_is_shown_with_its_id_company_and_merged_metadata(api):
    await api.identify({"user_id": "u1", "metadata": {"plan": "free"}, "company": {"id": "c1"}})
    await api.identify({"user_id": "u1", "metadata": {"seats": 3}})
    await api.identify({"user_id": "u2"})
    response = await api.client.get("/_emulator/users/u1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "user_id": "u1",
        "company_id": "c1",
        "metadata": {"plan": "free", "seats": 3},
    }
    # a user the store knows no company for has no company_id field
    assert (await api.client.get("/_emulator/users/u2")).json() == {
        "user_id": "u2",
        "metadata": {},
    }


async def test_a_company_is_shown_with_its_id_and_metadata(api):
    await api.client.post(
        "/v1/companies/identify", json={"company_id": "c1", "metadata": {"tier": "gold"}}
    )
    response = await api.client.get("/_emulator/companies/c1")
    assert response.status_code == 200
    assert response.json() == {"company_id": "c1", "metadata": {"tier": "gold"}}


async def test_an_unknown_user_or_company_is_404_with_the_error_body(api):
    await api.identify({"user_id": "u1"})
    user = api.error(await api.client.get("/_emulator/users/nobody"), 404)
    assert user["error"] == "not_found"
    assert user["error_code"] == "user_not_found"
    assert user["details"] == {"user_id": "nobody"}
    assert "nobody" in user["message"]
    company = api.error(await api.client.get("/_emulator/companies/u1"), 404)
    assert company["error_code"] == "company_not_found"
    assert company["details"] == {"company_id": "u1"}


async def test_an_emulator_that_received_nothing_answers_404_and_empty_lists(api):
    api.error(await api.client.get("/_emulator/users/u1"), 404)
    assert (await api.client.get("/_emulator/events")).json() == []
    assert (await api.client.get("/_emulator/jobs")).json() == []


async def test_an_id_that_needs_percent_encoding_is_found(api):
    await api.identify({"user_id": "a/b c?", "company": {"id": "x%y"}})
    user = await api.client.get(f"/_emulator/users/{quote('a/b c?', safe='')}")
    assert user.json()["user_id"] == "a/b c?"
    company = await api.client.get(f"/_emulator/companies/{quote('x%y', safe='')}")
    assert company.json() == {"company_id": "x%y", "metadata": {}}


async def test_users_and_companies_are_searched_in_every_keys_store(emulator, make_client):
    async with make_client(emulator, key="key-a") as a, make_client(emulator, key="key-b") as b:
        await a.post("/v1/identify", json={"user_id": "ua"})
        await b.post("/v1/identify", json={"user_id": "ub", "company": {"id": "cb"}})
        await a.post("/v1/identify", json={"user_id": "both", "metadata": {"from": "a"}})
        await b.post("/v1/identify", json={"user_id": "both", "metadata": {"from": "b"}})
    async with make_client(emulator, key=None) as person:
        assert (await person.get("/_emulator/users/ua")).status_code == 200
        assert (await person.get("/_emulator/users/ub")).json()["company_id"] == "cb"
        assert (await person.get("/_emulator/companies/cb")).status_code == 200
        # the same id in two accounts: the first key to contact the emulator answers
        assert (await person.get("/_emulator/users/both")).json()["metadata"] == {"from": "a"}


async def test_events_of_every_key_are_listed_oldest_first_with_their_own_fields(
    emulator, make_client, clock
):
    async with make_client(emulator, key="key-a") as a, make_client(emulator, key="key-b") as b:
        await a.post("/v1/track", json={"user_id": "u1", "event_name": "signed_up"})
        clock.advance(2.5)
        await b.post(
            "/v1/track",
            json={"user_id": "u2", "event_name": "paid", "metadata": {"amount": 10}},
        )
        clock.advance(1)
        await a.post("/v1/track", json={"user_id": "u1", "event_name": "logged_in"})
        response = await a.get("/_emulator/events")
    assert response.status_code == 200
    start = EPOCH.timestamp() + 1000.0
    assert response.json() == [
        {"user_id": "u1", "event_name": "signed_up", "metadata": {}, "time": _iso(start)},
        {
            "user_id": "u2",
            "event_name": "paid",
            "metadata": {"amount": 10},
            "time": _iso(start + 2.5),
        },
        {"user_id": "u1", "event_name": "logged_in", "metadata": {}, "time": _iso(start + 3.5)},
    ]


async def test_jobs_of_every_key_are_shown_as_the_job_endpoints_show_them(
    emulator, make_client, clock
):
    async with make_client(emulator, key="key-a") as a, make_client(emulator, key="key-b") as b:
        first = await a.post("/v1/users/bulk_identify", json={"users": [{"user_id": "x"}]})
        clock.advance(1)
        second = await b.post(
            "/v1/companies/bulk_identify",
            files={"file": ("c.ndjson", b'{"company_id": "c"}\n' * 40, "application/x-ndjson")},
        )
        clock.advance(1)  # a's 1-row job is done at 1,200 rows/min; b's is at 20 of 40
        listed = (await a.get("/_emulator/jobs")).json()
        own_a = (await a.get(f"/v1/background_jobs/{first.json()['job_id']}")).json()
        own_b = (await b.get(f"/v1/background_jobs/{second.json()['job_id']}")).json()
    assert listed == [own_a, own_b]
    assert [job["status"] for job in listed] == ["completed", "processing"]
    assert listed[1]["completed_rows"] == 20
    assert listed[1]["filename"] == "c.ndjson"
    assert listed[0]["links"]["self"].startswith("http://test/v1/background_jobs/")


async def test_a_failed_job_shows_its_error(emulator, api, clock):
    emulator.fail_next_jobs(reason="disk full")
    await api.bulk_json("users", [{"user_id": "x"}])
    clock.advance(5)
    [job] = (await api.client.get("/_emulator/jobs")).json()
    assert (job["status"], job["error"]) == ("failed", "disk full")


async def test_the_routes_need_no_key_and_never_show_one(clock, make_client):
    emulator = Emulator(api_keys={SECRET, "NX-other"}, clock=clock, epoch=EPOCH)
    async with make_client(emulator, key=SECRET) as client:
        await client.post("/v1/identify", json={"user_id": "u1", "company": {"id": "c1"}})
        await client.post("/v1/track", json={"user_id": "u1", "event_name": "e"})
        await client.post("/v1/users/bulk_identify", json={"users": [{"user_id": "u2"}]})
    label = emulator.account(SECRET).label
    async with make_client(emulator, key=None) as anonymous:
        answers = [
            await anonymous.get(path)
            for path in (
                "/_emulator/users/u1",
                "/_emulator/companies/c1",
                "/_emulator/events",
                "/_emulator/jobs",
                "/_emulator/users/nobody",
            )
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 404]
    for answer in answers:
        text = answer.text + repr(answer.headers)
        assert SECRET not in text
        assert "NX-other" not in text
        assert label not in text  # the account label is derived from the key: not shown either


async def test_a_wrong_key_sent_to_an_inspection_route_is_ignored_not_refused(clock, make_client):
    emulator = Emulator(api_keys={"good"}, clock=clock)
    async with make_client(emulator, key="good") as good, make_client(emulator, key="bad") as bad:
        await good.post("/v1/identify", json={"user_id": "u1"})
        assert (await bad.get("/_emulator/users/u1")).status_code == 200
    assert len(emulator.accounts) == 1  # the wrong key did not become an account


async def test_inspecting_consumes_no_rate_budget_takes_no_fault_and_is_not_logged(
    clock, make_client
):
    emulator = Emulator(clock=clock, realtime_requests_per_minute=1)
    everything = emulator.faults.add(re.compile(r".*"), status=503, times=None, method="GET")
    async with make_client(emulator) as client:
        for _ in range(5):
            assert (await client.get("/_emulator/events")).status_code == 200
            assert (await client.get("/_emulator/jobs")).status_code == 200
            assert (await client.get("/_emulator/users/u1")).status_code == 404
        assert emulator.requests == []
        assert everything.hits == 0
        # the one identify the rate allows is still there after all that looking
        assert (
            await client.post("/v1/track", json={"user_id": "u", "event_name": "e"})
        ).status_code == 202
        assert (await client.post("/v1/identify", json={"user_id": "u1"})).status_code == 202
        assert (await client.post("/v1/identify", json={"user_id": "u2"})).status_code == 429
        # and the API itself is still faulted as asked
        assert (await client.get("/v1/background_jobs")).status_code == 503
    assert [r.path for r in emulator.requests] == [
        "/v1/track",
        "/v1/identify",
        "/v1/identify",
        "/v1/background_jobs",
    ]
    assert everything.hits == 1


async def test_the_routes_are_read_only_and_unknown_ones_get_the_error_body(emulator, api):
    await api.identify({"user_id": "u1"})
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await api.client.request(method, "/_emulator/users/u1")
        assert api.error(response, 405)["error_code"] == "method_not_allowed"
        assert "GET" in response.headers["allow"]
    assert api.error(await api.client.post("/_emulator/jobs"), 405)
    assert api.error(await api.client.get("/_emulator/"), 404)["error_code"] == "not_found"
    assert api.error(await api.client.get("/_emulator/requests"), 404)
    assert api.error(await api.client.get("/_emulator/events/"), 404)
    assert set(emulator.users) == {"u1"}


def _iso(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_users_and_companies_are_listed_in_pages_across_every_account(emulator, make_client):
    async with make_client(emulator, key="key-a") as a, make_client(emulator, key="key-b") as b:
        for n in range(7):
            await (a if n % 2 else b).post(
                "/v1/identify", json={"user_id": f"u{n}", "company": {"id": f"c{n % 3}"}}
            )
        await a.post("/v1/identify", json={"user_id": "u1", "metadata": {"again": True}})
    # in the order stored: every account in order of first contact (b first), then its users
    stored = [f"u{n}" for n in (0, 2, 4, 6, 1, 3, 5)]
    async with make_client(emulator, key=None) as person:
        everything = (await person.get("/_emulator/users")).json()
        assert everything["count"] == 7
        assert (everything["limit"], everything["offset"]) == (100, 0)
        assert [user["user_id"] for user in everything["users"]] == stored
        assert everything["users"][4] == {
            "user_id": "u1",
            "company_id": "c1",
            "metadata": {"again": True},
        }
        for limit in (1, 2, 3, 7, 8):
            pages = [
                (await person.get(f"/_emulator/users?limit={limit}&offset={offset}")).json()
                for offset in range(0, 9, limit)
            ]
            assert {page["count"] for page in pages} == {7}  # the total, not the page's length
            assert [page["offset"] for page in pages] == list(range(0, 9, limit))
            assert all(len(page["users"]) <= limit for page in pages)
            assert [u["user_id"] for page in pages for u in page["users"]] == stored
        companies = (await person.get("/_emulator/companies?limit=2&offset=1")).json()
    assert companies == {
        "count": 6,  # c0, c2, c1 in b's account; c1, c0, c2 in a's
        "limit": 2,
        "offset": 1,
        "companies": [{"company_id": "c2", "metadata": {}}, {"company_id": "c1", "metadata": {}}],
    }


@pytest.mark.parametrize(
    ("query", "name", "words"),
    [
        ("limit=0", "limit", "limit must be a whole number from 1 to 10,000, got '0'"),
        ("limit=10001", "limit", "from 1 to 10,000"),
        ("limit=ten", "limit", "got 'ten'"),
        ("limit=", "limit", "got ''"),
        ("offset=-1", "offset", "offset must be a whole number from 0, got '-1'"),
        ("offset=1.5", "offset", "got '1.5'"),
    ],
)
@pytest.mark.parametrize("listing", ["users", "companies"])
async def test_a_bad_limit_or_offset_is_a_400_naming_it(api, listing, query, name, words):
    error = api.error(await api.client.get(f"/_emulator/{listing}?{query}"), 400)
    assert error["error_code"] == f"invalid_{name}"
    assert words in error["message"]


async def test_an_empty_store_lists_no_users_or_companies(api):
    assert (await api.client.get("/_emulator/users")).json() == {
        "count": 0,
        "limit": 100,
        "offset": 0,
        "users": [],
    }
    page = (await api.client.get("/_emulator/companies?offset=50")).json()
    assert (page["count"], page["offset"], page["companies"]) == (0, 50, [])
