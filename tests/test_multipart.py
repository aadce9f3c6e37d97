"""Multipart bodies: exact framing and length, streaming in bounded chunks, replay, and readers."""

from __future__ import annotations

import email.parser
import email.policy
import re
import time
from collections.abc import AsyncIterable
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async import RetryPolicy
from analytex_async._bulk._batching import (
    MAX_BATCH_BYTES,
    MAX_REQUEST_BYTES,
    Batcher,
    encode_record,
)
from analytex_async._bulk._multipart import (
    LONGEST_UPLOAD_FILENAME,
    MultipartFile,
    multipart_overhead,
    upload_filename,
)
from analytex_async._transport import Transport
from analytex_async.emulator import Emulator
from analytex_async.emulator._multipart import parse_file_upload

pytestmark = pytest.mark.anyio

LINES = [b'{"user_id":"u1"}\n', '{"user_id":"ü","metadata":{"n":2}}\n'.encode()]


async def read_all(content: bytes | AsyncIterable[bytes]) -> bytes:
    if isinstance(content, bytes):
        return content
    return b"".join([chunk async for chunk in content])


def framed(lines: list[bytes], boundary: str, filename: str = "batch.ndjson") -> bytes:
    """The body RFC 7578 describes, written out by hand."""
    return (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/x-ndjson\r\n"
            "\r\n"
        ).encode()
        + b"".join(lines)
        + f"\r\n--{boundary}--\r\n".encode()
    )


def parse_with_email(body: bytes, content_type: str) -> Any:
    """Read a multipart body back with the standard library's MIME parser."""
    message = b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(message)
    assert parsed.is_multipart()
    assert not parsed.defects
    (part,) = parsed.iter_parts()
    return part


# -- framing and length ------------------------------------------------------------------------


def test_the_body_is_framed_as_rfc_7578_says() -> None:
    body = MultipartFile(LINES, filename="users-3.ndjson", boundary="b0und4ry")
    expected = (
        b"--b0und4ry\r\n"
        b'Content-Disposition: form-data; name="file"; filename="users-3.ndjson"\r\n'
        b"Content-Type: application/x-ndjson\r\n"
        b"\r\n" + b"".join(LINES) + b"\r\n--b0und4ry--\r\n"
    )
    assert expected == framed(LINES, "b0und4ry", "users-3.ndjson")
    assert b"".join(body.chunks()) == expected
    assert body.content_length == len(expected)
    assert body.content_type == "multipart/form-data; boundary=b0und4ry"
    assert body.headers == {
        "Content-Type": "multipart/form-data; boundary=b0und4ry",
        "Content-Length": str(len(expected)),
    }


@given(
    filename=st.from_regex(r"[a-zA-Z0-9 ._()-]{1,40}", fullmatch=True),
    boundary=st.from_regex(r"[0-9A-Za-z'+_.-]{1,70}", fullmatch=True),
    sizes=st.lists(st.integers(1, 50), max_size=20),
)
def test_the_overhead_is_the_body_length_less_the_content(
    filename: str, boundary: str, sizes: list[int]
) -> None:
    lines = [b"{" * (size - 1) + b"\n" for size in sizes]
    try:
        body = MultipartFile(lines, filename=filename, boundary=boundary)
    except ValueError:  # the boundary happens to occur in the content
        return
    assert body.content_length == multipart_overhead(filename, boundary) + sum(sizes)
    assert body.content_length == len(b"".join(body.chunks()))


def test_the_default_overhead_is_184_bytes() -> None:
    assert multipart_overhead("batch.ndjson", "0" * 32) == 184
    body = MultipartFile(LINES)
    assert body.content_length - sum(map(len, LINES)) == 184


def test_an_empty_file_is_just_the_framing() -> None:
    body = MultipartFile([], boundary="b")
    assert body.content_length == multipart_overhead("batch.ndjson", "b")
    assert parse_file_upload(b"".join(body.chunks()), body.content_type).data == b""


def test_a_random_boundary_is_32_hex_characters_and_fresh_each_time() -> None:
    first, second = MultipartFile(LINES), MultipartFile(LINES)
    assert re.fullmatch(r"[0-9a-f]{32}", first.boundary)
    assert first.boundary != second.boundary


