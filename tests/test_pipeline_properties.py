"""Property: whatever the mix of records and limits, every valid record is sent exactly once,
in order, and every invalid one is rejected exactly once."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async import AsyncAnalytex, RetryPolicy
from analytex_async._bulk._options import ImportOptions
from analytex_async._bulk._pipeline import ImportRun
from analytex_async.governors._local import RowGovernor

valid = st.builds(
    lambda i, meta: {"user_id": f"u{i}", "metadata": meta},
    st.integers(0, 10**6),
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                  st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30)),
        max_size=4,
    ),
)  # fmt: skip
invalid = st.one_of(
    st.just({"user_id": ""}),
    st.just({"metadata": {}}),
    st.builds(lambda i: {"user_id": f"x{i}", "metadata": {"list": [1]}}, st.integers()),
    st.builds(lambda i: {"user_id": f"x{i}", "metadata": {"n": float("nan")}}, st.integers()),
    st.just("not a mapping"),
    st.builds(lambda i: {"user_id": f"x{i}", "metadata": {"big": 2**70}}, st.integers()),
    st.builds(lambda i: {"user_id": f"x{i}", "extra": 1}, st.integers()),
)
records = st.lists(st.tuples(st.booleans(), valid, invalid), max_size=60).map(
    lambda rows: [(ok, v if ok else bad) for ok, v, bad in rows]
)


def ndjson_lines(request: httpx.Request) -> list[dict[str, Any]]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    (part,) = message.iter_parts()
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return [json.loads(line) for line in payload.splitlines()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=records, batch_size=st.integers(1, 7), max_bytes=st.integers(150, 900))
def test_valid_records_are_sent_once_in_order_and_invalid_ones_rejected_once(
    rows: list[tuple[bool, Any]], batch_size: int, max_bytes: int
) -> None:
    sent: list[dict[str, Any]] = []
    jobs = 0

    def server(request: httpx.Request) -> httpx.Response:
        nonlocal jobs
        if request.method == "GET":
            job_id = request.url.path.rsplit("/", 1)[-1]
            return httpx.Response(200, json={"job_id": job_id, "status": "completed"})
        lines = ndjson_lines(request)
        assert 1 <= len(lines) <= batch_size
        assert sum(len(json.dumps(x, ensure_ascii=False, separators=(",", ":")).encode()) + 1
                   for x in lines) <= max_bytes  # fmt: skip
        sent.extend(lines)
        jobs += 1
        return httpx.Response(202, json={"job_id": f"j{jobs}", "status": "queued"})

    async def main() -> Any:
        http = httpx.AsyncClient(transport=httpx.MockTransport(server))
        async with http, AsyncAnalytex(
            api_key="k", base_url="https://a.test", http_client=http,
            retry_policy=RetryPolicy(max_retries=0),
        ) as client:  # fmt: skip
            run = ImportRun(
                client._transport, RowGovernor(10**9), "user", rows_per_minute=10**9,
                options=ImportOptions(batch_size=batch_size, max_batch_bytes=max_bytes),
            )  # fmt: skip
            return await run.run([record for _, record in rows])

    result = anyio.run(main)

    def wire(r: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": r["user_id"], **({"metadata": r["metadata"]} if r["metadata"] else {})}

    def size(r: dict[str, Any]) -> int:
        return len(json.dumps(wire(r), ensure_ascii=False, separators=(",", ":")).encode()) + 1

    fitting = [i for i, (ok, r) in enumerate(rows) if ok and size(r) <= max_bytes]
    assert sent == [wire(rows[i][1]) for i in fitting]
    rejected_positions = [r.position for r in result.rejected]
    too_big = [i for i, (ok, _) in enumerate(rows) if ok and i not in fitting]
    assert rejected_positions == sorted([i for i, (ok, _) in enumerate(rows) if not ok] + too_big)
    assert len(set(rejected_positions)) == len(rejected_positions)
    assert result.rows_read == len(rows)
    assert result.rows_sent == len(sent)
