"""Bulk submits: JSON and NDJSON bodies, line-numbered validation, the 413 limits."""

from __future__ import annotations

import json
import uuid

import pytest

from analytex_async.emulator import Emulator

pytestmark = pytest.mark.anyio


def multipart(*parts: bytes, boundary: bytes = b"b0undary", close: bool = True) -> bytes:
    """Hand-made multipart framing; each part is its header block, a blank line and content."""
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


FILE_PART = b'Content-Disposition: form-data; name="file"; filename="f.ndjson"\r\n\r\n'
MULTIPART = "multipart/form-data; boundary=b0undary"


async def test_a_json_submit_answers_202_with_the_full_job_object(api):
    records = [{"user_id": "u1", "company_id": "c1", "metadata": {"plan": "pro"}}]
    response = await api.bulk_json("users", records)
    assert response.status_code == 202
    job = response.json()
    uuid.UUID(job["job_id"], version=4)
    assert job == {
        "job_id": job["job_id"],
        "status": "queued",
        "type": "bulk_identify_users",
        "total_rows": 1,
        "completed_rows": 0,
        "submitted_at": "2025-01-01T00:16:40.000Z",
        "start_time": None,
        "end_time": None,
        "elapsed_time": None,
        "file_size": len(response.request.content),
        "filename": None,
        "links": {"self": f"http://test/v1/background_jobs/{job['job_id']}"},
    }


async def test_an_ndjson_upload_is_accepted_for_users_and_companies(api, emulator, clock):
    data = api.ndjson([{"user_id": "u1", "company_id": "c1", "metadata": {"a": 1}}])
    response = await api.upload("users", data, filename="people.ndjson")
    assert response.status_code == 202
    assert response.json()["filename"] == "people.ndjson"
    assert response.json()["file_size"] == len(data)
    clock.advance(60)
    companies = api.ndjson([{"company_id": "c1", "metadata": {"seats": 3}}])
    response = await api.upload("companies", companies)
    assert response.status_code == 202
    assert response.json()["type"] == "bulk_identify_companies"
    clock.advance(60)
    assert emulator.users["u1"].company_id == "c1"
    assert emulator.companies["c1"].metadata == {"seats": 3}


async def test_crlf_lines_and_trailing_blank_lines_are_tolerated(api):
    data = b'{"user_id": "u1"}\r\n{"user_id": "u2"}\r\n\r\n  \n'
    response = await api.upload("users", data)
    assert response.status_code == 202
    assert response.json()["total_rows"] == 2


async def test_metadata_primitives_are_accepted_in_bulk(api, emulator, clock):
    metadata = {"s": "x", "i": 1, "f": 1.5, "t": True, "n": None, "neg": -3e10}
    response = await api.bulk_json("users", [{"user_id": "u1", "metadata": metadata}])
    assert response.status_code == 202
    clock.advance(1)
    assert emulator.users["u1"].metadata == metadata


U = '{"user_id": "ok"}'


@pytest.mark.parametrize(
    ("lines", "line", "code", "field"),
    [
        ([U, U, '{"user_id": '], 3, "invalid_ndjson_line", None),
        ([U, "[1, 2]"], 2, "invalid_ndjson_line", None),
        (['"u1"'], 1, "invalid_ndjson_line", None),
        ([U, "{}"], 2, "missing_user_id", "user_id"),
        ([U, '{"user_id": ""}'], 2, "missing_user_id", "user_id"),
        ([U, '{"user_id": 5}'], 2, "missing_user_id", "user_id"),
        (
            [U, U, U, '{"user_id": "u", "metadata": {"x": {"y": 1}}}'],
            4,
            "non_primitive_metadata",
            "metadata.x",
        ),
        (
            [U, '{"user_id": "u", "metadata": {"tags": ["a"]}}'],
            2,
            "non_primitive_metadata",
            "metadata.tags",
        ),
        ([U, '{"user_id": "u", "metadata": "plan=pro"}'], 2, "invalid_metadata", "metadata"),
        ([U, '{"user_id": "u", "company_id": 9}'], 2, "invalid_company_id", "company_id"),
        ([U, "", U], 2, "invalid_ndjson_line", None),
        ([U, '{"user_id": "u", "metadata": {"x": NaN}}'], 2, "invalid_ndjson_line", None),
        ([U, '{"user_id": "u"} trailing'], 2, "invalid_ndjson_line", None),
    ],
)
async def test_an_invalid_ndjson_line_is_400_naming_its_line(
    api, emulator, lines, line, code, field
):
    data = "\n".join(lines).encode() + b"\n"
    error = api.error(await api.upload("users", data), 400)
    assert error["error_code"] == code
    assert error["details"]["line"] == line
    assert error["message"].startswith(f"line {line}: ")
    if field is not None:
        assert error["details"]["field"] == field
    assert emulator.jobs == {}


