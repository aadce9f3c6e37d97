"""Three web workers, one account: ``client.background`` under a shared ``RedisGovernor`` keeps the
workers together inside the real-time budget, so the server answers no 429.

Real processes (``_worker_process burst``), a real ``redis-server`` and one emulator served on
loopback in a process of its own, judged on what the emulator saw. The windows are a minute
long, so the tests never wait for one to roll: either the burst fits the budget (all delivered),
or what the shared window holds back is spilled to the outbox at close and counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from analytex_async import AsyncAnalytex, DeliveryPolicy
from analytex_async.emulator import Emulator
from analytex_async.testing import EMULATED_BASE_URL, EmulatorTransport

from ..conftest import trio_mock_clock
from ..redis_server import RedisServer
from ._emulator_process import ROOT, EmulatorProcess, emulator_process

WORKERS = 3


def burst(
    emulator: EmulatorProcess,
    redis_server: RedisServer,
    *,
    users: int,
    rate: int,
    drain: float,
    outbox: Path | None,
    gap: float = 0.0,
) -> list[dict[str, Any]]:
    """Start the workers, let them burst at the same instant, return each one's stats."""
    name = f"burst-{uuid.uuid4().hex[:8]}"  # a fresh shared budget for each test
    start_at = time.time() + 4  # time for every worker to import and connect
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.delivery._worker_process",
                "burst",
                emulator.base_url,
                redis_server.url,
                name,
                str(worker),
                str(users),
                str(rate),
                str(start_at),
                str(drain),
                str(outbox) if outbox is not None else "-",
                str(gap),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(WORKERS)
    ]
    try:
        outputs = [process.communicate(timeout=45) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def spilled_user_ids(outbox: Path) -> list[str]:
    return [
        json.loads(line)["payload"]["user_id"]
        for path in outbox.glob("outbox-*.ndjson")
        for line in path.read_text().splitlines()
    ]


@pytest.mark.slow
def test_three_workers_bursting_together_within_the_budget_draw_no_429_and_lose_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """3 x 200 identifies at one instant: the account's whole minute (600 a minute).

    Every record is delivered or, when the shared window is short of slots at close, spilled:
    see ``test_a_trickle_of_identifies_costs_one_window_slot_each`` for why a few can be.
    """
    users = 200
    outbox = tmp_path / "outbox"
    with emulator_process(tmp_path, realtime=600) as emulator:
        results = burst(emulator, redis_server, users=users, rate=600, drain=10, outbox=outbox)
    seen = emulator.stop()
    delivered = sum(stats["delivered"] for stats in results)
    spilled = WORKERS * users - delivered
    print(f"\n{WORKERS} workers x {users}: delivered {delivered}, spilled {spilled}")
    assert 429 not in seen.statuses()
    assert Counter(seen.statuses("/v1/identify")) == {202: delivered}
    for stats in results:
        assert stats["queued"] == users
        assert stats["delivered"] + stats["spilled"] == users, stats
    assert sorted([*spilled_user_ids(outbox), *seen.users]) == sorted(
        f"w{worker}-{n}" for worker in range(WORKERS) for n in range(users)
    )


@pytest.mark.slow
def test_three_workers_trickling_within_the_budget_deliver_everything(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """3 workers x 20 identifies, one every 100 ms, against 60 a minute: exactly the budget."""
    users, rate = 20, 60
    outbox = tmp_path / "outbox"
    with emulator_process(tmp_path, realtime=rate) as emulator:
        results = burst(
            emulator, redis_server, users=users, rate=rate, drain=4, outbox=outbox, gap=0.1
        )
    seen = emulator.stop()
    assert 429 not in seen.statuses()
    assert [stats["delivered"] for stats in results] == [users] * WORKERS, results


@pytest.mark.slow
def test_three_workers_bursting_past_the_budget_share_it_and_spill_the_rest(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each worker alone fits the budget; together they do not. The shared window lets exactly
    the budget through, with no 429; the rest waits for the window, and at close is spilled.

    Without the shared window each worker's own window would let its 20 go at once: 60
    requests against a budget of 30, 30 of them answered 429.
    """
    rate, users = 30, 20
    outbox = tmp_path / "outbox"
    with emulator_process(tmp_path, realtime=rate) as emulator:
        results = burst(emulator, redis_server, users=users, rate=rate, drain=3, outbox=outbox)
    seen = emulator.stop()
    assert 429 not in seen.statuses()
    assert Counter(seen.statuses("/v1/identify")) == {202: rate}
    assert sum(s["delivered"] for s in results) == rate
    assert sum(s["spilled"] for s in results) == WORKERS * users - rate
    for stats in results:
        assert stats["queued"] == users
        assert stats["delivered"] + stats["spilled"] == users, stats
        assert stats["dropped"] == stats["failed"] == stats["pending"] == 0
    spilled = spilled_user_ids(outbox)
    assert len(spilled) == WORKERS * users - rate
    assert sorted([*spilled, *seen.users]) == sorted(
        f"w{worker}-{n}" for worker in range(WORKERS) for n in range(users)
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [trio_mock_clock()])
async def test_a_trickle_of_identifies_costs_one_window_slot_each() -> None:
    """One process, in process, on a mock clock: 60 identifies, one every 0.5 s, at 60 a minute.

    Each one costs one slot, so the last is sent at once (about 30 s after the first). A worker
    that wastes slots fills the window early and makes the rest wait a minute.
    """
    emulator = Emulator(realtime_requests_per_minute=60)
    http = httpx.AsyncClient(transport=EmulatorTransport(emulator))
    policy = DeliveryPolicy(bulk_overflow=False)
    async with http, AsyncAnalytex(
        api_key="sk_test", base_url=EMULATED_BASE_URL, http_client=http,
        requests_per_minute=60, delivery=policy,
    ) as client:  # fmt: skip
        started = anyio.current_time()
        for n in range(60):
            client.background.identify(f"u{n}")
            await anyio.sleep(0.5)
        await client.background.flush()
        elapsed = anyio.current_time() - started
    assert len(emulator.users) == 60
    assert elapsed < 31, f"the last identify waited for the window: flushed after {elapsed:.0f} s"
