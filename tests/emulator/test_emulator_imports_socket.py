"""POST /v1/imports, request ids and answers lost after handling, over a real loopback socket."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from analytex_async.emulator import Emulator, serve

pytestmark = pytest.mark.anyio

KEY = "socket-key"
EVENT = {
    "event_type": "identify_user",
    "user_id": "u1",
    "metadata": {"plan": "pro"},
    "source": "backend-http-import",
    "inserted_at": "2024-07-28 08:55:35.874555",
}


@pytest.fixture
def anyio_backend():
    return "asyncio"  # uvicorn is asyncio-only; the in-process tests cover trio


@pytest.fixture
async def served(clock):
    emulator = Emulator(clock=clock)
    async with serve(emulator) as base_url:
        yield emulator, base_url


def client(base_url: str, **options) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Token {KEY}"}, **options
    )


def upload(filename: str) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (filename, json.dumps(EVENT).encode() + b"\n", "application/x-ndjson")}


async def test_an_import_over_the_socket(served, clock):
    emulator, base_url = served
    async with client(base_url, timeout=5) as http:
        response = await http.post("/v1/imports", files=upload("import-1-1.ndjson"))
        assert response.status_code == 200
        assert re.fullmatch(r"[A-Za-z0-9]{20}", response.headers["x-request-id"])
        job = response.json()
        assert (job["type"], job["total_rows"], job["filename"]) == (
            "import",
            "1",
            "import-1-1.ndjson",
        )
        clock.advance(10)
        listed = (await http.get("/v1/background_jobs")).json()
        assert [j["status"] for j in listed] == ["completed"]
        shown = (await http.get("/_emulator/events")).json()
    assert emulator.users["u1"].metadata == {"plan": "pro"}
    assert shown[0]["event_type"] == "identify_user"
    assert shown[0]["inserted_at"] == "2024-07-28T08:55:35.874555+00:00"


async def test_an_answer_dropped_after_handling_closes_the_connection(served):
    emulator, base_url = served
    emulator.faults.add("/v1/imports", drop_connection=True, after_handling=True)
    async with client(base_url, timeout=5) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/v1/imports", files=upload("import-2-1.ndjson"))
        # the job was created: the client finds it by its file name
        listed = (await http.get("/v1/background_jobs")).json()
    assert [j["filename"] for j in listed] == ["import-2-1.ndjson"]
    assert emulator.requests[0].status is None


async def test_an_answer_delayed_after_handling_is_a_read_timeout(served):
    emulator, base_url = served
    emulator.faults.add("/v1/imports", delay=0.5, after_handling=True)
    timeout = httpx.Timeout(5, read=0.1)
    async with client(base_url, timeout=timeout) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/imports", files=upload("import-3-1.ndjson"))
        listed = (await http.get("/v1/background_jobs")).json()
    assert [j["filename"] for j in listed] == ["import-3-1.ndjson"]
