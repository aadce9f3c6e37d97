"""POST /v1/imports: the event schema, NDJSON and CSV files, the import slot, the import job."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from analytex_async.emulator import Emulator
from analytex_async.emulator._events import parse_inserted_at

from .conftest import EPOCH, Api

pytestmark = pytest.mark.anyio

AT = "2024-07-28T08:55:35.874555Z"


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def identify_user(user_id: str = "u1", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "identify_user",
        "user_id": user_id,
        "metadata": {"plan": "pro"},
        "source": "backend-http-import",
        "inserted_at": AT,
        **fields,
    }


def track(user_id: str = "u1", name: str = "Report Exported", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "track",
        "user_id": user_id,
        "event_name": name,
        "source": "backend-http",
        "inserted_at": AT,
        **fields,
    }


def page_view(user_id: str = "u1", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "page_view",
        "user_id": user_id,
        "hostname": "app.example.com",
        "pathname": "/reports",
        "source": "backend-http-import",
        "inserted_at": AT,
        **fields,
    }


def identify_company(company_id: str = "acme", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "identify_company",
        "company_id": company_id,
        "metadata": {"tier": "gold"},
        "source": "backend-salesforce",
        "inserted_at": "2024-07-28 08:55:35.874555",
        **fields,
    }


async def upload(
    api: Api, data: bytes, filename: str | None = "events.ndjson", media: str = "x"
) -> Any:
    content_type = "application/x-ndjson" if media == "x" else media
    part = (filename, data, content_type) if filename is not None else (None, data, content_type)
    return await api.client.post("/v1/imports", files={"file": part})


# ----------------------------------------------------------------- the job


async def test_an_import_answers_200_with_the_documented_job_shape(api, emulator):
    data = ndjson([identify_user(), track(), page_view(), identify_company()])
    response = await upload(api, data, filename="import-7-1.ndjson")
    assert response.status_code == 200
    job = response.json()
    for field in ("job_id", "status", "filename", "file_size", "total_rows"):
        assert field in job
    for field in ("start_time", "end_time", "links", "type"):
        assert field in job
    assert job["status"] == "queued"
    assert job["type"] == "import"
    assert job["filename"] == "import-7-1.ndjson"
    # documented as strings for the import job
    assert (job["file_size"], job["total_rows"]) == (str(len(data)), "4")
    assert job["completed_rows"] == "0"
    assert job["links"]["self"].endswith(f"/v1/background_jobs/{job['job_id']}")
    assert emulator.jobs[job["job_id"]].kind == "events"


async def test_an_import_progresses_at_rows_per_minute_then_applies_its_events(
    api, emulator, clock
):
    events = [identify_user("u1"), identify_company("acme"), track("u1"), page_view("u2")]
    job_id = (await upload(api, ndjson(events))).json()["job_id"]
    clock.advance(0.1)  # 1,200 rows/min: two rows done
    job = (await api.job(job_id)).json()
    assert (job["status"], job["completed_rows"], job["total_rows"]) == ("processing", "2", "4")
    assert set(emulator.users) == {"u1"}
    assert emulator.users["u1"].metadata == {"plan": "pro"}
    assert emulator.companies["acme"].metadata == {"tier": "gold"}
    assert [e.event_type for e in emulator.imported_events] == ["identify_user", "identify_company"]
    clock.advance(0.1)
    job = (await api.job(job_id)).json()
    assert (job["status"], job["completed_rows"]) == ("completed", "4")
    assert job["end_time"] == (EPOCH + dt.timedelta(seconds=1000.2)).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    imported = emulator.imported_events
    assert [e.event_type for e in imported] == [
        "identify_user",
        "identify_company",
        "track",
        "page_view",
    ]
    assert all(e.job_id == job_id for e in imported)
    tracked = imported[2]
    assert (tracked.user_id, tracked.event_name, tracked.source) == (
        "u1",
        "Report Exported",
        "backend-http",
    )
    assert tracked.inserted_at == dt.datetime(
        2024, 7, 28, 8, 55, 35, 874555, tzinfo=dt.timezone.utc
    )
    assert imported[3].fields == {"hostname": "app.example.com", "pathname": "/reports"}
    # page views and imported tracks are not real-time tracks, and create no user
    assert emulator.events == []
    assert "u2" not in emulator.users


async def test_the_import_slot_is_apart_from_the_bulk_slot(api, emulator, clock):
    first = await upload(api, ndjson([track(f"u{i}") for i in range(40)]))
    assert first.status_code == 200
    # a bulk identify may run beside the import ...
    assert (await api.bulk_json("users", api.users(40))).status_code == 202
    # ... but a second import may not
    second = await upload(api, ndjson([track()]))
    error = api.error(second, 409)
    assert error["error_code"] == "job_in_progress"
    assert error["details"] == {"job_id": first.json()["job_id"], "status": "processing"}
    assert "import" in error["message"]
    # and the running import does not block a second bulk once the bulk job is done
    clock.advance(2)  # both 40-row jobs are done at 1,200 rows/min
    assert (await upload(api, ndjson([track()]))).status_code == 200
    assert (await api.bulk_json("users", api.users(1))).status_code == 202


async def test_a_running_bulk_job_does_not_block_an_import(api):
    assert (await api.bulk_json("companies", [{"company_id": "c"}] * 50)).status_code == 202
    assert (await upload(api, ndjson([track()]))).status_code == 200
    api.error(await api.bulk_json("users", api.users(1)), 409)


async def test_import_jobs_are_listed_with_their_type(api, clock):
    bulk = (await api.bulk_json("users", api.users(1))).json()
    clock.advance(1)
    imported = (await upload(api, ndjson([track()]), filename="a-1.ndjson")).json()
    listed = (await api.client.get("/v1/background_jobs")).json()
    assert [(j["job_id"], j["type"]) for j in listed] == [
        (bulk["job_id"], "bulk_identify_users"),
        (imported["job_id"], "import"),
    ]
    assert listed[1]["filename"] == "a-1.ndjson"
    assert listed[1]["total_rows"] == "1"
    assert listed[0]["total_rows"] == 1  # bulk jobs keep numbers
    assert (await api.client.get("/_emulator/jobs")).json()[1]["type"] == "import"


async def test_a_failed_import_keeps_the_events_it_processed(api, emulator, clock):
    emulator.fail_next_jobs(reason="boom", after_rows=1)
    job_id = (await upload(api, ndjson([identify_user("a"), identify_user("b")]))).json()["job_id"]
    clock.advance(10)
    job = (await api.job(job_id)).json()
    assert (job["status"], job["error"], job["completed_rows"]) == ("failed", "boom", "1")
    assert set(emulator.users) == {"a"}


async def test_a_missing_metadata_on_an_identify_becomes_empty(api, emulator, clock):
    event = identify_user("u9")
    del event["metadata"]
    assert (await upload(api, ndjson([event, {**identify_company(), "metadata": None}]))).is_success
    clock.advance(10)
    assert emulator.users["u9"].metadata == {}
    assert emulator.imported_events[1].metadata == {}


async def test_the_company_of_an_identify_user_is_stored(api, emulator, clock):
    await upload(api, ndjson([identify_user("u1", company_id="acme")]))
    clock.advance(10)
    assert emulator.users["u1"].company_id == "acme"


# ----------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("event", "field", "error_code"),
    [
        ({**track(), "event_type": None}, "event_type", "missing_event_type"),
        ({**track(), "event_type": "identify"}, "event_type", "invalid_event_type"),
        ({**track(), "event_type": 3}, "event_type", "invalid_event_type"),
        ({**track(), "source": None}, "source", "missing_source"),
        ({**track(), "source": "backend"}, "source", "invalid_source"),
        ({**track(), "inserted_at": None}, "inserted_at", "missing_inserted_at"),
        ({**track(), "inserted_at": "yesterday"}, "inserted_at", "invalid_inserted_at"),
        ({**track(), "inserted_at": 1722156935}, "inserted_at", "invalid_inserted_at"),
        ({**track(), "inserted_at": "2024-02-30T00:00:00Z"}, "inserted_at", "invalid_inserted_at"),
        ({**track(), "user_id": ""}, "user_id", "missing_user_id"),
        ({**track(), "user_id": 7}, "user_id", "missing_user_id"),
        ({**track(), "event_name": None}, "event_name", "missing_event_name"),
        ({**track(), "metadata": [1]}, "metadata", "invalid_metadata"),
        ({**track(), "metadata": {"a": {"b": 1}}}, "metadata.a", "non_primitive_metadata"),
        ({**track(), "company_id": ""}, "company_id", "invalid_company_id"),
        ({**track(), "hostname": 5}, "hostname", "invalid_hostname"),
        ({**track(), "screen_width": -1}, "screen_width", "invalid_screen_width"),
        ({**track(), "screen_height": 1.5}, "screen_height", "invalid_screen_height"),
        ({**identify_user(), "metadata": "pro"}, "metadata", "invalid_metadata"),
        (
            {**identify_user(), "metadata": {"tags": ["a"]}},
            "metadata.tags",
            "non_primitive_metadata",
        ),
        ({**identify_company(), "company_id": None}, "company_id", "missing_company_id"),
        ({**page_view(), "hostname": None}, "hostname", "missing_hostname"),
        ({**page_view(), "pathname": ""}, "pathname", "missing_pathname"),
        ({**track(), "source": "web-client"}, "hostname", "missing_hostname"),
        (
            {**track(), "source": "web-client", "url": "https://a.example/x"},
            "user_agent",
            "missing_user_agent",
        ),
    ],
)
async def test_an_invalid_event_is_a_400_naming_its_line_and_field(
    api, emulator, event, field, error_code
):
    response = await upload(api, ndjson([track(), event]))
    error = api.error(response, 400)
    assert error["error_code"] == error_code
    assert error["details"]["line"] == 2
    assert error["details"]["field"] == field
    assert error["message"].startswith(f"line 2: {field} ")
    assert emulator.jobs == {}


async def test_a_url_stands_in_for_hostname_and_pathname(api, emulator, clock):
    view = page_view(
        source="web-client", url="https://App.Example.com:8443/a/b?q=1", user_agent="Mozilla/5.0"
    )
    del view["hostname"], view["pathname"]
    bare = page_view(url="https://example.com")
    del bare["hostname"], bare["pathname"]
    assert (await upload(api, ndjson([view, bare]))).status_code == 200
    clock.advance(10)
    first, second = emulator.imported_events
    assert first.fields["hostname"] == "app.example.com"
    assert first.fields["pathname"] == "/a/b"
    assert first.fields["user_agent"] == "Mozilla/5.0"
    assert second.fields["pathname"] == "/"


async def test_a_web_client_event_with_every_client_field(api, emulator, clock):
    event = track(
        source="web-client",
        hostname="h.example",
        pathname="/p",
        user_agent="UA",
        country_code="DE",
        screen_width=1920,
        screen_height="1080",
        operating_system="Linux",
        browser="Firefox",
        browser_language="de-DE",
        device_type="desktop",
        unknown_field={"ignored": True},
    )
    assert (await upload(api, ndjson([event]))).status_code == 200
    clock.advance(10)
    [stored] = emulator.imported_events
    assert stored.fields["screen_width"] == 1920
    assert stored.fields["screen_height"] == 1080
    assert "unknown_field" not in stored.fields


async def test_a_company_event_ignores_client_fields_and_the_web_client_rule(api, emulator, clock):
    event = identify_company(source="web-client", hostname=5, screen_width="wide")
    assert (await upload(api, ndjson([event]))).status_code == 200


async def test_a_page_view_ignores_metadata(api, emulator, clock):
    event = page_view(metadata={"nested": {"x": 1}})
    assert (await upload(api, ndjson([event]))).status_code == 200
    clock.advance(10)
    assert emulator.imported_events[0].metadata == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-07-28T08:55:35Z", dt.datetime(2024, 7, 28, 8, 55, 35, tzinfo=dt.timezone.utc)),
        (
            "2024-07-28 08:55:35.874555",
            dt.datetime(2024, 7, 28, 8, 55, 35, 874555, tzinfo=dt.timezone.utc),
        ),
        (
            "2024-07-28T08:55:35.1+02:00",
            dt.datetime(2024, 7, 28, 6, 55, 35, 100000, tzinfo=dt.timezone.utc),
        ),
        (
            "2024-07-28T08:55:35.123456789-0130",
            dt.datetime(2024, 7, 28, 10, 25, 35, 123456, tzinfo=dt.timezone.utc),
        ),
        ("2024-07-28T08:55", dt.datetime(2024, 7, 28, 8, 55, tzinfo=dt.timezone.utc)),
        ("2024-07-28", dt.datetime(2024, 7, 28, tzinfo=dt.timezone.utc)),
        ("2024-07-28T08:55:35+00:00", dt.datetime(2024, 7, 28, 8, 55, 35, tzinfo=dt.timezone.utc)),
    ],
)
def test_inserted_at_accepts_both_iso_forms_and_reads_no_offset_as_utc(text, expected):
    assert parse_inserted_at(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "2024-7-28", "2024-07-28T25:00:00", "28/07/2024", "2024-07-28T08:55:35+24:00", "now"],
)
def test_inserted_at_refuses_what_is_not_iso_8601(text):
    assert parse_inserted_at(text) is None


# ----------------------------------------------------------------- files, limits, the request


async def test_a_csv_file_maps_columns_to_fields_and_metadata(api, emulator, clock):
    data = (
        b"event_type,user_id,company_id,event_name,source,inserted_at,plan,metadata.source,"
        b"metadata,screen_width,hostname,pathname\r\n"
        b"identify_user,u1,acme,,backend-http-import,2024-07-28 08:55:35,pro,crm,"
        b'"{""seats"": 5, ""plan"": ""free""}",,,\r\n'
        b'track,u1,,"Report, Exported",backend-http,2024-07-28T09:00:00Z,,,,1280,,\r\n'
        b"page_view,u2,,,backend-http-import,2024-07-28T09:01:00Z,,,,,h.example,/p\r\n"
        b"\r\n"
    )
    response = await upload(api, data, filename="export.csv", media="text/csv")
    assert response.status_code == 200, response.text
    assert response.json()["total_rows"] == "3"
    clock.advance(10)
    first, second, third = emulator.imported_events
    # the JSON metadata column, then every other column (metadata.<key> for a key that is
    # also a field name) over it; empty cells left out
    assert first.metadata == {"seats": 5, "plan": "pro", "source": "crm"}
    assert first.company_id == "acme"
    assert emulator.users["u1"].metadata == {"seats": 5, "plan": "pro", "source": "crm"}
    assert (second.event_name, second.metadata, second.fields) == (
        "Report, Exported",
        {},
        {"screen_width": 1280},
    )
    assert third.fields == {"hostname": "h.example", "pathname": "/p"}


async def test_a_file_is_csv_by_its_name_or_its_content_type(api, clock):
    data = b"event_type,user_id,event_name,source,inserted_at\ntrack,u,e,backend-http,2024-01-01\n"
    assert (await upload(api, data, filename="x.CSV")).status_code == 200
    clock.advance(10)
    assert (await upload(api, data, filename="x.txt", media="text/csv")).status_code == 200
    clock.advance(10)
    api.error(await upload(api, data, filename="x.ndjson"), 400)  # read as NDJSON


@pytest.mark.parametrize(
    ("data", "line", "field", "error_code"),
    [
        (b"event_type,user_id\ntrack,u\n", 2, "event_name", "missing_event_name"),
        (
            b"\xef\xbb\xbfevent_type,user_id,event_name,source,inserted_at\n"
            b"track,u,e,backend-http,2024-01-01\ntrack,u,e,backend-http,1 Jan\n",
            3,
            "inserted_at",
            "invalid_inserted_at",
        ),
        (b"event_type,user_id,metadata\nidentify_user,u,[1]\n", 2, "metadata", "invalid_metadata"),
        (b"event_type,user_id\ntrack,u,extra\n", 2, None, "invalid_csv_row"),
        (b"event_type,user_id\n\ntrack,u\n", 2, None, "invalid_csv_row"),
        (b'event_type,user_id\ntrack,"u\nmore\n', 2, None, "invalid_csv_row"),
        (b'event_type,user_id\ntrack,"u"x\n', 2, None, "invalid_csv_row"),
        (b"event_type,event_type\ntrack,track\n", 1, None, "invalid_csv_header"),
        (
            b"event_type,user_id,source,inserted_at,note\n"
            b'identify_user,u,backend-http,2024-01-01,"a\nb"\n'
            b"identify_user,,backend-http,2024-01-01,x\n",
            4,
            "user_id",
            "missing_user_id",
        ),
    ],
)
async def test_csv_errors_name_the_line_a_row_starts_on(api, data, line, field, error_code):
    error = api.error(await upload(api, data, filename="e.csv"), 400)
    assert error["error_code"] == error_code, error
    assert error["details"]["line"] == line
    assert error["details"].get("field") == field
    assert error["message"].startswith(f"line {line}: ")


async def test_empty_files_are_refused(api):
    assert api.error(await upload(api, b"\n\n"), 400)["error_code"] == "empty_batch"
    assert api.error(await upload(api, b"", filename="e.csv"), 400)["error_code"] == "empty_batch"
    header_only = b"event_type,user_id\n"
    assert api.error(await upload(api, header_only, filename="e.csv"), 400)["error_code"] == (
        "empty_batch"
    )


async def test_ndjson_lines_are_checked_as_bulk_lines_are(api):
    error = api.error(await upload(api, ndjson([track()]) + b"{not json}\n"), 400)
    assert (error["error_code"], error["details"]["line"]) == ("invalid_ndjson_line", 2)


async def test_the_record_and_byte_limits_apply(clock, make_client):
    emulator = Emulator(clock=clock, max_records=3, max_bytes=2_000)
    async with make_client(emulator) as client:
        api = Api(client)
        error = api.error(await upload(api, ndjson([track()] * 4)), 413)
        assert (error["error_code"], error["details"]) == (
            "too_many_records",
            {"records": 4, "max_records": 3},
        )
        csv_rows = b"event_type\n" + b"track\n" * 4
        assert api.error(await upload(api, csv_rows, filename="e.csv"), 413)["error_code"] == (
            "too_many_records"
        )
        big = ndjson([track(metadata={"pad": "x" * 3000})])
        assert api.error(await upload(api, big), 413)["error_code"] == "body_too_large"
        assert emulator.jobs == {}


async def test_an_import_needs_a_multipart_file_part(api):
    error = api.error(await api.client.post("/v1/imports", json={"events": [track()]}), 400)
    assert error["error_code"] == "invalid_content_type"
    missing = await api.client.post("/v1/imports", files={"data": ("e.ndjson", b"{}", "x/y")})
    assert api.error(missing, 400)["error_code"] == "missing_file_part"
    assert (await api.client.get("/v1/imports")).status_code == 405


async def test_a_filename_is_null_when_the_part_has_none(api):
    response = await api.client.post(
        "/v1/imports",
        content=(
            b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n"
            + ndjson([track()])
            + b"\r\n--b--\r\n"
        ),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] is None


async def test_an_app_token_gets_the_hint_on_imports(emulator, make_client):
    emulator_with_keys = Emulator(api_keys={"the-api-key"})
    async with make_client(emulator_with_keys, key="NX-98ii14b") as client:
        response = await client.post(
            "/v1/imports", files={"file": ("e.ndjson", ndjson([track()]), "x/y")}
        )
    error = Api.error(response, 401)
    assert error["error_code"] == "invalid_api_key"
    assert (
        "this looks like an app token; use the API key from Environment settings"
        in (error["message"])
    )
    assert "98ii14b" not in response.text
    assert response.headers["www-authenticate"] == "Token"


async def test_a_missing_key_is_a_401_on_imports(emulator, make_client):
    async with make_client(emulator, key=None) as client:
        response = await client.post("/v1/imports", files={"file": ("e", b"{}", "x/y")})
    assert Api.error(response, 401)["error_code"] == "missing_api_key"


async def test_imported_events_are_shown_by_the_inspection_route(api, emulator, clock):
    await api.track({"user_id": "rt", "event_name": "realtime"})
    clock.advance(1)
    job_id = (
        await upload(api, ndjson([track("u1", metadata={"n": 1}), identify_company()]))
    ).json()["job_id"]
    clock.advance(10)
    shown = (await api.client.get("/_emulator/events")).json()
    assert shown[0] == {
        "user_id": "rt",
        "event_name": "realtime",
        "metadata": {},
        "time": "2025-01-01T00:16:40.000Z",
    }
    assert shown[1] == {
        "event_type": "track",
        "source": "backend-http",
        "inserted_at": "2024-07-28T08:55:35.874555+00:00",
        "user_id": "u1",
        "event_name": "Report Exported",
        "metadata": {"n": 1},
        "job_id": job_id,
        "time": "2025-01-01T00:16:51.000Z",
    }
    assert shown[2]["event_type"] == "identify_company"
    assert shown[2]["company_id"] == "acme"
    assert "user_id" not in shown[2]
    assert len(emulator.imported_events) == 2


async def test_imports_are_counted_in_the_request_log(api, emulator):
    await upload(api, ndjson([track(), track()]))
    entry = emulator.requests[-1]
    assert (entry.path, entry.status, entry.records) == ("/v1/imports", 200, 2)


async def test_reset_forgets_imported_events(api, emulator, clock):
    await upload(api, ndjson([track()]))
    clock.advance(10)
    assert emulator.imported_events
    emulator.reset()
    assert emulator.imported_events == []


# ----------------------------------------------------------------- a paged job list


async def test_a_paged_job_list_follows_links_to_the_last_page(clock, make_client):
    emulator = Emulator(clock=clock, jobs_page_size=2)
    async with make_client(emulator) as client:
        api = Api(client)
        names = []
        for number in range(5):
            name = f"import-1-{number}.ndjson"
            assert (await upload(api, ndjson([track()]), filename=name)).status_code == 200
            names.append(name)
            clock.advance(10)
        seen: list[str] = []
        url: str | None = "/v1/background_jobs"
        pages = 0
        while url is not None:
            body = (await client.get(url)).json()
            seen.extend(job["filename"] for job in body["data"])
            assert body["links"]["self"].startswith("http://test/v1/background_jobs?page=")
            url = body["links"]["next"]
            pages += 1
    assert seen == names
    assert pages == 3


async def test_a_page_past_the_end_is_empty_and_a_bad_page_is_a_400(clock, make_client):
    emulator = Emulator(clock=clock, jobs_page_size=2)
    async with make_client(emulator) as client:
        api = Api(client)
        empty = (await client.get("/v1/background_jobs", params={"page": 9})).json()
        assert empty == {
            "data": [],
            "links": {"self": "http://test/v1/background_jobs?page=9", "next": None},
        }
        for bad in ("0", "x", "-1"):
            response = await client.get("/v1/background_jobs", params={"page": bad})
            assert api.error(response, 400)["error_code"] == "invalid_page"
    with pytest.raises(ValueError, match="jobs_page_size"):
        Emulator(jobs_page_size=0)


async def test_without_a_page_size_the_list_is_a_bare_array_and_page_is_ignored(api):
    await upload(api, ndjson([track()]))
    listed = (await api.client.get("/v1/background_jobs", params={"page": 3})).json()
    assert isinstance(listed, list)
    assert len(listed) == 1
