"""client.background in real web apps, under a burst of logins, against the emulator on loopback.

A FastAPI app opens the client in its lifespan (driven by the ASGI lifespan protocol, as a
server drives it) and an aiohttp app in its ``cleanup_ctx`` (served on 127.0.0.1 by aiohttp's
TestServer). Each login handler calls ``client.background.identify`` and ``.track`` and times
itself; after shutdown the emulator must hold every profile and every event, with no 429.

These run on the real clock (uvicorn and aiohttp need asyncio) at the default ``DeliveryPolicy``:
the burst fits the emulator's real-time windows (600 identifies and 600 tracks a minute), so
nothing waits a minute; every login is a signup (an identify, then a track of the same user).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fastapi import FastAPI, Request

from analytex_async import AsyncAnalytex, DeliveryStats
from analytex_async.emulator import Emulator, serve
from analytex_async.testing import EmulatedAnalytex

pytestmark = pytest.mark.anyio

LOGINS = 400
KEY = "sk_test_web_apps"
P99_BOUND = 0.005  # seconds in the SDK per handler call: generous, the target is 100 µs

Message = MutableMapping[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn (serve) and aiohttp are asyncio-only


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, samples: list[float]) -> float:
    p99 = percentile(samples, 0.99)
    print(
        f"\n{name}: {len(samples)} handler calls, in the SDK p50 "
        f"{statistics.median(samples) * 1e6:.0f} µs, p99 {p99 * 1e6:.0f} µs, "
        f"max {max(samples) * 1e6:.0f} µs"
    )
    return p99


def login(client: AsyncAnalytex, user_id: str, in_sdk: list[float]) -> None:
    """What the handler does with Analytex, timed."""
    start = time.perf_counter()
    client.background.identify(user_id, metadata={"plan": "pro"}, company={"id": "acme"})
    client.background.track(user_id, "Logged In", metadata={"via": "password"})
    in_sdk.append(time.perf_counter() - start)


def assert_everything_arrived(emulator: Emulator, stats: DeliveryStats) -> None:
    users = {f"user-{n}" for n in range(LOGINS)}
    assert set(emulator.users) == users
    assert all(emulator.users[u].metadata == {"plan": "pro"} for u in users)
    assert sorted(e.user_id for e in emulator.events) == sorted(users)
    assert {e.event_name for e in emulator.events} == {"Logged In"}
    statuses = [r.status for r in emulator.requests]
    assert statuses.count(429) == 0
    assert set(statuses) == {202}, statuses  # the API accepts real-time calls with 202
    assert stats == DeliveryStats(queued=2 * LOGINS, delivered=2 * LOGINS)


@contextlib.asynccontextmanager
async def asgi_lifespan(app: Callable[..., Awaitable[None]]) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan as a server does: startup, the block, then shutdown."""
    to_app_send, to_app = anyio.create_memory_object_stream[Message](2)
    from_app_send, from_app = anyio.create_memory_object_stream[Message](2)
    async with to_app_send, to_app, from_app_send, from_app, anyio.create_task_group() as tasks:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        tasks.start_soon(app, scope, to_app.receive, from_app_send.send)
        await to_app_send.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        yield
        await to_app_send.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


def fastapi_app(base_url: str, opened: list[AsyncAnalytex], in_sdk: list[float]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The default policy, as most apps run it (the old delivery deadlocked at it).
        async with AsyncAnalytex(api_key=KEY, base_url=base_url) as client:
            app.state.analytex = client
            opened.append(client)
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/login/{user_id}")
    async def log_in(user_id: str, request: Request) -> dict[str, bool]:
        login(request.app.state.analytex, user_id, in_sdk)
        return {"ok": True}

    return app


async def test_a_fastapi_app_under_a_burst_of_logins_never_waits_and_loses_nothing() -> None:
    emulator = Emulator()
    opened: list[AsyncAnalytex] = []
    in_sdk: list[float] = []
    async with serve(emulator) as base_url:
        app = fastapi_app(base_url, opened, in_sdk)
        transport = httpx.ASGITransport(app=app)
        async with (
            asgi_lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as http,
        ):

            async def one(n: int) -> int:
                return (await http.post(f"/login/user-{n}")).status_code

            answers: list[int] = []

            async def collect(n: int) -> None:
                answers.append(await one(n))

            async with anyio.create_task_group() as tasks:
                for n in range(LOGINS):
                    tasks.start_soon(collect, n)
            assert answers == [200] * LOGINS
        # The lifespan has exited: the client drained and closed.
        [client] = opened
        stats = client.background.stats
    assert_everything_arrived(emulator, stats)
    assert len(in_sdk) == LOGINS
    assert report("FastAPI", in_sdk) < P99_BOUND


def aiohttp_app(base_url: str, opened: list[AsyncAnalytex], in_sdk: list[float]) -> web.Application:
    analytex = web.AppKey("analytex", AsyncAnalytex)

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        # The default policy, as most apps run it (the old delivery deadlocked at it).
        async with AsyncAnalytex(api_key=KEY, base_url=base_url) as client:
            app[analytex] = client
            opened.append(client)
            yield

    async def log_in(request: web.Request) -> web.Response:
        login(request.app[analytex], request.match_info["user_id"], in_sdk)
        return web.json_response({"ok": True})

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_post("/login/{user_id}", log_in)
    return app


async def test_an_aiohttp_app_under_a_burst_of_logins_never_waits_and_loses_nothing() -> None:
    emulator = Emulator()
    opened: list[AsyncAnalytex] = []
    in_sdk: list[float] = []
    async with serve(emulator) as base_url:
        app = aiohttp_app(base_url, opened, in_sdk)
        answers: list[int] = []
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:

            async def collect(n: int) -> None:
                async with http.post(f"/login/user-{n}") as response:
                    answers.append(response.status)

            async with anyio.create_task_group() as tasks:
                for n in range(LOGINS):
                    tasks.start_soon(collect, n)
            assert answers == [200] * LOGINS
        # TestClient's exit ran the app's cleanup: the client drained and closed.
        [client] = opened
        stats = client.background.stats
    assert_everything_arrived(emulator, stats)
    assert report("aiohttp", in_sdk) < P99_BOUND


async def test_a_handler_still_answers_fast_while_the_server_is_slow() -> None:
    """A server that takes a second per request costs the handler nothing."""
    emulator = Emulator()
    emulator.faults.add("/v1/identify", delay=1.0, times=None)
    opened: list[AsyncAnalytex] = []
    in_sdk: list[float] = []
    async with serve(emulator) as base_url:
        app = aiohttp_app(base_url, opened, in_sdk)
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            started = time.perf_counter()
            for n in range(20):
                async with http.post(f"/login/user-{n}") as response:
                    assert response.status == 200
            handlers = time.perf_counter() - started
        [client] = opened
        stats = client.background.stats
    assert handlers < 1.0  # twenty logins, one after another, before the first identify answered
    assert stats.delivered == 40
    assert len(emulator.users) == 20


async def test_background_delivery_works_through_emulated_analytex() -> None:
    """What a user's test of such an app uses: the client EmulatedAnalytex opens."""
    async with EmulatedAnalytex() as analytex:
        analytex.client.background.identify("u1", metadata={"plan": "pro"})
        analytex.client.background.track("u1", "Logged In")
        stats = await analytex.client.background.flush(timeout=10)
        assert stats == DeliveryStats(queued=2, delivered=2)
        assert analytex.emulator.users["u1"].metadata == {"plan": "pro"}
        assert [e.event_name for e in analytex.emulator.events] == ["Logged In"]