def test_the_body_does_not_change_when_the_callers_list_does() -> None:
    lines = list(LINES)
    body = MultipartFile(lines, boundary="b")
    before = b"".join(body.chunks())
    lines.append(b'{"user_id":"late"}\n')
    lines[0] = b"{}\n"
    assert b"".join(body.chunks()) == before
    assert body.content_length == len(before)


# -- boundary and argument checks -------------------------------------------------------------


def test_a_random_boundary_is_chosen_without_scanning_the_content(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 128-bit random boundary cannot collide in practice; scanning 50 MB for it would stall
    # the event loop, so a random boundary is used as drawn.
    def scan(self: MultipartFile, boundary: str) -> bool:
        raise AssertionError("the content was scanned for a random boundary")

    monkeypatch.setattr(MultipartFile, "_occurs_in_content", scan)
    line = b'{"user_id":"u1"}\n'
    body = MultipartFile([line] * 3, checked_size=3 * len(line))
    assert re.fullmatch(r"[0-9a-f]{32}", body.boundary)


def test_a_given_boundary_that_occurs_in_the_content_is_refused() -> None:
    with pytest.raises(ValueError, match="occurs in the content"):
        MultipartFile([b'{"user_id":"xyz"}\n'], boundary="user_id")


@pytest.mark.parametrize("boundary", ["", "a" * 71, "has space", "semi;colon", 'quo"te', "ü"])
def test_a_boundary_that_would_need_quoting_or_is_too_long_is_refused(boundary: str) -> None:
    with pytest.raises(ValueError, match="boundary"):
        MultipartFile(LINES, boundary=boundary)


@pytest.mark.parametrize("filename", ["", 'a"b', "a\\b", "a\r\nb", "naïve.ndjson"])
def test_a_filename_that_cannot_go_in_quotes_as_is_is_refused(filename: str) -> None:
    with pytest.raises(ValueError, match="filename"):
        MultipartFile(LINES, filename=filename)
    with pytest.raises(ValueError, match="filename"):
        multipart_overhead(filename, "b")


@pytest.mark.parametrize("chunk_size", [0, -1, True, 1.5])
def test_chunk_size_must_be_a_positive_integer(chunk_size: object) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        MultipartFile(LINES, chunk_size=chunk_size)  # type: ignore[arg-type]


def test_a_line_without_its_newline_is_refused() -> None:
    with pytest.raises(ValueError, match=r"line 1 does not end"):
        MultipartFile([b"{}\n", b"{}"])


# -- chunking ------------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 3000), max_size=60),
    chunk_size=st.integers(1, 2000),
)
def test_chunks_never_join_more_than_chunk_size_and_long_lines_go_uncopied(
    sizes: list[int], chunk_size: int
) -> None:
    lines = [bytes([97 + i % 26]) * (size - 1) + b"\n" for i, size in enumerate(sizes)]
    body = MultipartFile(lines, boundary="B", chunk_size=chunk_size)
    chunks = list(body.chunks())
    assert b"".join(chunks) == framed(lines, "B")
    preamble = framed([], "B")[: -len(b"\r\n--B--\r\n")]
    framing = {preamble, b"\r\n--B--\r\n"}
    for chunk in chunks:
        # A join never exceeds chunk_size; only one piece longer than that on its own may.
        assert len(chunk) <= chunk_size or chunk in framing or chunk in lines
    # Every line at least chunk_size long is yielded as the very same object: no copy.
    long_lines = {id(line) for line in body.lines if len(line) >= chunk_size}
    assert long_lines <= {id(chunk) for chunk in chunks}


def test_chunks_hold_about_chunk_size_bytes_each() -> None:
    lines = [b"x" * 99 + b"\n"] * 1000  # 100,000 bytes of content
    body = MultipartFile(lines, boundary="B", chunk_size=1000)
    chunks = list(body.chunks())
    assert b"".join(chunks) == framed(lines, "B")
    assert max(map(len, chunks)) <= 1000
    # Greedy grouping: every chunk but the last is within one line of being full.
    assert all(len(chunk) > 1000 - 100 for chunk in chunks[:-1])


def test_a_small_body_is_one_chunk() -> None:
    body = MultipartFile(LINES)
    assert len(list(body.chunks())) == 1


# -- replay --------------------------------------------------------------------------------------


