"""The Redis sync state, against real ``redis-server`` processes these tests start themselves.

Three layers:

* the ``SyncState`` contract, as ``test_sync_state.py`` checks it on SQLite (answers, marks,
  missing ids, binding to a kind and a host);
* one run at a time across processes: a second run refused at once, a killed run's lock
  expiring by itself (with a one-second ``lock_ttl``, so no test waits a minute), a live run
  keeping its lock however long it waits;
* whole syncs: from another process in another working directory (another host, as far as
  the state can tell), and with Redis restarted in the middle of a run.

The random-runs property of ``test_sync_properties.py`` runs on this state too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
from click.testing import Result

from analytex_async import (
    ConfigurationError,
    ImportAbortedError,
    ImportProgress,
    RedisSyncState,
    SyncState,
)
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from ._net import wait_until
from ._uploads import Uploads
from .redis_server import RedisServer, running_redis
from .test_cli import Served, key, run, served, users, write_ndjson

__all__ = ["key", "run", "served"]  # fixtures, used by name

pytestmark = pytest.mark.anyio

FAST = 600_000
"""Rows a minute for the emulator and the client: jobs complete at once on the real clock."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client; the trio refusal is tested on its own


@pytest.fixture
def name() -> str:
    """A state name of its own for each test, so tests never share state."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def url(redis_server: RedisServer, name: str) -> str:
    return f"{redis_server.url}?name={name}"


# -- the SyncState contract ----------------------------------------------------------------------


async def test_a_redis_state_is_a_sync_state(url: str) -> None:
    assert isinstance(RedisSyncState(url), SyncState)


async def test_any_id_and_any_digest_go_through_as_given(url: str) -> None:
    ids = ["a:b", "3:", "Zürich", "x\ny", "-", "=", "u" * 300, "\ud800 lone"]
    digests = [b"", b"-", b"=", b"3:", b"\x00" * 40, bytes(range(256)), b"=x", b":"]
    state = RedisSyncState(url)
    await state.begin("user", "api.test")
    assert await state.present(list(zip(ids, digests, strict=True))) == [None] * len(ids)
    await state.store([pair for pair in zip(ids, digests, strict=True) if "\ud800" not in pair[0]])
    await state.end()
    await state.begin("user", "api.test")
    answers = await state.present([(record_id, b"new") for record_id in ids])
    assert answers == [*digests[:-1], None]
    await state.end()


async def test_lookups_go_a_thousand_ids_a_command_in_one_round_trip(url: str) -> None:
    state = RedisSyncState(url)
    await state.begin("user", "api.test")
    await state.store([(f"u{i}", b"d") for i in range(2_500)])
    answers = await state.present([(f"u{i}", b"e") for i in range(3_000)])
    assert answers == [b"d"] * 2_500 + [None] * 500
    await state.end()


async def test_another_name_is_another_state_and_a_refusal_says_how_to_name_one(
    url: str, redis_server: RedisServer
) -> None:
    state = RedisSyncState(url)
    await state.begin("user", "api.analytex.test")
    await state.end()
    with pytest.raises(ConfigurationError, match=r"holds users, not companies.*\?name="):
        await RedisSyncState(url).begin("company", "api.analytex.test")
    other = RedisSyncState(redis_server.url, name=f"{state.name}-companies")
    await other.begin("company", "api.analytex.test")
    await other.end()


async def test_the_run_leaves_only_the_binding_and_the_digests(
    url: str, name: str, raw: redis.asyncio.Redis
) -> None:
    state = RedisSyncState(url)
    await state.begin("user", "api.test")
    await state.present([("a", b"1"), ("b", None)])
    await state.store([("a", b"1")])
    _ = [chunk async for chunk in state.missing(10)]
    await state.end()
    keys = sorted([k.decode() async for k in raw.scan_iter(match=f"analytex:sync:{{{name}}}:*")])
    prefix = f"analytex:sync:{{{name}}}"
    assert keys == [f"{prefix}:digests", f"{prefix}:meta"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": "state.sqlite"}, "redis:// or rediss:// URL"),
        ({"url": "http://:hunter2@redis:6379"}, "redis:// or rediss:// URL"),
        ({"name": "a b"}, "name"),
        ({"name": "{x}"}, "name"),
        ({"url": "redis://127.0.0.1/0?name=a", "name": "b"}, "give one"),
        ({"lock_ttl": 0}, "lock_ttl"),
        ({"lock_ttl": 61}, "at most 60"),
        ({"timeout": float("nan")}, "timeout"),
    ],
)
def test_bad_settings_are_refused_at_construction(arguments: dict[str, Any], message: str) -> None:
    arguments = {"url": "redis://127.0.0.1:1/0", **arguments}
    with pytest.raises(ConfigurationError, match=message) as caught:
        RedisSyncState(**arguments)
    assert "hunter2" not in str(caught.value)


async def test_the_password_never_shows_in_the_repr_or_the_errors() -> None:
    state = RedisSyncState("redis://user:hunter2@127.0.0.1:1/0?name=users", timeout=0.5)
    assert repr(state) == "RedisSyncState('redis://user:***@127.0.0.1:1/0', name='users')"
    assert state.url == "redis://user:***@127.0.0.1:1/0"
    with pytest.raises(ConfigurationError, match="cannot open the sync state") as caught:
        await state.begin("user", "api.test")  # nothing listens on port 1
    assert "hunter2" not in str(caught.value)
    assert "user:***@127.0.0.1:1" in str(caught.value)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_it_says_it_needs_asyncio(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"needs the asyncio event loop.*SQLite"):
        await RedisSyncState(url).begin("user", "api.test")


# -- one run at a time ---------------------------------------------------------------------------


async def test_a_live_run_keeps_its_lock_however_long_it_waits(url: str) -> None:
    first = RedisSyncState(url, lock_ttl=0.3)
    await first.begin("user", "api.test")
    await anyio.sleep(1.0)  # three lock lifetimes without a call: a job being waited for
    with pytest.raises(ConfigurationError, match="in use by another sync"):
        await RedisSyncState(url).begin("user", "api.test")
    await first.store([("a", b"1")])  # still its own
    await first.end()


async def test_a_run_that_lost_its_lock_writes_nothing_more(
    url: str, name: str, raw: redis.asyncio.Redis
) -> None:
    state = RedisSyncState(url)
    await state.begin("user", "api.test")
    await state.store([("a", b"1")])
    await raw.delete(f"analytex:sync:{{{name}}}:lock")  # as a Redis restart would
    with pytest.raises(ConfigurationError, match="lost this run's lock"):
        await state.store([("b", b"2")])
    with pytest.raises(ConfigurationError, match="lost this run's lock"):
        await state.present([("a", b"1")])
    await state.end()
    digests = await raw.hgetall(f"analytex:sync:{{{name}}}:digests")
    assert digests == {b"a": b"1"}


HOLDER = """
import sys, time, anyio
from analytex_async import RedisSyncState