async def test_a_companies_line_without_company_id_is_400(api):
    data = b'{"company_id": "c1"}\n{"user_id": "u1"}\n'
    error = api.error(await api.upload("companies", data), 400)
    assert (error["error_code"], error["details"]["line"]) == ("missing_company_id", 2)


async def test_non_utf8_bytes_are_400_naming_the_line(api):
    data = b'{"user_id": "a"}\n{"user_id": "b"}\n{"user_id": "\xc3\x28"}\n'
    error = api.error(await api.upload("users", data), 400)
    assert (error["error_code"], error["details"]["line"]) == ("invalid_utf8", 3)
    assert "line 3" in error["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"users": [{"user_id": "a"}, {"user_id": "b"}, {"metadata": {}}]}, "missing_user_id"),
        ({"users": [{"user_id": "a"}, "b"]}, "invalid_record"),
        ({"users": [{"user_id": "a", "metadata": {"x": [1]}}]}, "non_primitive_metadata"),
        ({"users": {"user_id": "a"}}, "invalid_payload"),
        ({"companies": [{"company_id": "c"}]}, "invalid_payload"),
        ({"users": []}, "empty_batch"),
        ([{"user_id": "a"}], "invalid_payload"),
    ],
)
async def test_an_invalid_json_bulk_body_is_400(api, body, code):
    response = await api.client.post("/v1/users/bulk_identify", json=body)
    assert api.error(response, 400)["error_code"] == code


async def test_a_json_bulk_error_names_the_index(api):
    body = {"users": [{"user_id": "a"}, {"user_id": "b"}, {"user_id": "c", "metadata": []}]}
    error = api.error(await api.client.post("/v1/users/bulk_identify", json=body), 400)
    assert error["details"] == {"index": 2, "field": "metadata"}
    assert error["message"].startswith("users[2]: metadata")


@pytest.mark.parametrize(
    ("content", "content_type", "code"),
    [
        (b"", "multipart/form-data; boundary=b0undary", "invalid_multipart"),
        (b"not multipart at all", MULTIPART, "invalid_multipart"),
        (multipart(FILE_PART + b'{"user_id": "u"}'), "multipart/form-data", "invalid_multipart"),
        (multipart(FILE_PART + b'{"user_id": "u"}', close=False), MULTIPART, "invalid_multipart"),
        (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"\r\n',
            MULTIPART,
            "invalid_multipart",
        ),
        (multipart(b"X-Whatever: 1\r\n\r\ndata"), MULTIPART, "invalid_multipart"),
        (multipart(b"no colon here\r\n\r\ndata"), MULTIPART, "invalid_multipart"),
        (
            multipart(b'Content-Disposition: form-data; name="data"\r\n\r\n{}'),
            MULTIPART,
            "missing_file_part",
        ),
        (multipart(FILE_PART + b"{}", FILE_PART + b"{}"), MULTIPART, "missing_file_part"),
        (multipart(FILE_PART + b""), MULTIPART, "empty_batch"),
        (multipart(FILE_PART + b"\n\n"), MULTIPART, "empty_batch"),
        (b'{"users": [{"user_id": "u"}]}', "text/plain", "invalid_content_type"),
        (b'{"users": [{"user_id": "u"}]}', None, "invalid_content_type"),
        (b"users=u", "application/x-www-form-urlencoded", "invalid_content_type"),
        (b'{"users": [', "application/json", "invalid_json"),
        (b"\xff\xfe{}", "application/json", "invalid_utf8"),
    ],
)
async def test_every_malformed_bulk_body_is_a_4xx_with_the_error_body(
    api, content, content_type, code
):
    headers = {"Content-Type": content_type} if content_type else {}
    for kind in ("users", "companies"):
        response = await api.client.post(
            f"/v1/{kind}/bulk_identify", content=content, headers=headers
        )
        assert api.error(response, 400)["error_code"] == code


