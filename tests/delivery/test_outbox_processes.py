"""The outbox across processes, through the client: spilled while the server is down, replayed by
the next process once it is up, exactly once, then removed.

Each process is a real worker (``_worker_process``) using ``client.background``; the server is
the emulator in a process of its own on a port that, while "down", nobody listens on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests._net import free_port

from ._emulator_process import ROOT, emulator_process

USERS = 8  # per process: an identify and a track each


def worker(*args: str, module: str = "_worker_process", cwd: Path = ROOT) -> subprocess.Popen[str]:
    """``python -m tests.delivery.<module> ARGS`` in ``cwd``; its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.delivery.{module}", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stats_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def outbox_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("outbox-*.ndjson"))


def spilled_records(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in outbox_files(directory)
        for line in path.read_text().splitlines()
    ]


def test_a_process_spills_while_the_server_is_down_and_the_next_replays_once_it_is_up(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    port = free_port()  # nobody listens: the server is down
    base_url = f"http://127.0.0.1:{port}"

    spilled = stats_of(worker("spill", base_url, str(outbox), "a", str(USERS), "0.5"))
    assert spilled["queued"] == spilled["spilled"] == 2 * USERS
    assert spilled["delivered"] == spilled["dropped"] == spilled["pending"] == 0
    [file] = outbox_files(outbox)
    records = spilled_records(outbox)
    assert Counter(r["kind"] for r in records) == {"identify": USERS, "track": USERS}

    with emulator_process(tmp_path, port=port) as emulator:
        replayed = stats_of(worker("replay", base_url, str(outbox)))
    seen = emulator.stop()
    assert replayed["replayed"] == replayed["queued"] == replayed["delivered"] == 2 * USERS
    assert replayed["failed"] == replayed["dropped"] == replayed["spilled"] == 0
    assert not file.exists()
    assert outbox_files(outbox) == []
    assert sorted(seen.users) == sorted(f"a-{n}" for n in range(USERS))
    assert seen.users["a-3"]["metadata"] == {"n": 3, "tag": "a"}
    assert sorted(e["user_id"] for e in seen.events) == sorted(f"a-{n}" for n in range(USERS))
    assert Counter(seen.statuses()) == {202: 2 * USERS}


def test_three_processes_share_one_outbox_and_one_replayer_delivers_each_record_once(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    spillers = [
        worker("spill", base_url, str(outbox), tag, str(USERS), "0.5") for tag in ("a", "b", "c")
    ]
    for stats in map(stats_of, spillers):
        assert stats["queued"] == stats["spilled"] == 2 * USERS
    assert len(outbox_files(outbox)) == 3  # one file per process

    with emulator_process(tmp_path, port=port) as emulator:
        replayed = stats_of(worker("replay", base_url, str(outbox)))
        again = stats_of(worker("replay", base_url, str(outbox)))  # finds nothing left
    seen = emulator.stop()
    assert replayed["replayed"] == replayed["delivered"] == 3 * 2 * USERS
    assert again["replayed"] == again["queued"] == 0
    assert outbox_files(outbox) == []
    expected = sorted(f"{tag}-{n}" for tag in "abc" for n in range(USERS))
    assert sorted(seen.users) == expected
    assert sorted(e["user_id"] for e in seen.events) == expected  # each event exactly once
    assert Counter(r["path"] for r in seen.requests) == {
        "/v1/identify": 3 * USERS,
        "/v1/track": 3 * USERS,
    }


def test_two_replayers_starting_together_deliver_each_record_exactly_once(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    for stats in map(
        stats_of,
        [worker("spill", base_url, str(outbox), tag, str(USERS), "0.5") for tag in ("a", "b")],
    ):
        assert stats["spilled"] == 2 * USERS

    with emulator_process(tmp_path, port=port) as emulator:
        replayers = [worker("replay", base_url, str(outbox)) for _ in range(2)]
        results = [stats_of(process) for process in replayers]
    seen = emulator.stop()
    assert sum(r["replayed"] for r in results) == 2 * 2 * USERS
    assert sum(r["delivered"] for r in results) == 2 * 2 * USERS
    assert outbox_files(outbox) == []
    assert len(seen.events) == 2 * USERS  # no file replayed twice
    assert len(seen.users) == 2 * USERS
