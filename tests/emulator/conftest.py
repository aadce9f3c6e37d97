"""Fixtures for the emulator's tests: a fake clock, an emulator, an in-process client."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from analytex_async.emulator import Emulator

EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
KEY = "test-key"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FakeClock:
    """A clock the test moves by hand: no test waits for real time to pass."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock, epoch=EPOCH)


def in_process_client(emulator: Emulator, key: str | None = KEY) -> httpx.AsyncClient:
    headers = {"Authorization": f"Token {key}"} if key is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator.app), base_url="http://test", headers=headers
    )


class Api:
    """Small helpers over an httpx client talking to the emulator."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @staticmethod
    def ndjson(records: Iterable[Mapping[str, Any]]) -> bytes:
        return b"".join(json.dumps(record).encode() + b"\n" for record in records)

    @staticmethod
    def users(count: int, start: int = 0) -> list[dict[str, Any]]:
        return [{"user_id": f"u{i}", "metadata": {"n": i}} for i in range(start, start + count)]

    async def identify(self, body: Mapping[str, Any]) -> httpx.Response:
        return await self.client.post("/v1/identify", json=body)

    async def track(self, body: Mapping[str, Any]) -> httpx.Response:
        return await self.client.post("/v1/track", json=body)

    async def upload(
        self, kind: str, data: bytes, filename: str = "batch.ndjson"
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/{kind}/bulk_identify",
            files={"file": (filename, data, "application/x-ndjson")},
        )

    async def bulk_json(self, kind: str, records: list[dict[str, Any]]) -> httpx.Response:
        return await self.client.post(f"/v1/{kind}/bulk_identify", json={kind: records})

    async def job(self, job_id: str) -> httpx.Response:
        return await self.client.get(f"/v1/background_jobs/{quote(job_id, safe='')}")

    @staticmethod
    def error(response: httpx.Response, status: int) -> dict[str, Any]:
        """Assert the status and the documented error body; return its one error."""
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"errors"}
        [error] = body["errors"]
        assert set(error) == {"error", "error_code", "message", "details"}
        assert isinstance(error["error"], str)
        assert error["error"]
        assert isinstance(error["error_code"], str)
        assert error["error_code"]
        assert isinstance(error["message"], str)
        assert error["message"]
        assert error["details"] is None or isinstance(error["details"], dict)
        return dict(error)


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(emulator) as client:
        yield client


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@pytest.fixture
def make_client() -> Any:
    return in_process_client