async def test_each_attempt_streams_exactly_content_length_bytes() -> None:
    body = MultipartFile([b"x" * 999 + b"\n"] * 50, chunk_size=4096)
    headers, content = body.factory()()
    data = await read_all(content)
    assert len(data) == body.content_length == int(headers["Content-Length"])
    assert data == framed([b"x" * 999 + b"\n"] * 50, body.boundary)


async def test_every_attempt_replays_the_whole_body_from_the_start() -> None:
    body = MultipartFile([b"y" * 99 + b"\n"] * 100, chunk_size=1000)
    factory = body.factory()
    _, abandoned = body.body()
    iterator = abandoned.__aiter__()
    await iterator.__anext__()  # an attempt that dies after its first chunk
    _, first = factory()
    _, second = factory()
    first_bytes, second_bytes = await read_all(first), await read_all(second)
    assert first_bytes == second_bytes
    assert len(first_bytes) == body.content_length


# -- what httpx sends, and what readers make of it ------------------------------------------


async def test_httpx_sends_a_content_length_and_no_chunked_encoding() -> None:
    body = MultipartFile(LINES)
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        headers, content = body.factory()()
        request = client.build_request("POST", "https://a.test/", headers=headers, content=content)
        await client.send(request)
    (sent,) = captured
    assert sent.headers["content-length"] == str(body.content_length)
    assert "transfer-encoding" not in sent.headers
    assert sent.content == b"".join(body.chunks())


async def test_on_the_wire_the_request_has_a_content_length_and_exactly_that_body() -> None:
    body = MultipartFile([b"z" * 9_999 + b"\n"] * 30, chunk_size=16_384)
    received: list[tuple[bytes, bytes]] = []

    async def serve_one(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, rest = data.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length:\s*(\d+)\r?$", head)
            assert match is not None, head
            while len(rest) < int(match.group(1)):
                rest += await stream.receive()
            received.append((head, rest))
            await stream.send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (not Django)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        async with httpx.AsyncClient(trust_env=False) as client:
            headers, content = body.factory()()
            response = await client.post(
                f"http://127.0.0.1:{port}/v1/users/bulk_identify", headers=headers, content=content
            )
        tg.cancel_scope.cancel()
    assert response.status_code == 202
    ((head, sent),) = received
    assert b"transfer-encoding" not in head.lower()
    assert f"content-length: {body.content_length}".encode() in head.lower()
    assert sent == b"".join(body.chunks())


async def test_a_retried_request_resends_the_whole_body() -> None:
    body = MultipartFile([b"r" * 499 + b"\n"] * 40, chunk_size=2048)
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(503 if len(bodies) == 1 else 202, json={"job_id": "j1"})

    policy = RetryPolicy(max_retries=2, initial_delay=0, max_delay=0, random=lambda: 0.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http_client:
        transport = Transport(
            http_client, base_url="https://a.test", api_key="k", retry=policy, max_concurrency=1
        )
        response = await transport.request("POST", "/v1/users/bulk_identify", body=body.factory())
    assert response.status_code == 202
    assert len(bodies) == 2
    assert bodies[0] == bodies[1] == b"".join(body.chunks())


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8")),
)
records = st.fixed_dictionaries(
    {
        "user_id": st.text(st.characters(codec="utf-8"), min_size=1),
        "metadata": st.dictionaries(
            st.text(st.characters(codec="utf-8")), json_scalars, max_size=4
        ),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(records, max_size=30), st.integers(1, 300))
def test_the_standard_mime_parser_reads_the_part_back_exactly(
    wire_records: list[dict[str, Any]], chunk_size: int
) -> None:
    lines = [encode_record(record) for record in wire_records]
    body = MultipartFile(lines, filename="users.ndjson", chunk_size=chunk_size)
    part = parse_with_email(b"".join(body.chunks()), body.content_type)
    assert part.get_content_disposition() == "form-data"
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "users.ndjson"
    assert part.get_content_type() == "application/x-ndjson"
    assert part.get_payload(decode=True) == b"".join(lines)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b + b"\n"), max_size=30))
def test_the_emulators_strict_reader_gets_back_the_very_same_bytes(lines: list[bytes]) -> None:
    body = MultipartFile(lines, filename="any.ndjson", chunk_size=64)
    part = parse_file_upload(b"".join(body.chunks()), body.content_type)
    assert part.data == b"".join(lines)
    assert part.filename == "any.ndjson"


