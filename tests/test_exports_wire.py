"""Exports on the wire (respx): what is sent to the appex host and to the file host, and how
its answers are read -- 409 wait, progress strings, expired links, truncated bodies, no key to
the file host, the http:// rule, repr without the link's query."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import importlib.util
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from analytex_async import (
    APIStatusError,
    AsyncAnalytex,
    ConfigurationError,
    Export,
    ExportFailedError,
    ExportFile,
    NotFoundError,
    ValidationError,
)
from analytex_async._exports._models import parse_progress

from .conftest import API_KEY, BASE_URL, NO_WAIT, trio_mock_clock

pytestmark = pytest.mark.anyio

EXPORTS = f"{BASE_URL}/api/v1/analytics/exports"
FILES = "https://files.example"
SIGNED = "X-Amz-Signature=deadbeef0123&X-Amz-Expires=172800"


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Routes on two hosts (the appex host and the file host): full URLs, no base URL."""
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def ndjson_gz(*events: dict[str, Any]) -> bytes:
    return gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode())


EVENT = {
    "app_token": "NX-1",
    "event_type": "track",
    "event_name": "clicked",
    "user_id": "u1",
    "inserted_at": "2026-11-02T10:00:00.123456Z",
    "metadata": {"plan": "pro"},
    "screen_width": "1920",
}


def job(
    status: str = "completed", *, files: int = 1, progress: object = "100", **extra: Any
) -> dict[str, Any]:
    names = [f"part-{i}.ndjson.gz" for i in range(files)]
    return {
        "job_id": "export:jobs:NX-1:a/b",
        "status": status,
        "progress": progress,
        "all_chunks": names,
        "completed_chunks": names if status == "completed" else [],
        "presigned_urls": [
            {"filename": name, "url": f"{FILES}/bucket/{name}?{SIGNED}"} for name in names
        ]
        if status == "completed"
        else [],
        **extra,
    }


JOB_URL = f"{EXPORTS}/jobs/export%3Ajobs%3ANX-1%3Aa%2Fb"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("42", 42.0), ("42.5", 42.5), ("42%", 42.0), (" 42.5 % ", 42.5), (7, 7.0), (0.42, 0.42),
     ("150", 100.0), ("-3", 0.0), ("soon", None), (None, None), (True, None), ("nan", None),
     ("", None), ([], None)],
)  # fmt: skip
def test_progress_is_read_leniently_as_a_percentage(value: object, expected: float | None) -> None:
    assert parse_progress(value) == expected


