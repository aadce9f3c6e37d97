"""Events import: the Event model, the event schema's rules, and import_events over /v1/imports."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from analytex_async import AsyncAnalytex, Event, ValidationError
from analytex_async._bulk._multipart import upload_filename
from analytex_async._events import event_record, timestamp

from .conftest import API_KEY, BASE_URL, NO_WAIT

pytestmark = pytest.mark.anyio

AT = "2024-07-28T08:55:35+00:00"


# -- the model and the rules ------------------------------------------------------------------


def test_the_four_constructors_make_the_documented_lines() -> None:
    at = datetime(2024, 7, 28, 10, 55, 35, tzinfo=timezone(timedelta(hours=2)))
    assert event_record(Event.identify_user("u1", {"plan": "pro"}, at, company_id="c1")) == {
        "event_type": "identify_user", "user_id": "u1", "company_id": "c1",
        "source": "backend-http-import", "inserted_at": AT, "metadata": {"plan": "pro"},
    }  # fmt: skip
    assert event_record(Event.identify_company("c1", None, AT)) == {
        "event_type": "identify_company", "company_id": "c1",
        "source": "backend-http-import", "inserted_at": AT, "metadata": {},
    }  # fmt: skip
    assert event_record(Event.page_view("u1", "app.example.com", "/home", AT)) == {
        "event_type": "page_view", "user_id": "u1", "hostname": "app.example.com",
        "pathname": "/home", "source": "backend-http-import", "inserted_at": AT,
    }  # fmt: skip
    assert event_record(Event.track("u1", "Signed Up", AT, source="backend-segment")) == {
        "event_type": "track", "user_id": "u1", "event_name": "Signed Up",
        "source": "backend-segment", "inserted_at": AT,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("given_at", "sent"),
    [
        ("2024-07-28 08:55:35.874555", "2024-07-28T08:55:35.874555+00:00"),
        ("2024-07-28T08:55:35Z", AT),
        ("2024-07-28T10:55:35+02:00", AT),
        (datetime(2024, 7, 28, 8, 55, 35, tzinfo=timezone.utc), AT),
    ],
)
def test_timestamps_are_sent_in_utc(given_at: Any, sent: str) -> None:
    assert timestamp(given_at) == sent


def test_a_naive_datetime_is_refused_as_ambiguous() -> None:
    with pytest.raises(ValidationError, match="timezone") as info:
        Event.track("u1", "x", datetime(2024, 7, 28, 8, 55, 35))
    assert info.value.field == "inserted_at"


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"event_type": "click", "user_id": "u1", "inserted_at": AT}, "event_type", "one of"),
        ({"event_type": "track", "user_id": "u1", "inserted_at": AT}, "event_name", "needs"),
        ({"event_type": "track", "user_id": "u1", "event_name": "e"}, "inserted_at", "needs"),
        ({"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": "yesterday"},
         "inserted_at", "ISO 8601"),
        ({"event_type": "track", "user_id": "", "event_name": "e", "inserted_at": AT},
         "user_id", "empty"),
        ({"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": AT,
          "source": "carrier-pigeon"}, "source", "one of"),
        ({"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": AT,
          "metadata": {"nested": {"a": 1}}}, "metadata.nested", "primitives"),
        ({"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": AT,
          "colour": "red"}, "colour", "unknown"),
        ({"event_type": "page_view", "user_id": "u1", "hostname": "h", "pathname": "/",
          "inserted_at": AT, "source": "web-client"}, "user_agent", "web-client"),
        ({"event_type": "page_view", "user_id": "u1", "hostname": "h", "pathname": "/",
          "inserted_at": AT, "screen_width": "wide"}, "screen_width", "pixels"),
        ({"event_type": "identify_company", "company_id": "c1", "inserted_at": AT,
          "user_id": "u1"}, "user_id", "unknown"),
    ],
)  # fmt: skip
def test_every_broken_rule_names_its_field(
    record: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        event_record(record, position=7)
    assert info.value.field == field
    assert info.value.position == 7


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"event_type": "track", "user_id": "u1", "event_name": None, "inserted_at": AT},
         "event_name"),
        ({"event_type": "track", "user_id": None, "event_name": "e", "inserted_at": AT},
         "user_id"),
        ({"event_type": "page_view", "user_id": "u1", "hostname": None, "pathname": "/",
          "inserted_at": AT}, "hostname"),
        ({"event_type": "identify_company", "company_id": None, "inserted_at": AT}, "company_id"),
        ({"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": None},
         "inserted_at"),
    ],
)  # fmt: skip
def test_a_required_field_that_is_none_is_missing_not_left_off_the_line(
    record: dict[str, Any], field: str
) -> None:
    # What a converter gets from row.get("name"): sent without the field, the server would
    # refuse the whole file; the SDK rejects the one event instead, naming the field.
    with pytest.raises(ValidationError, match="needs") as info:
        event_record(record, position=4)
    assert (info.value.field, info.value.position) == (field, 4)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"event_type": "identify_user", "inserted_at": AT}, "an identify_user event needs"),
        ({"event_type": "identify_company", "inserted_at": AT},
         "an identify_company event needs"),
        ({"event_type": "track", "user_id": "u1", "inserted_at": AT}, "a track event needs"),
        ({"event_type": "page_view", "user_id": "u1", "inserted_at": AT},
         "a page_view event needs"),
        ({"event_type": "identify_user", "user_id": "u1", "inserted_at": AT, "plan": "pro"},
         "'plan' for an identify_user event$"),
    ],
)  # fmt: skip
def test_an_event_type_is_named_with_its_article(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        event_record(record)


def test_an_extra_field_on_a_page_view_is_named_and_metadata_said_to_be_none_of_its() -> None:
    record = {"event_type": "page_view", "user_id": "u1", "hostname": "h", "pathname": "/",
              "inserted_at": AT, "plan": "pro"}  # fmt: skip
    with pytest.raises(ValidationError) as info:
        event_record(record)
    assert info.value.field == "plan"
    assert "unknown field(s) 'plan' for a page_view event, which takes no metadata" in str(
        info.value
    )


def test_an_event_constructor_refuses_a_none_required_field() -> None:
    with pytest.raises(ValidationError) as info:
        Event.track("u1", None, AT)  # type: ignore[arg-type]
    assert info.value.field == "event_name"


def test_a_web_client_event_with_a_url_needs_no_hostname_but_a_user_agent() -> None:
    record = event_record(
        {"event_type": "track", "user_id": "u1", "event_name": "e", "url": "https://h/p",
         "user_agent": "Mozilla/5.0", "inserted_at": AT, "source": "web-client"}
    )  # fmt: skip
    assert record["source"] == "web-client"
    with pytest.raises(ValidationError) as info:
        event_record(
            {"event_type": "track", "user_id": "u1", "event_name": "e", "url": "https://h/p",
             "inserted_at": AT, "source": "web-client"}
        )  # fmt: skip
    assert info.value.field == "user_agent"


_ids = st.text(min_size=1, max_size=8).filter(lambda s: s.strip() and s.isprintable())
_meta = st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.booleans(), st.integers(
    min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=5)), max_size=3)  # fmt: skip


@given(
    event_type=st.sampled_from(["identify_user", "identify_company", "page_view", "track"]),
    user_id=st.one_of(_ids, st.just(""), st.integers()),
    metadata=st.one_of(_meta, st.just({"x": [1]}), st.just("no")),
    extra=st.sampled_from([{}, {"bogus": 1}, {"source": "nope"}, {"screen_width": -1}]),
)
def test_every_event_is_either_a_valid_line_or_a_rejection_naming_a_field(
    event_type: str, user_id: Any, metadata: Any, extra: dict[str, Any]
) -> None:
    record: dict[str, Any] = {"event_type": event_type, "inserted_at": AT, **extra}
    record["company_id" if event_type == "identify_company" else "user_id"] = user_id
    if event_type == "track":
        record["event_name"] = "e"
    if event_type == "page_view":
        record |= {"hostname": "h", "pathname": "/"}
    if event_type != "page_view":
        record["metadata"] = metadata
    try:
        line = event_record(record)
    except ValidationError as error:
        named = error.field
        assert named  # every rejection names its field, whichever rule broke
    else:
        assert json.loads(json.dumps(line)) == line
        assert line["source"] in {"backend-http-import"}
        assert line["inserted_at"] == AT


# -- import_events over /v1/imports -----------------------------------------------------------


def job(job_id: str, status: str = "completed", **fields: Any) -> dict[str, Any]:
    return {"job_id": job_id, "status": status, "type": "import", **fields}


async def test_import_events_uploads_ndjson_files_to_v1_imports(router: respx.MockRouter) -> None:
    uploads: list[bytes] = []

    def submit(request: httpx.Request) -> httpx.Response:
        uploads.append(request.content)
        return httpx.Response(200, json=job(f"imp-{len(uploads)}", total_rows="2"))

    router.post("/v1/imports").mock(side_effect=submit)
    router.get(url__regex=r"/v1/background_jobs/.*").mock(
        side_effect=lambda r: httpx.Response(200, json=job(r.url.path.rsplit("/", 1)[1]))
    )
    events = [
        Event.identify_user("u1", {"plan": "pro"}, AT),
        {"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": AT},
        {"event_type": "track", "user_id": "", "event_name": "e", "inserted_at": AT},
    ]
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        result = await client.import_events(events)
    assert (result.rows_sent, result.rows_rejected) == (2, 1)
    assert result.rejected[0].position == 2
    [body] = uploads
    assert b'filename="' in body
    assert b'.ndjson"' in body
    lines = [json.loads(line) for line in body.split(b"\r\n")[4:-2][0].splitlines()]
    assert [line["event_type"] for line in lines] == ["identify_user", "track"]


async def test_an_event_with_a_none_required_field_is_rejected_and_the_file_still_goes(
    router: respx.MockRouter,
) -> None:
    uploads: list[bytes] = []

    def submit(request: httpx.Request) -> httpx.Response:
        uploads.append(request.content)
        return httpx.Response(200, json=job(f"imp-{len(uploads)}"))

    router.post("/v1/imports").mock(side_effect=submit)
    router.get(url__regex=r"/v1/background_jobs/.*").mock(
        side_effect=lambda r: httpx.Response(200, json=job(r.url.path.rsplit("/", 1)[1]))
    )
    events = [
        {"event_type": "track", "user_id": "u1", "event_name": "e", "inserted_at": AT},
        {"event_type": "track", "user_id": "u1", "event_name": None, "inserted_at": AT},
    ]
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        result = await client.import_events(events)
    assert (result.rows_sent, result.rows_rejected) == (1, 1)
    [rejection] = result.rejected
    assert rejection.position == 1
    assert "'event_name'" in rejection.reason
    [body] = uploads
    assert body.count(b'"event_name"') == 1


# -- no duplicate jobs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lost",
    [httpx.RemoteProtocolError("server closed the connection"), httpx.ReadTimeout("slow")],
)
async def test_a_lost_answer_adopts_the_job_the_server_made_instead_of_sending_again(
    router: respx.MockRouter, lost: Exception
) -> None:
    made: list[dict[str, Any]] = []

    def submit(request: httpx.Request) -> httpx.Response:
        filename = request.content.split(b'filename="')[1].split(b'"')[0].decode()
        made.append(job(f"job-{len(made)}", "queued", filename=filename, type="users"))
        raise lost  # the server made the job; the answer never arrives

    router.post("/v1/users/bulk_identify").mock(side_effect=submit)
    router.get("/v1/background_jobs").mock(side_effect=lambda r: httpx.Response(200, json=made))
    router.get(url__regex=r"/v1/background_jobs/.+").mock(
        return_value=httpx.Response(200, json=job("job-0", type="users"))
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        result = await client.import_users([{"user_id": "u1"}, {"user_id": "u2"}])
    assert len(made) == 1  # sent once: the job was found and adopted
    assert [j.job_id for j in result.jobs] == ["job-0"]
    assert result.rows_sent == 2


async def test_a_refused_connection_is_sent_again_without_a_lookup(
    router: respx.MockRouter,
) -> None:
    submit = router.post("/v1/users/bulk_identify").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(202, json=job("j1"))]
    )
    listing = router.get("/v1/background_jobs").mock(return_value=httpx.Response(200, json=[]))
    router.get("/v1/background_jobs/j1").mock(return_value=httpx.Response(200, json=job("j1")))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        await client.import_users([{"user_id": "u1"}])
    assert submit.call_count == 2
    assert not listing.called


async def test_a_lost_answer_with_no_job_made_is_sent_again(router: respx.MockRouter) -> None:
    submit = router.post("/v1/users/bulk_identify").mock(
        side_effect=[httpx.ReadTimeout("lost"), httpx.Response(202, json=job("j1"))]
    )
    listing = router.get("/v1/background_jobs").mock(return_value=httpx.Response(200, json=[]))
    router.get("/v1/background_jobs/j1").mock(return_value=httpx.Response(200, json=job("j1")))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        result = await client.import_users([{"user_id": "u1"}])
    assert submit.call_count == 2
    assert listing.call_count == 1
    assert [j.job_id for j in result.jobs] == ["j1"]


async def test_the_job_list_is_followed_through_links_on_the_api_host_only(
    router: respx.MockRouter,
) -> None:
    router.get("/v1/background_jobs", params={"page": "2"}).mock(
        return_value=httpx.Response(200, json={"jobs": [job("b")], "links": {"next": None}})
    )
    router.get("/v1/background_jobs", params={"page": "3"}).mock(
        return_value=httpx.Response(200, json={"jobs": [job("never")]})
    )
    router.get("/v1/background_jobs").mock(
        return_value=httpx.Response(
            200,
            json={"jobs": [job("a")], "links": {"next": f"{BASE_URL}/v1/background_jobs?page=2"}},
        )
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        assert [j.job_id for j in await client.list_jobs()] == ["a", "b"]


def paged_jobs(pages: list[list[dict[str, Any]]], read: list[int]) -> Any:
    """A respx side effect serving ``pages`` of jobs at ``?page=N``, noting each page read."""

    def answer(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        read.append(number)
        following = f"{BASE_URL}/v1/background_jobs?page={number + 1}"
        links = {"next": following if number < len(pages) else None}
        return httpx.Response(200, json={"data": pages[number - 1], "links": links})

    return answer


async def test_the_job_list_is_read_to_its_end_however_many_pages(
    router: respx.MockRouter,
) -> None:
    pages = [[job(f"j{n}")] for n in range(120)]  # more pages than any cap would read
    read: list[int] = []
    router.get("/v1/background_jobs").mock(side_effect=paged_jobs(pages, read))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        listed = await client.list_jobs()
    assert [j.job_id for j in listed] == [f"j{n}" for n in range(120)]
    assert read == list(range(1, 121))


@pytest.mark.parametrize(("where", "pages_read"), [(0, 1), (59, 60), (119, 120)])
async def test_the_lost_answer_lookup_reads_pages_only_until_it_finds_the_upload(
    router: respx.MockRouter, where: int, pages_read: int
) -> None:
    # Newest first (the job on page 1) or oldest first (on the last page): found either way.
    made: list[str] = []
    pages = [[job(f"old-{n}", filename=f"old-{n}.ndjson")] for n in range(120)]

    def submit(request: httpx.Request) -> httpx.Response:
        filename = request.content.split(b'filename="')[1].split(b'"')[0].decode()
        made.append(filename)
        pages[where].insert(0, job("new", "queued", filename=filename))
        raise httpx.ReadTimeout("lost")

    read: list[int] = []
    router.post("/v1/imports").mock(side_effect=submit)
    router.get("/v1/background_jobs").mock(side_effect=paged_jobs(pages, read))
    router.get("/v1/background_jobs/new").mock(return_value=httpx.Response(200, json=job("new")))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        result = await client.import_events([Event.track("u1", "e", AT)])
    assert len(made) == 1
    assert [j.job_id for j in result.jobs] == ["new"]
    assert read == list(range(1, pages_read + 1))


def test_upload_names_are_unique_per_import_and_batch() -> None:
    assert upload_filename("abc", "7") != upload_filename("abd", "7")
    assert upload_filename("abc", "7.0") != upload_filename("abc", "7.1")