def emulator_client(emulator: Emulator, key: str = "k") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator.app),
        base_url="http://emulator.test",
        headers={"Authorization": f"Token {key}"},
    )


async def post_upload(client: httpx.AsyncClient, body: MultipartFile) -> httpx.Response:
    headers, content = body.factory()()
    return await client.post("/v1/users/bulk_identify", headers=headers, content=content)


def user_line(size: int) -> bytes:
    """A valid NDJSON user record of exactly ``size`` bytes."""
    padding = size - len(b'{"user_id":""}\n')
    return b'{"user_id":"' + b"u" * padding + b'"}\n'


async def test_the_emulator_accepts_a_streamed_upload() -> None:
    lines = [encode_record({"user_id": f"u{i}", "metadata": {"n": i}}) for i in range(500)]
    body = MultipartFile(lines, filename="users-0.ndjson", chunk_size=1024)
    async with emulator_client(Emulator(clock=lambda: 0.0)) as client:
        response = await post_upload(client, body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["total_rows"] == 500
    assert job["file_size"] == sum(map(len, lines))
    assert job["filename"] == "users-0.ndjson"


async def test_a_body_of_exactly_the_servers_limit_passes_and_one_byte_more_does_not() -> None:
    # An independent check of the overhead arithmetic: the emulator counts the whole body.
    limit = 5_000
    emulator = Emulator(clock=lambda: 0.0, max_bytes=limit)
    exact = MultipartFile([user_line(limit - multipart_overhead("batch.ndjson", "0" * 32))])
    over = MultipartFile([user_line(limit - multipart_overhead("batch.ndjson", "0" * 32) + 1)])
    assert (exact.content_length, over.content_length) == (limit, limit + 1)
    async with emulator_client(emulator) as client:
        refused = await post_upload(client, over)
        accepted = await post_upload(client, exact)
    assert refused.status_code == 413, refused.text
    assert accepted.status_code == 202, accepted.text


async def test_batches_filled_to_a_budget_all_fit_the_servers_body_limit() -> None:
    limit = 5_000
    emulator = Emulator(clock=lambda: 0.0, max_bytes=limit)
    batcher = Batcher(max_bytes=limit - multipart_overhead("batch.ndjson", "0" * 32))
    batches = [b for p in range(120) if (b := batcher.add(p, user_line(97 + p % 7)))]
    assert len(batches) >= 2
    for number, batch in enumerate(batches):
        body = MultipartFile(batch.lines)
        assert limit - 103 < body.content_length <= limit  # full to within one line
        async with emulator_client(emulator, key=f"account-{number}") as client:
            response = await post_upload(client, body)
        assert response.status_code == 202, response.text
        assert response.json()["total_rows"] == batch.count


# -- the 50,000,000-byte request limit ----------------------------------------------------------


@pytest.fixture(scope="module")
def ten_megabyte_lines() -> tuple[bytes, bytes]:
    # Five lines that add up to exactly the batch budget; two objects, reused, keep it at 20 MB.
    size = MAX_BATCH_BYTES // 5
    last = MAX_BATCH_BYTES - 4 * size
    return b"a" * (size - 1) + b"\n", b"a" * (last - 1) + b"\n"


def test_a_full_default_batch_fits_in_50_000_000_bytes_framing_included(
    ten_megabyte_lines: tuple[bytes, bytes],
) -> None:
    started = time.perf_counter()
    line, last = ten_megabyte_lines
    batcher = Batcher()
    for position in range(4):
        assert batcher.add(position, line) is None
    assert batcher.add(4, last) is None
    spill = batcher.add(5, b"{}\n")  # not one byte more fits
    assert spill is not None
    assert spill.size == MAX_BATCH_BYTES
    # The budget leaves room for the longest upload file name, and uses it to the byte.
    body = MultipartFile(spill.lines, filename=LONGEST_UPLOAD_FILENAME)
    assert body.content_length == MAX_REQUEST_BYTES
    real = MultipartFile(spill.lines, filename=upload_filename("0123456789abcdef", "12345.0.1"))
    assert real.content_length <= MAX_REQUEST_BYTES
    streamed = sum(len(chunk) for chunk in body.chunks())
    assert streamed == body.content_length
    assert time.perf_counter() - started < 2
