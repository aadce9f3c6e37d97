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
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from tests._net import free_port
from tests.redis_server import RedisServer

from ._emulator_process import emulator_process
from .test_outbox_processes import stats_of, worker

USERS = 8  # an identify and a track each
LEASE, INTERVAL = 2.0, 0.5


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return f"{redis_server.url}?name=p-{uuid.uuid4().hex[:12]}"


def pod(name: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """A worker in an empty directory of its own (a pod's own disk); ``_redis_outbox_worker``'s
    modes, or ``_worker_process``'s for ``spill`` and ``replay``."""
    (tmp_path / name).mkdir()
    module = "_worker_process" if args[0] in ("spill", "replay") else "_redis_outbox_worker"
    return worker(*args, module=module, cwd=tmp_path / name)


def spill(tmp_path: Path, url: str) -> None:
    """A process that spills every user's identify and track: its server is down."""
    down = f"http://127.0.0.1:{free_port()}"
    stats = stats_of(pod("spiller", tmp_path, "spill", down, url, "a", str(USERS), "0.5"))
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
        replayed = stats_of(pod("replayer", tmp_path, "replay", emulator.base_url, url))
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
    holder = pod("holder", tmp_path, "hold", down, url, *knobs)
    try:
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        assert held["replayed"] == 2 * USERS
        assert stream_left(redis_server, url) == (2 * USERS, 2 * USERS)  # all claimed by it
        with emulator_process(tmp_path) as emulator:
            count = str(2 * USERS)
            taker = None
            if opens == "before the kill":
                taker = pod("taker", tmp_path, "await", emulator.base_url, url, *knobs, count)
                assert taker.stdout is not None
                assert taker.stdout.readline().strip() == "open"
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
            killed = time.time()
            if taker is None:
                taker = pod("taker", tmp_path, "await", emulator.base_url, url, *knobs, count)
            stats = stats_of(taker)
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
