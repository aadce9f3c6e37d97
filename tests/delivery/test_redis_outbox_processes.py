"""The Redis outbox across real processes: pods without disks, and a pod killed mid-replay.

Every worker runs in a working directory of its own (nothing may be written there: a pod's disk
dies with it); the server is the emulator in a process of its own; Redis is a real
``redis-server``. The outbox's lease and claim interval are shortened to seconds
(``_redis_outbox_worker``), as ``RedisOutbox``'s keywords allow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests._net import free_port
from tests.redis_server import RedisServer, running_redis

from ._emulator_process import ROOT, emulator_process

USERS = 8  # an identify and a track each
LEASE, INTERVAL = 2.0, 0.5


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return f"{redis_server.url}?name=p-{uuid.uuid4().hex[:12]}"


def worker(module: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """A worker process in ``cwd``, an empty directory of its own (a pod's own disk)."""
    cwd.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.delivery.{module}", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def last_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def spill(tmp_path: Path, url: str) -> None:
    """A process that spills every user's identify and track: its server is down."""
    down = f"http://127.0.0.1:{free_port()}"
    stats = last_line(
        worker("_worker_process", tmp_path / "spiller", "spill", down, url, "a", str(USERS), "0.5")
    )
    assert stats["queued"] == stats["spilled"] == 2 * USERS


def stream_left(redis_server: RedisServer, url: str) -> tuple[int, int]:
    """Entries in the outbox's stream, and how many some consumer holds."""
    name = url.partition("?name=")[2]
    client = redis.Redis.from_url(redis_server.url)
    try:
        [key] = client.keys(f"analytex:outbox:{{{name}:*}}:records")
        groups = client.xinfo_groups(key)  # none until a client claimed
        pending = groups[0]["pending"] if groups else 0
        return int(client.xlen(key)), int(pending)
    finally:
        client.close()


def delivered_once(seen: Any) -> None:
    expected = sorted(f"a-{n}" for n in range(USERS))
    assert sorted(seen.users) == expected
    assert seen.users["a-3"]["metadata"] == {"n": 3, "tag": "a"}
    assert sorted(event["user_id"] for event in seen.events) == expected  # each once


def test_one_pod_spills_another_replays_and_neither_writes_to_its_disk(
    tmp_path: Path, redis_server: RedisServer, url: str
) -> None:
    spill(tmp_path, url)
    assert stream_left(redis_server, url) == (2 * USERS, 0)
    with emulator_process(tmp_path) as emulator:
        replayed = last_line(
            worker("_worker_process", tmp_path / "replayer", "replay", emulator.base_url, url)
        )
    seen = emulator.stop()
    assert replayed["replayed"] == replayed["delivered"] == 2 * USERS
    assert replayed["spilled"] == replayed["dropped"] == 0
    delivered_once(seen)
    assert Counter(seen.statuses()) == {202: 2 * USERS}
    assert stream_left(redis_server, url) == (0, 0)
    assert os.listdir(tmp_path / "spiller") == []
    assert os.listdir(tmp_path / "replayer") == []


@pytest.mark.parametrize("opens", ["before the kill", "after the kill"])
def test_the_records_of_a_killed_pod_are_taken_over_by_another(
    tmp_path: Path, redis_server: RedisServer, url: str, opens: str
) -> None:
    spill(tmp_path, url)
    down = f"http://127.0.0.1:{free_port()}"
    knobs = (str(LEASE), str(INTERVAL))
    holder = worker("_redis_outbox_worker", tmp_path / "holder", "hold", down, url, *knobs)
    try:
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        assert held["replayed"] == 2 * USERS
        assert stream_left(redis_server, url) == (2 * USERS, 2 * USERS)  # all claimed by it
        with emulator_process(tmp_path) as emulator:
            count = str(2 * USERS)
            taker = None
            if opens == "before the kill":
                taker = worker(
                    "_redis_outbox_worker", tmp_path / "taker", "await", emulator.base_url,
                    url, *knobs, count,
                )  # fmt: skip
                assert taker.stdout is not None
                assert taker.stdout.readline().strip() == "open"
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
            killed = time.time()
            if taker is None:
                taker = worker(
                    "_redis_outbox_worker", tmp_path / "taker", "await", emulator.base_url,
                    url, *knobs, count,
                )  # fmt: skip
            stats = last_line(taker)
        seen = emulator.stop()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    assert stats["replayed"] == stats["delivered"] == 2 * USERS
    # Taken over once the dead pod's lease ended, at the next claim.
    assert stats["reached"] - killed < LEASE + INTERVAL + 1.5
    delivered_once(seen)
    assert stream_left(redis_server, url) == (0, 0)
    assert os.listdir(tmp_path / "holder") == []
    assert os.listdir(tmp_path / "taker") == []
