"""identify, companies/identify and track: storage, validation, malformed bodies, rate."""

from __future__ import annotations

import pytest

from analytex_async.emulator import Emulator

pytestmark = pytest.mark.anyio


async def test_identify_merges_metadata_and_links_the_company(emulator, api):
    assert (await api.identify({"user_id": "u1", "metadata": {"a": 1, "b": 1}})).status_code == 202
    response = await api.identify(
        {
            "user_id": "u1",
            "metadata": {"b": 2, "nested": {"ok": True}},
            "company": {"id": "c1", "name": "Acme"},
        }
    )
    assert response.status_code == 202
    user = emulator.users["u1"]
    assert user.company_id == "c1"
    assert user.metadata == {"a": 1, "b": 2, "nested": {"ok": True}}  # objects fine in real time
    assert emulator.companies["c1"].metadata == {"name": "Acme"}


async def test_null_metadata_and_null_company_mean_absent(emulator, api):
    response = await api.identify({"user_id": "u1", "metadata": None, "company": None})
    assert response.status_code == 202
    assert emulator.users["u1"].metadata == {}
    assert emulator.users["u1"].company_id is None


async def test_identify_company_and_track_are_stored(emulator, api, clock):
    response = await api.client.post(
        "/v1/companies/identify", json={"company_id": "c9", "metadata": {"plan": "pro"}}
    )
    assert response.status_code == 202
    clock.advance(3)
    response = await api.track({"user_id": "u1", "event_name": "signed_up", "metadata": {"x": 1}})
    assert response.status_code == 202
    assert emulator.companies["c9"].metadata == {"plan": "pro"}
    [event] = emulator.events
    assert (event.user_id, event.event_name, event.metadata, event.time) == (
        "u1",
        "signed_up",
        {"x": 1},
        1003.0,
    )


@pytest.mark.parametrize(
    ("path", "body", "code", "field"),
    [
        ("/v1/identify", {}, "missing_user_id", "user_id"),
        ("/v1/identify", {"user_id": ""}, "missing_user_id", "user_id"),
        ("/v1/identify", {"user_id": 42}, "missing_user_id", "user_id"),
        ("/v1/identify", {"user_id": None}, "missing_user_id", "user_id"),
        ("/v1/identify", {"user_id": "u", "metadata": [1]}, "invalid_metadata", "metadata"),
        ("/v1/identify", {"user_id": "u", "metadata": "x"}, "invalid_metadata", "metadata"),
        ("/v1/identify", {"user_id": "u", "company": {}}, "company_without_id", "company.id"),
        (
            "/v1/identify",
            {"user_id": "u", "company": {"company_id": "c"}},
            "company_without_id",
            "company.id",
        ),
        (
            "/v1/identify",
            {"user_id": "u", "company": {"id": 7}},
            "company_without_id",
            "company.id",
        ),
        ("/v1/identify", {"user_id": "u", "company": "c1"}, "invalid_company", "company"),
        ("/v1/companies/identify", {"id": "c"}, "missing_company_id", "company_id"),
        (
            "/v1/companies/identify",
            {"company_id": "c", "metadata": 3},
            "invalid_metadata",
            "metadata",
        ),
        ("/v1/track", {"user_id": "u"}, "missing_event_name", "event_name"),
        ("/v1/track", {"event_name": "e"}, "missing_user_id", "user_id"),
        ("/v1/track", {"user_id": "u", "event_name": ""}, "missing_event_name", "event_name"),
        (
            "/v1/track",
            {"user_id": "u", "event_name": "e", "metadata": []},
            "invalid_metadata",
            "metadata",
        ),
    ],
)
async def test_invalid_real_time_bodies_are_400_naming_the_field(
    emulator, api, path, body, code, field
):
    error = api.error(await api.client.post(path, json=body), 400)
    assert error["error"] == "bad_request"
    assert error["error_code"] == code
    assert error["details"]["field"] == field
    assert field in error["message"]
    assert emulator.users == {}
    assert emulator.companies == {}
    assert emulator.events == []