async def main():
    state = RedisSyncState(sys.argv[1], lock_ttl=1.0)
    await state.begin("user", sys.argv[2])
    await state.store([("held", b"1")])
    print("held", flush=True)
    time.sleep(600)  # killed before this ends

anyio.run(main)
"""


@pytest.fixture
def holder(url: str, served: Served) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the state (a sync in progress), its lock living one second."""
    host = served.url.split("//", 1)[1].split(":", 1)[0]
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, host], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def cli_sync(
    served: Served, key: str, source: Path, state: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``analytex-async sync users SOURCE --state STATE`` as a process of its own in ``cwd``."""
    environment = {
        **os.environ,
        "ANALYTEX_API_KEY": key,
        "ANALYTEX_BASE_URL": served.url,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "analytex_async",
            "sync",
            "users",
            str(source),
            "--state",
            state,
            "--rows-per-minute",
            str(FAST),
            "--json",
        ],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_process_is_refused_at_once_and_a_killed_runs_lock_expires(
    holder: subprocess.Popen[str], served: Served, key: str, url: str, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(3))
    refused = cli_sync(served, key, source, url, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "in use by another sync" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not served.requests_of(key)
    # Killed mid-run: nothing releases its lock, which expires by itself (lock_ttl=1 s).
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed = time.monotonic()
    outcome: list[subprocess.CompletedProcess[str]] = []

    def syncs() -> bool:
        outcome.append(cli_sync(served, key, source, url, tmp_path))
        return outcome[-1].returncode != 2

    assert wait_until(syncs, timeout=20, interval=0.1)
    assert outcome[-1].returncode == 0, outcome[-1].stderr
    # Within its one-second lock_ttl, plus the time the CLI takes to start (slow on a busy
    # machine); the default lock (30 s) would not have let it in this soon.
    assert time.monotonic() - killed < 20
    assert json.loads(outcome[-1].stdout)["sync"]["new"] == 3


# -- whole syncs ---------------------------------------------------------------------------------


def test_a_run_on_another_host_sends_only_what_changed(
    run: Callable[..., Result], served: Served, key: str, url: str, tmp_path: Path
) -> None:
    first_host, second_host = tmp_path / "monday-worker", tmp_path / "tuesday-worker"
    first_host.mkdir()
    second_host.mkdir()
    records = users(20)
    source = write_ndjson(first_host / "users.ndjson", records)
    first = cli_sync(served, key, source, url, first_host)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["sync"]["new"] == 20
    records[3]["metadata"]["n"] = "changed"
    records.append({"user_id": "new-one", "metadata": {}})
    source = write_ndjson(second_host / "users.ndjson", records)
    second = cli_sync(served, key, source, url, second_host)
    assert second.returncode == 0, second.stderr
    counts = json.loads(second.stdout)["sync"]
    assert (counts["new"], counts["changed"], counts["unchanged"]) == (1, 1, 19)
    assert json.loads(second.stdout)["rows_sent"] == 2
    # Nothing was written in either working directory but the sources.
    assert sorted(p.name for p in first_host.iterdir()) == ["users.ndjson"]
    assert sorted(p.name for p in second_host.iterdir()) == ["users.ndjson"]
    assert served.account(key).users["u3"].metadata == {"n": "changed"}


async def test_redis_restarted_mid_run_fails_clearly_and_the_next_run_sends_the_rest(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as server:
        state = f"{server.url}?name=restart"
        emulator = Emulator(rows_per_minute=FAST)
        uploads = Uploads(emulator)
        records = users(40)
        restarted = False

        def restart_after_two_batches(progress: ImportProgress) -> None:
            nonlocal restarted
            if progress.batches_sent == 2 and not restarted:
                restarted = True
                server.stop()  # it keeps nothing: the digests stored so far are gone too
                server.start()

        async with EmulatedAnalytex(emulator, rows_per_minute=FAST) as analytex:
            client = analytex.client
            with pytest.raises((ConfigurationError, ImportAbortedError)) as caught:
                await client.sync_users(
                    records, state=state, batch_size=5, on_progress=restart_after_two_batches
                )
            message = str(caught.value)
            assert "the sync state RedisSyncState(" in message
            assert "run the sync again" in message or "sync run again" in message
            sent_first = len(uploads.sent)
            assert sent_first >= 10  # the restart came after two batches

            # The next run sends what the state does not hold (here: everything, Redis having
            # kept nothing), and every record ends on the server; the one after sends nothing.
            again = await client.sync_users(records, state=state, batch_size=5)
            assert again.ok
            assert again.rows_sent == 40
            assert {u["user_id"] for u in uploads.sent} == {r["user_id"] for r in records}
            assert len(emulator.users) == 40
            last = await client.sync_users(records, state=state, batch_size=5)
            assert (last.rows_sent, last.rows_unchanged) == (0, 40)


def test_the_command_line_never_shows_the_password(
    run: Callable[..., Result], served: Served, key: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(2))
    state = f"redis://:hunter2@127.0.0.1:{redis_server.port}/0?name=secret"
    result = run("sync", "users", str(source), "--state", state, "--rows-per-minute", "600000")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "Sync against redis://:***@127.0.0.1" in result.stdout
    as_json = run("sync", "users", str(source), "--state", state, "--json")
    assert "hunter2" not in as_json.output
    assert json.loads(as_json.stdout)["sync"]["state"].startswith("redis://:***@127.0.0.1")
    # The same URL given to a sync that is refused: the error shows it redacted too.
    other_kind = run("sync", "companies", str(source), "--state", state)
    assert other_kind.exit_code == 2
    assert "hunter2" not in other_kind.output
    assert "redis://:***@127.0.0.1" in other_kind.stderr
