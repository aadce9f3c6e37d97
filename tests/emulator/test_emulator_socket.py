"""The emulator over a real loopback socket: serve() under asyncio, run() in a subprocess."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest

from analytex_async.emulator import Emulator, serve

from .._net import free_port, wait_for_port

KEY = "socket-key-secret"


@pytest.fixture
def anyio_backend():
    return "asyncio"  # uvicorn is asyncio-only; the in-process tests cover trio


@pytest.fixture
async def served(clock):
    emulator = Emulator(clock=clock, max_bytes=5_000, job_id_factory=lambda: "bulk:jobs:NX-1:a/b")
    async with serve(emulator) as base_url:
        yield emulator, base_url


@pytest.fixture
async def http(served):
    _, base_url = served
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Token {KEY}"}, timeout=5
    ) as client:
        yield client


@pytest.mark.anyio
async def test_serve_binds_loopback_on_a_free_port(served, http):
    emulator, base_url = served
    assert base_url.startswith("http://127.0.0.1:")
    assert int(base_url.rsplit(":", 1)[1]) > 0
    assert (await http.post("/v1/identify", json={"user_id": "u1"})).status_code == 202
    assert "u1" in emulator.users


@pytest.mark.anyio
async def test_an_ndjson_upload_and_an_encoded_job_id_over_the_socket(served, http, clock):
    emulator, _ = served
    data = b'{"user_id": "a"}\n{"user_id": "b"}\n'
    response = await http.post(
        "/v1/users/bulk_identify", files={"file": ("x.ndjson", data, "application/x-ndjson")}
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    clock.advance(10)
    job = await http.get(f"/v1/background_jobs/{quote(job_id, safe='')}")
    assert (job.status_code, job.json()["status"]) == (200, "completed")
    assert (await http.get("/v1/background_jobs/bulk%3Ajobs%3ANX-1%3Aa/b")).status_code == 404
    assert set(emulator.users) == {"a", "b"}


@pytest.mark.anyio
async def test_413_over_the_socket(http):
    records = [{"user_id": f"user-{i:05d}"} for i in range(1000)]
    response = await http.post("/v1/users/bulk_identify", json={"users": records})
    assert response.status_code == 413
    assert response.json()["errors"][0]["error_code"] == "body_too_large"


@pytest.mark.anyio
async def test_a_dropped_connection_is_an_incomplete_response_for_the_client(served, http, caplog):
    emulator, _ = served
    caplog.set_level(logging.DEBUG)
    emulator.faults.add("/v1/identify", drop_connection=True)
    with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
        await http.post("/v1/identify", json={"user_id": "u1"})
    assert emulator.requests[-1].status is None
    # the next request on the same client works (a fresh connection)
    assert (await http.post("/v1/identify", json={"user_id": "u1"})).status_code == 202
    assert "Traceback" not in caplog.text
    assert "ConnectionDropped" not in caplog.text
    assert KEY not in caplog.text


@pytest.mark.anyio
async def test_an_error_in_the_block_propagates_unwrapped_and_stops_the_server():
    emulator = Emulator()
    with pytest.raises(KeyError, match="boom"):
        async with serve(emulator) as base_url:
            raise KeyError("boom")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{base_url}/v1/background_jobs")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_serve_explains_that_it_needs_asyncio(anyio_backend):
    with pytest.raises(RuntimeError, match="asyncio"):
        async with serve(Emulator()):
            pass


def test_run_serves_until_stopped_and_hides_dropped_connection_tracebacks():
    port = free_port()
    script = (
        "from analytex_async.emulator import Emulator, run\n"
        "emulator = Emulator()\n"
        "emulator.faults.add('/v1/identify', drop_connection=True)\n"
        f"run(port={port}, emulator=emulator)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        assert wait_for_port(port, process=process), "the emulator did not start"
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {KEY}"}) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post("/v1/identify", json={"user_id": "u1"})
            assert client.post("/v1/identify", json={"user_id": "u1"}).status_code == 202
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert f"Uvicorn running on http://127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr
    assert KEY not in stderr


@pytest.mark.anyio
async def test_inspection_and_the_key_allow_list_over_the_socket(clock):
    emulator = Emulator(api_keys={KEY}, clock=clock)
    async with serve(emulator) as base_url, httpx.AsyncClient(base_url=base_url) as person:
        refused = await person.post(
            "/v1/identify", json={"user_id": "u1"}, headers={"Authorization": "Token wrong"}
        )
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["error_code"] == "invalid_api_key"
        accepted = await person.post(
            "/v1/users/bulk_identify",
            json={"users": [{"user_id": "u1", "metadata": {"plan": "pro"}}]},
            headers={"Authorization": f"Token {KEY}"},
        )
        assert accepted.status_code == 202
        clock.advance(5)
        # no key needed to look, and none shown
        user = await person.get("/_emulator/users/u1")
        jobs = await person.get("/_emulator/jobs")
    assert user.json() == {"user_id": "u1", "metadata": {"plan": "pro"}}
    [job] = jobs.json()
    assert job["status"] == "completed"
    assert job["links"]["self"].startswith(f"{base_url}/v1/background_jobs/")
    assert KEY not in user.text + jobs.text


def test_run_accepts_only_the_listed_keys_and_answers_the_inspection_routes():
    port = free_port()
    script = (
        "from analytex_async.emulator import run\n"
        f"run(port={port}, api_keys=[{KEY!r}, 'second-key'])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert wait_for_port(port, process=process), "the emulator did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            wrong = client.post(
                "/v1/identify", json={"user_id": "u1"}, headers={"Authorization": "Token other"}
            )
            for key in (KEY, "second-key"):
                right = client.post(
                    "/v1/identify",
                    json={"user_id": "u1", "company": {"id": "c1"}},
                    headers={"Authorization": f"Token {key}"},
                )
                assert right.status_code == 202
            user = client.get("/_emulator/users/u1")
            company = client.get("/_emulator/companies/c1")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert wrong.status_code == 401
    assert user.json() == {"user_id": "u1", "company_id": "c1", "metadata": {}}
    assert company.json() == {"company_id": "c1", "metadata": {}}
    assert KEY not in stderr
    assert "Traceback" not in stderr


@pytest.mark.anyio
async def test_a_dropped_connection_with_a_large_body_is_cut_off_not_reset(clock):
    # The server stops reading a large body it has not asked for; closing with those bytes
    # unread would reset the connection, and the client would lose the response it was sent.
    emulator = Emulator(clock=clock)
    emulator.faults.add("/v1/users/bulk_identify", drop_connection=True)
    data = b'{"user_id": "u"}\n' * 100_000  # 1.7 MB, far past the server's read buffer
    async with serve(emulator) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
            await client.post(
                "/v1/users/bulk_identify",
                files={"file": ("big.ndjson", data, "application/x-ndjson")},
                headers={"Authorization": f"Token {KEY}"},
            )
    assert emulator.requests[-1].status is None