@pytest.mark.parametrize(
    ("content", "content_type", "code"),
    [
        (b'{"user_id": "u1"', "application/json", "invalid_json"),
        (b"", "application/json", "invalid_json"),
        (b'{"user_id": "u1", "metadata": {"x": NaN}}', "application/json", "invalid_json"),
        (b'{"user_id": "\xff\xfe"}', "application/json", "invalid_utf8"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "invalid_json"),
        (b'["u1"]', "application/json", "invalid_payload"),
        (b"null", "application/json", "invalid_payload"),
        (b"user_id=u1", "application/x-www-form-urlencoded", "invalid_content_type"),
        (b'{"user_id": "u1"}', "text/plain", "invalid_content_type"),
        (b'{"user_id": "u1"}', "application/json; charset=latin-1", "invalid_content_type"),
        (b'{"user_id": "u1"}', None, "invalid_content_type"),
    ],
)
async def test_malformed_real_time_bodies_are_400_never_500(api, content, content_type, code):
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/v1/identify", "/v1/companies/identify", "/v1/track"):
        response = await api.client.post(path, content=content, headers=headers)
        assert api.error(response, 400)["error_code"] == code


async def test_a_huge_number_is_400_not_500(api):
    # Python >= 3.10.7 limits int-string digits: json.loads raises ValueError, caught as 400
    content = b'{"user_id": ' + b"1" * 5000 + b"}"
    response = await api.client.post(
        "/v1/identify", content=content, headers={"Content-Type": "application/json"}
    )
    api.error(response, 400)


async def test_json_errors_say_where(api):
    response = await api.client.post(
        "/v1/identify",
        content=b'{\n  "user_id": "u1",\n  oops\n}',
        headers={"Content-Type": "application/json"},
    )
    error = api.error(response, 400)
    assert error["details"]["line"] == 3
    assert "line 3" in error["message"]


async def test_a_json_content_type_with_utf8_charset_or_suffix_is_fine(api):
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = await api.client.post(
            "/v1/identify", content=b'{"user_id": "u1"}', headers={"Content-Type": content_type}
        )
        assert response.status_code == 202


async def test_the_601st_identify_within_60_seconds_is_429_and_track_is_counted_apart(
    emulator, api, clock
):
    for i in range(600):
        response = await api.identify({"user_id": f"u{i}"})
        assert response.status_code == 202
        clock.advance(0.05)  # 600 requests over 30 s
    error = api.error(await api.identify({"user_id": "one-too-many"}), 429)
    assert error["error"] == "too_many_requests"
    assert error["error_code"] == "rate_limited"
    assert error["details"]["rule"] == "identify"
    assert "retry-after" not in {
        name.lower() for name in (await api.identify({"user_id": "x"})).headers
    }
    # company identify shares the identify budget; track has its own
    assert (
        await api.client.post("/v1/companies/identify", json={"company_id": "c"})
    ).status_code == 429
    assert (await api.track({"user_id": "u", "event_name": "e"})).status_code == 202
    assert "one-too-many" not in emulator.users
    # the window slides: 60 s after the first request, one slot is free again
    clock.now = 1060.0
    assert (await api.identify({"user_id": "again"})).status_code == 202
    assert (await api.identify({"user_id": "again"})).status_code == 429
    clock.now = 1060.05
    assert (await api.identify({"user_id": "again"})).status_code == 202


async def test_track_has_its_own_600_per_minute(api):
    for _ in range(600):
        assert (await api.track({"user_id": "u", "event_name": "e"})).status_code == 202
    response = await api.track({"user_id": "u", "event_name": "e"})
    assert api.error(response, 429)["details"]["rule"] == "track"
    assert (await api.identify({"user_id": "u"})).status_code == 202


async def test_retry_after_is_sent_when_enabled(clock, make_client):
    emulator = Emulator(clock=clock, realtime_requests_per_minute=2, retry_after_header=True)
    async with make_client(emulator) as client:
        await client.post("/v1/identify", json={"user_id": "u"})
        clock.advance(10)
        await client.post("/v1/identify", json={"user_id": "u"})
        clock.advance(10.5)
        response = await client.post("/v1/identify", json={"user_id": "u"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "40"  # the first slot frees at 60 s


async def test_the_real_time_limit_can_be_switched_off(clock, make_client):
    emulator = Emulator(clock=clock, realtime_requests_per_minute=None)
    async with make_client(emulator) as client:
        for _ in range(700):
            assert (await client.post("/v1/identify", json={"user_id": "u"})).status_code == 202


async def test_the_limit_can_be_changed_on_a_running_emulator(emulator, api):
    emulator.realtime_requests_per_minute = 1
    assert (await api.identify({"user_id": "u"})).status_code == 202
    assert (await api.identify({"user_id": "u"})).status_code == 429
