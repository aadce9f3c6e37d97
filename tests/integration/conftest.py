"""Integration fixtures: an unmodified client against the emulator, in process and on a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from analytex_async import AsyncAnalytex, RetryPolicy
from analytex_async.emulator import Emulator, serve
from analytex_async.testing import EmulatedAnalytex

FAST = RetryPolicy(max_retries=3, initial_delay=0.0, max_delay=0.0, random=lambda: 0.0)


@attrs.define
class Wired:
    """A client and the emulator it talks to."""

    client: AsyncAnalytex
    emulator: Emulator
    over_socket: bool


def wiring_params() -> list[Any]:
    """In process on asyncio and trio; over a loopback socket on asyncio (uvicorn's loop)."""
    return [
        pytest.param(("asyncio", "in-process"), id="asyncio-in-process"),
        pytest.param(("trio", "in-process"), id="trio-in-process"),
        pytest.param(("asyncio", "socket"), id="asyncio-socket"),
    ]


@pytest.fixture(params=wiring_params())
def wiring(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(wiring: tuple[str, str]) -> str:
    return wiring[0]


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(rows_per_minute=600_000)


@pytest.fixture
async def wired(wiring: tuple[str, str], emulator: Emulator) -> AsyncIterator[Wired]:
    if wiring[1] == "in-process":
        async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
            yield Wired(analytex.client, emulator, over_socket=False)
    else:
        async with (
            serve(emulator) as base_url,
            AsyncAnalytex(api_key="socket-key", base_url=base_url, retry_policy=FAST) as client,
        ):
            yield Wired(client, emulator, over_socket=True)
