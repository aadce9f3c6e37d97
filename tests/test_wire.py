"""What goes over the wire for every call: method, path, headers and exact JSON bodies."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone

import httpx
import pytest
import respx

import analytex_async
from analytex_async import AsyncAnalytex, Company, Job, JobStatus, User

from .conftest import API_KEY

pytestmark = pytest.mark.anyio

JOB = {
    "job_id": "9536d797-7039-4d30-8c11-ac437367d732",
    "status": "queued",
    "submitted_at": "2025-02-02T12:34:56Z",
}


def body_of(route: respx.Route, call: int = -1) -> object:
    return json.loads(route.calls[call].request.content)


async def test_every_request_carries_the_documented_headers(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    route = router.post("/v1/identify").respond(202)
    await client.identify("user_001")
    headers = route.calls.last.request.headers
    assert headers["authorization"] == f"Token {API_KEY}"
    assert headers["x-api-version"] == "2020-09-22"
    assert headers["accept"] == "application/json, text/plain, */*"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == (
        f"analytex-async/{analytex_async.__version__} python/{platform.python_version()} "
        f"httpx/{httpx.__version__}"
    )


async def test_identify_sends_the_seed_example_exactly(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    route = router.post("/v1/identify").respond(202)
    await client.identify(
        "user_001",
        metadata={"name": "Jane Doe", "email": "jane@example.com"},
        company={"id": "company_001"},
    )
    assert body_of(route) == {
        "user_id": "user_001",
        "metadata": {"name": "Jane Doe", "email": "jane@example.com"},
        "company": {"id": "company_001"},
    }


@pytest.mark.parametrize(
    ("company", "wire"),
    [
        ("c1", {"id": "c1"}),
        (Company("c1", metadata={"name": "Acme"}), {"id": "c1", "name": "Acme"}),
        ({"id": "c1", "plan": "pro"}, {"id": "c1", "plan": "pro"}),
    ],
)
async def test_identify_company_argument_forms(
    client: AsyncAnalytex, router: respx.MockRouter, company: object, wire: object
) -> None:
    route = router.post("/v1/identify").respond(202)
    await client.identify("u1", company=company)  # type: ignore[arg-type]
    assert body_of(route) == {"user_id": "u1", "company": wire}


async def test_identify_without_optional_fields_sends_only_the_id(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    route = router.post("/v1/identify").respond(202)
    await client.identify("u1")
    assert route.calls.last.request.content == b'{"user_id":"u1"}'


async def test_realtime_metadata_may_nest_and_is_sent_as_utf8(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    route = router.post("/v1/identify").respond(202)
    await client.identify("u1", metadata={"name": "Zoë 🚀", "prefs": {"tags": ["a", 1]}})
    assert "Zoë 🚀".encode() in route.calls.last.request.content
    assert body_of(route) == {
        "user_id": "u1",
        "metadata": {"name": "Zoë 🚀", "prefs": {"tags": ["a", 1]}},
    }


async def test_identify_company_and_track(client: AsyncAnalytex, router: respx.MockRouter) -> None:
    companies = router.post("/v1/companies/identify").respond(200)
    track = router.post("/v1/track").respond(202)
    await client.identify_company("c1", metadata={"employees": 12})
    await client.track("u1", "Signed Up", metadata={"plan": "pro"})
    assert body_of(companies) == {"company_id": "c1", "metadata": {"employees": 12}}
    assert body_of(track) == {
        "user_id": "u1",
        "event_name": "Signed Up",
        "metadata": {"plan": "pro"},
    }


async def test_delete_users_and_companies(client: AsyncAnalytex, router: respx.MockRouter) -> None:
    users = router.delete("/v1/users").respond(202)
    companies = router.delete("/v1/companies").respond(202)
    await client.delete_users(["u1", "u2"])
    await client.delete_companies(("c1",))
    assert body_of(users) == {"users": ["u1", "u2"]}
    assert body_of(companies) == {"companies": ["c1"]}


async def test_bulk_identify_sends_json_and_returns_the_job(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    route = router.post("/v1/users/bulk_identify").respond(202, json=JOB)
    job = await client.bulk_identify(
        [
            User("user_001", company_id="comp001", metadata={"tickets_created": "15"}),
            {"user_id": "user_002", "metadata": {"score": 4.5, "vip": True, "note": None}},
        ]
    )
    assert body_of(route) == {
        "users": [
            {"user_id": "user_001", "company_id": "comp001", "metadata": {"tickets_created": "15"}},
            {"user_id": "user_002", "metadata": {"score": 4.5, "vip": True, "note": None}},
        ]
    }
    assert job == Job(
        job_id=JOB["job_id"],
        status=JobStatus.QUEUED,
        submitted_at=datetime(2025, 2, 2, 12, 34, 56, tzinfo=timezone.utc),
    )
    assert job.raw == JOB


async def test_bulk_identify_companies(client: AsyncAnalytex, router: respx.MockRouter) -> None:
    route = router.post("/v1/companies/bulk_identify").respond(202, json=JOB)
    await client.bulk_identify_companies(
        [Company("c1", metadata={"name": "Acme"}), {"company_id": "c2"}]
    )
    assert body_of(route) == {
        "companies": [{"company_id": "c1", "metadata": {"name": "Acme"}}, {"company_id": "c2"}]
    }


async def test_bulk_accepts_a_generator(client: AsyncAnalytex, router: respx.MockRouter) -> None:
    route = router.post("/v1/users/bulk_identify").respond(202, json=JOB)
    await client.bulk_identify({"user_id": f"u{i}"} for i in range(3))
    assert body_of(route) == {"users": [{"user_id": "u0"}, {"user_id": "u1"}, {"user_id": "u2"}]}


async def test_get_job_percent_encodes_opaque_ids(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    job_id = "bulk:jobs:NX-1:a/b c?"
    route = router.get(url__regex=r".*/v1/background_jobs/.*").respond(
        200, json={"job_id": job_id, "status": "processing"}
    )
    job = await client.get_job(job_id)
    assert route.calls.last.request.url.raw_path == (
        b"/v1/background_jobs/bulk%3Ajobs%3ANX-1%3Aa%2Fb%20c%3F"
    )
    assert job.job_id == job_id
    assert job.status is JobStatus.PROCESSING


async def test_full_job_objects_parse_and_keep_unknown_fields(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    full = {
        "job_id": "j1", "status": "completed", "type": "users", "total_rows": 10000,
        "completed_rows": "10000", "submitted_at": 1738499696, "start_time": None,
        "end_time": "2025-02-02T12:40:00Z", "links": [{"rel": "self"}], "new_field": {"x": 1},
    }  # fmt: skip
    router.get("/v1/background_jobs/j1").respond(200, json=full)
    job = await client.get_job("j1")
    assert (job.status, job.type, job.total_rows, job.completed_rows) == (
        JobStatus.COMPLETED, "users", 10000, 10000,
    )  # fmt: skip
    assert job.submitted_at == datetime.fromtimestamp(1738499696, tz=timezone.utc)
    assert job.raw["new_field"] == {"x": 1}
    assert job.is_terminal


@pytest.mark.parametrize("status", ["exploding", 42, None, "", "COMPLETED"])
async def test_unknown_or_odd_statuses_do_not_crash(
    client: AsyncAnalytex, router: respx.MockRouter, status: object
) -> None:
    router.get("/v1/background_jobs/j1").respond(
        200, json={"job_id": "j1", "status": status, "total_rows": "many", "submitted_at": "?"}
    )
    job = await client.get_job("j1")
    expected = JobStatus.COMPLETED if status == "COMPLETED" else JobStatus.UNKNOWN
    assert job.status is expected
    assert job.total_rows is None
    assert job.submitted_at is None
    assert job.raw["status"] == status


async def test_list_jobs_takes_an_array_or_a_wrapped_array(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    route = router.get("/v1/background_jobs")
    route.side_effect = [
        httpx.Response(200, json=[JOB, {"job_id": "j2", "status": "failed"}, {"no": "id"}]),
        httpx.Response(200, json={"jobs": [JOB]}),
    ]
    jobs = await client.list_jobs()
    assert [(j.job_id, j.status) for j in jobs] == [
        (JOB["job_id"], JobStatus.QUEUED), ("j2", JobStatus.FAILED),
    ]  # fmt: skip
    assert [j.job_id for j in await client.list_jobs()] == [JOB["job_id"]]


async def test_a_submit_answer_that_is_not_a_job_is_an_api_error(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    router.post("/v1/users/bulk_identify").respond(202, text="accepted!")
    with pytest.raises(analytex_async.APIError, match="not JSON"):
        await client.bulk_identify([{"user_id": "u1"}])
    router.post("/v1/users/bulk_identify").respond(202, json={"status": "queued"})
    with pytest.raises(analytex_async.APIError, match="without a job_id"):
        await client.bulk_identify([{"user_id": "u1"}])


async def test_list_jobs_that_is_not_a_list_is_an_api_error(
    client: AsyncAnalytex, router: respx.MockRouter
) -> None:
    router.get("/v1/background_jobs").respond(200, json={"weird": True})
    with pytest.raises(analytex_async.APIError, match="not a list"):
        await client.list_jobs()
