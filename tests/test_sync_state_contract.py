"""The ``SyncState`` contract, on every state the SDK ships: SQLite (asyncio and trio) and Redis.

Each test runs against a fresh state of each kind: the answers of ``present``, the missing ids,
the binding to a kind and an API host, and one run at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analytex_async import ConfigurationError, RedisSyncState, SQLiteSyncState, SyncState

pytestmark = pytest.mark.anyio

MakeState = Callable[[], SyncState]


@pytest.fixture(
    params=[("sqlite", "asyncio"), ("sqlite", "trio"), ("redis", "asyncio")],
    ids=["sqlite-asyncio", "sqlite-trio", "redis"],
)
def store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Which state, on which backend (redis-py's client needs asyncio)."""
    kind, backend = request.param
    return kind, backend


@pytest.fixture
def anyio_backend(store: tuple[str, str]) -> str:
    return store[1]


@pytest.fixture
def make_state(store: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path) -> MakeState:
    """A factory of states that all open the same store (another process's view of it)."""
    if store[0] == "sqlite":
        path = tmp_path / "state" / "users.sqlite"
        return lambda: SQLiteSyncState(path)
    server: Any = request.getfixturevalue("redis_server")
    url = f"{server.url}?name=contract-{uuid.uuid4().hex[:12]}"
    return lambda: RedisSyncState(url)


async def test_it_is_a_sync_state(make_state: MakeState) -> None:
    assert isinstance(make_state(), SyncState)


async def test_present_answers_the_stored_digest_then_this_runs_earlier_one(
    make_state: MakeState,
) -> None:
    state = make_state()
    await state.begin("user", "api.test")
    assert await state.present([("a", b"1"), ("b", b"2")]) == [None, None]
    await state.store([("a", b"1"), ("b", b"2"), ("a", b"1b")])  # a later pair wins
    await state.end()

    await state.begin("user", "api.test")
    answers = await state.present([("a", b"x"), ("c", b"3"), ("a", b"y"), ("b", None)])
    assert answers == [b"1b", None, b"x", b"2"]
    # In a later call of the same run, the digest marked earlier in the run comes first; a
    # rejected record (None) marks the id without replacing it; an empty digest is a digest.
    assert await state.present([("a", None), ("a", b"z"), ("c", b"4"), ("b", b"")]) == [
        b"y",
        b"y",
        b"3",
        b"2",
    ]
    assert await state.present([("b", b"5")]) == [b""]
    await state.end()


async def test_missing_lists_stored_ids_not_marked_and_forget_drops_them(
    make_state: MakeState,
) -> None:
    state = make_state()
    await state.begin("user", "api.test")
    await state.store([(f"u{i}", b"d") for i in range(2_500)])
    await state.end()

    await state.begin("user", "api.test")
    await state.present([(f"u{i}", b"d") for i in range(0, 2_500, 2)])
    await state.present([("u1", None)])  # a rejected record's id counts as present
    chunks = [chunk async for chunk in state.missing(1_000)]
    assert [len(c) for c in chunks] == [1_000, 249]
    gone = [i for chunk in chunks for i in chunk]
    assert "u1" not in gone
    assert sorted(gone) == sorted(f"u{i}" for i in range(3, 2_500, 2))
    await state.forget(gone)
    assert [chunk async for chunk in state.missing(1_000)] == []
    await state.end()

    await state.begin("user", "api.test")  # a new run: no marks
    remaining = [i for chunk in [c async for c in state.missing(5_000)] for i in chunk]
    assert len(remaining) == 1_251
    await state.end()


async def test_a_state_of_another_kind_or_host_is_refused(make_state: MakeState) -> None:
    state = make_state()
    await state.begin("user", "api.analytex.test")
    await state.end()
    with pytest.raises(ConfigurationError, match="holds users, not companies"):
        await make_state().begin("company", "api.analytex.test")
    with pytest.raises(ConfigurationError, match=r"belongs to the API at api\.analytex\.test"):
        await make_state().begin("user", "eu.analytex.test")
    again = make_state()
    await again.begin("user", "api.analytex.test")
    await again.end()


async def test_a_second_run_fails_at_once_and_the_first_goes_on(make_state: MakeState) -> None:
    first = make_state()
    await first.begin("user", "api.test")
    await first.store([("a", b"1")])
    with pytest.raises(ConfigurationError, match="in use by another sync"):
        await make_state().begin("user", "api.test")
    await first.store([("b", b"2")])
    await first.end()
    second = make_state()
    await second.begin("user", "api.test")
    assert await second.present([("a", b""), ("b", b"")]) == [b"1", b"2"]
    await second.end()


async def test_methods_need_a_begun_run(make_state: MakeState) -> None:
    state = make_state()
    with pytest.raises(RuntimeError, match="begin"):
        await state.store([("a", b"1")])
    await state.begin("user", "api.test")
    with pytest.raises(RuntimeError, match="already in use"):
        await state.begin("user", "api.test")
    await state.end()
    await state.end()  # twice is harmless