async def test_start_export_sends_utc_seconds_the_format_and_only_the_filters_given(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    route = router.post(EXPORTS).respond(
        201, json={"job_id": "e1", "links": "x", "start_time": "2026-12-01T00:00:00Z"}
    )
    export = await client.start_export(
        start=dt.date(2026, 11, 1),
        end=dt.datetime(2026, 12, 1, 1, 2, 3, 500, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        format="csv",
        event_types=["track"],
        notify=["ops@example.com"],
    )
    request = route.calls.last.request
    assert json.loads(request.content) == {
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-12-01T00:02:04Z",  # rounded up: the range loses nothing asked for
        "format": "csv",
        "event_type": ["track"],
        "emails": ["ops@example.com"],
    }
    assert request.headers["authorization"] == f"Token {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert "x-api-version" not in request.headers
    assert export.job_id == "e1"
    assert export.status == "pending"
    assert not export.is_finished


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": "2026-12-01", "end": "2026-11-01"}, "end"),
        ({"start": "2026-11-01", "end": "2026-11-01"}, "end"),
        ({"start": dt.datetime(2026, 11, 1), "end": "2026-12-01"}, "start"),
        ({"start": "yesterday", "end": "2026-12-01"}, "start"),
        ({"start": "2026-11-01", "end": "2026-12-01", "format": "xlsx"}, "format"),
        ({"start": "2026-11-01", "end": "2026-12-01", "user_ids": "u1"}, "user_ids"),
        ({"start": "2026-11-01", "end": "2026-12-01", "event_types": ["track", ""]}, "event_types"),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    router: respx.MockRouter, client: AsyncAnalytex, kwargs: dict[str, Any], field: str
) -> None:
    route = router.post(EXPORTS)
    with pytest.raises(ValidationError) as caught:
        await client.start_export(**kwargs)
    assert caught.value.field == field
    with pytest.raises(ValidationError):
        client.export_events(**kwargs)
    assert not route.called


async def test_a_409_waits_for_the_running_export_then_starts_this_one(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    began = anyio.current_time()
    post = router.post(EXPORTS).mock(
        side_effect=[
            httpx.Response(409, json={"errors": [{"message": "an export runs"}]}),
            httpx.Response(201, json={"job_id": "mine"}),
        ]
    )
    router.get(f"{EXPORTS}/jobs/").respond(
        200,
        json=[{"job_id": "old", "status": "completed"}, {"job_id": "other", "status": "pending"}],
    )

    def other(request: httpx.Request) -> httpx.Response:
        done = anyio.current_time() - began >= 20
        return httpx.Response(
            200, json={"job_id": "other", "status": "completed" if done else "processing"}
        )

    polls = router.get(f"{EXPORTS}/jobs/other").mock(side_effect=other)
    export = await client.start_export(start="2026-11-01", end="2026-12-01")
    assert export.job_id == "mine"
    assert post.call_count == 2
    assert polls.call_count >= 2
    assert anyio.current_time() - began >= 20


async def test_the_409_wait_has_a_timeout(router: respx.MockRouter, client: AsyncAnalytex) -> None:
    router.post(EXPORTS).respond(409)
    router.get(f"{EXPORTS}/jobs/").respond(200, json=[{"job_id": "o", "status": "pending"}])
    router.get(f"{EXPORTS}/jobs/o").respond(200, json={"job_id": "o", "status": "pending"})
    with pytest.raises(TimeoutError):
        await client.start_export(start="2026-11-01", end="2026-12-01", timeout=60)


async def test_wait_polls_at_once_then_backs_off_and_reports_each_change(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    began = anyio.current_time()
    states = iter(["0", "0", "10.5%", "10.5%", "60", None])
    times: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time() - began)
        progress = next(states)
        if progress is None:
            return httpx.Response(200, json=job())
        return httpx.Response(200, json=job("processing", progress=progress))

    router.get(JOB_URL).mock(side_effect=answer)
    seen: list[Export] = []

    async def on_progress(export: Export) -> None:
        seen.append(export)

    export = await client.wait_for_export("export:jobs:NX-1:a/b", on_progress=on_progress)
    assert export.is_finished
    assert export.is_completed
    assert times[0] == 0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0 < gap <= 30 for gap in gaps)
    assert [e.progress for e in seen] == [0.0, 10.5, 60.0, 100.0]
    assert export.files[0].filename == "part-0.ndjson.gz"


async def test_a_failed_export_raises_with_the_export(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    router.get(JOB_URL).respond(200, json=job("failed", error="disk full"))
    with pytest.raises(ExportFailedError) as caught:
        await client.wait_for_export(Export("export:jobs:NX-1:a/b", "pending"))
    assert caught.value.export.status == "failed"
    assert "disk full" in str(caught.value)


async def test_wait_times_out_with_the_builtin_timeout_error(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    router.get(JOB_URL).respond(200, json=job("pending", progress="1"))
    with pytest.raises(TimeoutError, match="pending"):
        await client.wait_for_export("export:jobs:NX-1:a/b", timeout=100)


async def test_an_unknown_export_is_not_found(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    router.get(f"{EXPORTS}/jobs/nope").respond(404, json={"errors": [{"message": "no such job"}]})
    with pytest.raises(NotFoundError):
        await client.get_export("nope")


async def test_list_exports_reads_the_array(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    router.get(f"{EXPORTS}/jobs/").respond(
        200, json=[{"job_id": "a", "status": "completed", "progress": "100"}, {"status": "x"}, 3]
    )
    listed = await client.list_exports()
    assert [(e.job_id, e.progress) for e in listed] == [("a", 100.0)]


def test_repr_and_str_never_show_a_links_query() -> None:
    file = ExportFile("a.ndjson.gz", f"{FILES}/bucket/a.ndjson.gz?{SIGNED}")
    export = Export.from_api(job())
    for text in (repr(file), str(file), repr(export), str(export)):
        assert "deadbeef" not in text
        assert "X-Amz" not in text
    assert "files.example/bucket/a.ndjson.gz" in repr(file)
    assert file.url.endswith(SIGNED)


async def test_events_stream_from_the_file_host_without_the_api_key(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    router.get(JOB_URL).respond(200, json=job(files=2))
    files = router.get(url__startswith=f"{FILES}/bucket/").mock(
        side_effect=[httpx.Response(200, content=ndjson_gz(EVENT)),
                     httpx.Response(200, content=json.dumps({**EVENT, "user_id": "u2"}).encode())]
    )  # fmt: skip
    events = [e async for e in client.export_events(job_id="export:jobs:NX-1:a/b")]
    assert [e["user_id"] for e in events] == ["u1", "u2"]
    first = events[0]
    assert first["inserted_at"] == dt.datetime(
        2026, 11, 2, 10, 0, 0, 123456, tzinfo=dt.timezone.utc
    )
    assert first["metadata"] == {"plan": "pro"}
    assert first["screen_width"] == 1920
    assert first["hostname"] is None
    for call in files.calls:
        headers = call.request.headers
        assert "authorization" not in headers
        assert API_KEY not in str(headers)
        assert "x-api-version" not in headers


async def test_a_callers_client_default_authorization_never_reaches_the_file_host(
    router: respx.MockRouter,
) -> None:
    router.get(JOB_URL).respond(200, json=job())
    files = router.get(url__startswith=f"{FILES}/").respond(200, content=ndjson_gz(EVENT))
    async with httpx.AsyncClient(headers={"Authorization": f"Token {API_KEY}"}) as http:
        client = AsyncAnalytex(API_KEY, base_url=BASE_URL, http_client=http, retry_policy=NO_WAIT)
        events = [e async for e in client.export_events(job_id="export:jobs:NX-1:a/b")]
    assert len(events) == 1
    assert "authorization" not in files.calls.last.request.headers


async def test_an_expired_link_is_renewed_once_by_fetching_the_job_again(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    fresh = job()
    fresh["presigned_urls"][0]["url"] = f"{FILES}/bucket/part-0.ndjson.gz?fresh=1"
    jobs = router.get(JOB_URL).mock(
        side_effect=[httpx.Response(200, json=job()), httpx.Response(200, json=fresh)]
    )
    router.get(
        f"{FILES}/bucket/part-0.ndjson.gz", params={"X-Amz-Signature": "deadbeef0123"}
    ).respond(403)
    renewed = router.get(f"{FILES}/bucket/part-0.ndjson.gz", params={"fresh": "1"}).respond(
        200, content=ndjson_gz(EVENT)
    )
    events = [e async for e in client.export_events(job_id="export:jobs:NX-1:a/b")]
    assert len(events) == 1
    assert jobs.call_count == 2
    assert renewed.called


async def test_a_link_still_expired_after_renewal_fails_without_showing_the_query(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    router.get(JOB_URL).respond(200, json=job())
    router.get(url__startswith=f"{FILES}/").respond(410)
    with pytest.raises(APIStatusError, match="expired") as caught:
        async for _ in client.export_events(job_id="export:jobs:NX-1:a/b"):
            pass
    assert "deadbeef" not in str(caught.value)


async def test_a_truncated_body_is_resumed_never_passed_on_as_whole(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    body = ndjson_gz(*({**EVENT, "user_id": f"u{i}"} for i in range(500)))
    half = len(body) // 2
    router.get(JOB_URL).respond(200, json=job())
    files = router.get(url__startswith=f"{FILES}/").mock(
        side_effect=[
            # Promises the whole file, sends half (a reset connection looks the same).
            httpx.Response(200, content=body[:half],
                           headers={"Content-Length": str(len(body)), "ETag": '"e1"'}),
            httpx.Response(206, content=body[half:], headers={
                "Content-Range": f"bytes {half}-{len(body) - 1}/{len(body)}", "ETag": '"e1"'}),
        ]
    )  # fmt: skip
    events = [e async for e in client.export_events(job_id="export:jobs:NX-1:a/b")]
    assert [e["user_id"] for e in events] == [f"u{i}" for i in range(500)]
    resume = files.calls[1].request.headers
    assert resume["range"] == f"bytes={half}-"
    assert resume["if-range"] == '"e1"'


async def test_a_file_host_ignoring_range_is_read_again_skipping_what_was_read(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    body = ndjson_gz(*({**EVENT, "user_id": f"u{i}"} for i in range(300)))
    router.get(JOB_URL).respond(200, json=job())
    router.get(url__startswith=f"{FILES}/").mock(
        side_effect=[
            httpx.Response(200, content=body[:100], headers={"Content-Length": str(len(body))}),
            httpx.Response(200, content=body),
        ]
    )
    events = [e async for e in client.export_events(job_id="export:jobs:NX-1:a/b")]
    assert len(events) == 300


async def test_a_body_that_stays_truncated_fails_after_the_retries(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    body = ndjson_gz(EVENT)
    router.get(JOB_URL).respond(200, json=job())
    router.get(url__startswith=f"{FILES}/").respond(
        200, content=body[:10], headers={"Content-Length": str(len(body))}
    )
    with pytest.raises(Exception, match="ended after"):
        async for _ in client.export_events(job_id="export:jobs:NX-1:a/b"):
            pass


@pytest.mark.parametrize(
    "link", ["http://files.example/a.ndjson.gz?sig=1", "ftp://files.example/a"]
)
async def test_plain_http_links_are_refused_off_loopback(
    router: respx.MockRouter, client: AsyncAnalytex, link: str
) -> None:
    answer = job()
    answer["presigned_urls"][0]["url"] = link
    router.get(JOB_URL).respond(200, json=answer)
    files = router.route(url__startswith=link.split("?", maxsplit=1)[0]).respond(
        200, content=ndjson_gz(EVENT)
    )
    with pytest.raises(Exception, match="https") as caught:
        async for _ in client.export_events(job_id="export:jobs:NX-1:a/b"):
            pass
    assert "sig=1" not in str(caught.value)
    assert not files.called


@pytest.mark.parametrize("name", ["../evil", "a/b.csv", "..", "", "x\\y"])
async def test_a_file_name_with_a_path_is_refused(
    router: respx.MockRouter, client: AsyncAnalytex, tmp_path: Path, name: str
) -> None:
    answer = job()
    answer["all_chunks"] = []
    answer["presigned_urls"] = [{"filename": name, "url": f"{FILES}/x?{SIGNED}"}]
    router.get(JOB_URL).respond(200, json=answer)
    router.get(url__startswith=f"{FILES}/").respond(200, content=b"data")
    if not name:  # a link without a name is not a file of the export
        assert await client.download_export("export:jobs:NX-1:a/b", tmp_path / "out") == []
        return
    with pytest.raises(Exception, match="plain file name"):
        await client.download_export("export:jobs:NX-1:a/b", tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


async def test_download_writes_whole_files_skips_them_on_a_rerun_and_refuses_others(
    router: respx.MockRouter, client: AsyncAnalytex, tmp_path: Path
) -> None:
    body = ndjson_gz(EVENT)
    etag = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
    router.get(JOB_URL).respond(200, json=job(files=2))
    files = router.get(url__startswith=f"{FILES}/").respond(
        200, content=body, headers={"ETag": etag}
    )
    target = tmp_path / "exports" / "nov"
    paths = await client.download_export("export:jobs:NX-1:a/b", target)
    assert [p.name for p in paths] == ["part-0.ndjson.gz", "part-1.ndjson.gz"]
    assert all(p.read_bytes() == body for p in paths)
    assert not list(target.glob("*.part"))
    again = await client.download_export("export:jobs:NX-1:a/b", target)
    assert again == paths
    assert files.call_count == 4  # the rerun looked, and read nothing more
    paths[1].write_bytes(b"x" * len(body))  # same size, another content: the ETag tells
    with pytest.raises(FileExistsError):
        await client.download_export("export:jobs:NX-1:a/b", target)
    await client.download_export("export:jobs:NX-1:a/b", target, overwrite=True)
    assert paths[1].read_bytes() == body


async def test_lookups_follow_the_after_cursor_and_accept_either_shape(
    router: respx.MockRouter, client: AsyncAnalytex
) -> None:
    pages = router.get(f"{EXPORTS}/lookups/segments").mock(
        side_effect=[
            httpx.Response(200, json={"data": [{"id": 1}],
                                      "metadata": {"cursor": {"after": "c/2", "before": None}}}),
            httpx.Response(200, json={"data": [{"id": 2}],
                                      "metadata": {"cursor": {"after": None}}}),
        ]
    )  # fmt: skip
    router.get(f"{EXPORTS}/lookups/flows").respond(200, json=[{"id": "f"}])
    assert [s["id"] async for s in client.lookup("segments")] == [1, 2]
    assert pages.calls[1].request.url.params["after_cursor"] == "c/2"
    assert [f["id"] async for f in client.lookup("flows")] == ["f"]


async def test_an_unknown_lookup_is_a_value_error_listing_the_names(client: AsyncAnalytex) -> None:
    with pytest.raises(ValueError, match="user_properties"):
        client.lookup("nope")


def test_appex_url_falls_back_as_the_contract_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANALYTEX_BASE_URL", raising=False)
    monkeypatch.delenv("ANALYTEX_APPEX_URL", raising=False)
    assert AsyncAnalytex(API_KEY)._exports.appex_url == "https://appex.userpilot.io"
    assert (
        AsyncAnalytex(API_KEY, base_url="http://127.0.0.1:8000")._exports.appex_url
        == "http://127.0.0.1:8000"
    )
    assert (
        AsyncAnalytex(API_KEY, base_url="https://analytex.userpilot.io")._exports.appex_url
        == "https://appex.userpilot.io"
    )
    assert AsyncAnalytex(API_KEY, region="eu")._exports.appex_url is None
    monkeypatch.setenv("ANALYTEX_BASE_URL", "http://localhost:9")
    assert AsyncAnalytex(API_KEY)._exports.appex_url == "http://localhost:9"
    monkeypatch.setenv("ANALYTEX_APPEX_URL", "https://appex.example/")
    assert AsyncAnalytex(API_KEY)._exports.appex_url == "https://appex.example"
    assert AsyncAnalytex(API_KEY, appex_url="http://[::1]:8")._exports.appex_url == "http://[::1]:8"
    with pytest.raises(ConfigurationError, match="plain http"):
        AsyncAnalytex(API_KEY, appex_url="http://appex.example")


async def test_the_eu_region_needs_an_appex_url() -> None:
    client = AsyncAnalytex(API_KEY, region="eu")
    with pytest.raises(ConfigurationError, match="appex_url"):
        await client.list_exports()


@pytest.mark.parametrize(("fmt", "module"), [("parquet", "pyarrow"), ("avro", "fastavro")])
async def test_a_missing_extra_fails_before_the_export_starts_naming_it(
    router: respx.MockRouter,
    client: AsyncAnalytex,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    module: str,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    route = router.post(EXPORTS)
    with pytest.raises(ImportError, match=rf"analytex-async\[{fmt}\]"):
        await client.start_export(start="2026-11-01", end="2026-12-01", format=fmt)
    assert not route.called