async def test_a_hand_made_multipart_with_a_preamble_and_other_fields_is_accepted(api):
    body = b"preamble to ignore\r\n" + multipart(
        b'Content-Disposition: form-data; name="note"\r\n\r\nhello',
        b'Content-Disposition: form-data; name="file"; filename="x.ndjson"\r\n'
        b"Content-Type: application/x-ndjson\r\n\r\n"
        b'{"user_id": "u1"}\n{"user_id": "u2"}',
    )
    response = await api.client.post(
        "/v1/users/bulk_identify",
        content=body,
        headers={"Content-Type": 'multipart/form-data; boundary="b0undary"'},
    )
    assert response.status_code == 202, response.text
    assert response.json()["total_rows"] == 2
    assert response.json()["filename"] == "x.ndjson"


async def test_over_max_records_is_413_for_json_and_ndjson(api, clock, make_client):
    body = {"users": [{"user_id": f"u{i}"} for i in range(10_001)]}
    error = api.error(await api.client.post("/v1/users/bulk_identify", json=body), 413)
    assert error["error"] == "payload_too_large"
    assert error["error_code"] == "too_many_records"
    assert error["details"] == {"records": 10_001, "max_records": 10_000}

    emulator = Emulator(clock=clock, max_records=5, rows_per_minute=60_000)
    async with make_client(emulator) as client:
        small = type(api)(client)
        six = small.ndjson(small.users(6))
        assert (
            small.error(await small.upload("users", six), 413)["error_code"] == "too_many_records"
        )
        assert (await small.upload("users", small.ndjson(small.users(5)))).status_code == 202
    assert emulator.requests[0].status == 413


async def test_a_body_over_max_bytes_is_413_on_its_content_length(clock, make_client, api):
    emulator = Emulator(clock=clock, max_bytes=2000)
    async with make_client(emulator) as client:
        records = [{"user_id": f"user-{i:04d}"} for i in range(200)]
        response = await client.post("/v1/users/bulk_identify", json={"users": records})
    error = api.error(response, 413)
    assert error["error_code"] == "body_too_large"
    assert error["details"] == {"max_bytes": 2000}
    assert emulator.requests[-1].body_size == len(response.request.content)


async def test_a_body_of_exactly_max_bytes_is_accepted(clock, make_client):
    emulator = Emulator(clock=clock, max_bytes=2000)
    base = json.dumps({"users": [{"user_id": "u"}]}).encode()
    async with make_client(emulator) as client:
        exact = await client.post(
            "/v1/users/bulk_identify",
            content=base + b" " * (2000 - len(base)),
            headers={"Content-Type": "application/json"},
        )
        assert exact.status_code == 202
        emulator.reset()
        over = await client.post(
            "/v1/users/bulk_identify",
            content=base + b" " * (2001 - len(base)),
            headers={"Content-Type": "application/json"},
        )
        assert over.status_code == 413


async def test_a_streamed_body_is_read_only_up_to_max_bytes(clock, api):
    # Driven at the ASGI level: the client never stops sending and declares no length, so only
    # a reader that stops at max_bytes + 1 can answer at all.
    emulator = Emulator(clock=clock, max_bytes=10_000)
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 1000, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/users/bulk_identify",
        "raw_path": b"/v1/users/bulk_identify",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", b"Token k"), (b"content-type", b"application/json")],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1234),
    }
    await emulator.app(scope, receive, send)
    assert sent[0]["status"] == 413
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["errors"][0]["error_code"] == "body_too_large"
    assert pulled == 11  # stopped at the first chunk past the limit
    assert emulator.requests[-1].body_size == 11_000


async def test_the_byte_limit_applies_to_real_time_bodies_too(clock, make_client, api):
    emulator = Emulator(clock=clock, max_bytes=100)
    async with make_client(emulator) as client:
        response = await client.post(
            "/v1/identify", json={"user_id": "u", "metadata": {"x": "y" * 200}}
        )
    assert api.error(response, 413)["error_code"] == "body_too_large"


async def test_a_non_numeric_content_length_is_400(api):
    response = await api.client.post(
        "/v1/identify",
        content=b'{"user_id": "u"}',
        headers={"Content-Type": "application/json", "Content-Length": "lots"},
    )
    assert api.error(response, 400)["error_code"] == "invalid_content_length"


async def test_a_unicode_digit_content_length_is_400(api):
    # "\xb2" (superscript two) passes str.isdigit() but not int(): it must not become a 500
    response = await api.client.post(
        "/v1/identify",
        content=b"{}",
        headers={"Content-Type": b"application/json", "Content-Length": b"\xb2"},
    )
    assert api.error(response, 400)["error_code"] == "invalid_content_length"
