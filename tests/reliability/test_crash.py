"""The crash test: an import of 50,000 rows with a journal, killed with SIGKILL at random points
and re-run with the same journal until it completes; nothing is lost, and each kill repeats at
most the one batch that was in flight.

The client is a separate Python process (so SIGKILL is a real crash: no ``finally``, no flush,
the socket torn down by the kernel). The emulator runs in this test process, served by uvicorn
on a loopback socket from an event loop in a thread of its own, so that what the server accepted
can be inspected directly. Each kill lands after a random number (1 to 4) of batches accepted in
that run, plus a random delay of up to one batch interval: during an upload, between the
server's answer and the journal's fsync, or while waiting for the rate or the previous job.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from analytex_async.emulator import Emulator, serve

from .._net import wait_until
from .conftest import REPORT, CrashFigures, SubmitLog, user_records

SEED = int(os.environ.get("ANALYTEX_CRASH_SEED", "20250607"))
ROWS = 50_000
BATCH = 2_000
SERVER_RATE = 3_000_000
CLIENT_RATE = 600_000  # 2,000 rows every 0.2 s: 25 batches in about 5 s of sending
KILLS = 5
KEY = "sk_test_crash_5a0c"

CLIENT = """
import json, sys
import anyio
from analytex_async import AsyncAnalytex, RetryPolicy

async def main() -> None:
    url, journal, source, rate, batch = sys.argv[1:6]
    policy = RetryPolicy(max_retries=5, initial_delay=0.01, max_delay=0.1)
    async with AsyncAnalytex(
        base_url=url, rows_per_minute=float(rate), requests_per_minute=None,
        retry_policy=policy, timeout=30,
    ) as client:
        result = await client.import_users(source, batch_size=int(batch), journal=journal)
    print(json.dumps({
        "rows_read": result.rows_read, "rows_sent": result.rows_sent,
        "rows_skipped": result.rows_skipped, "rejected": len(result.rejected),
        "jobs": len(result.jobs), "ok": result.ok,
    }))

anyio.run(main)
"""


@contextlib.contextmanager
def emulator_in_a_thread(emulator: Emulator) -> Iterator[tuple[str, BlockingPortal]]:
    """Serve ``emulator`` from an asyncio loop in a thread; the portal runs code in that loop."""
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator)) as url,
    ):
        yield url, portal


def wait_for(
    portal: BlockingPortal, log: SubmitLog, count: int, process: subprocess.Popen[str]
) -> bool:
    """Wait until the server accepted ``count`` batches; False if the client exited first."""
    if wait_until(
        lambda: portal.call(lambda: len(log.accepted)) >= count,
        timeout=30,
        process=process,
        interval=0.005,
    ):
        return True
    if process.poll() is None:
        pytest.fail("the import made no progress for 30 s")
    return False


# Real processes and a real socket: a SIGKILL cannot land on a mocked clock.
@pytest.mark.slow
def test_sigkilled_imports_resume_from_the_journal_and_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)  # noqa: S311 - reproducible kill points, not secrets
    source = tmp_path / "users.ndjson"
    records = user_records(ROWS)
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    journal = tmp_path / "import.journal"
    emulator = Emulator(rows_per_minute=SERVER_RATE, realtime_requests_per_minute=None)
    log = SubmitLog(emulator)
    env = {**os.environ, "ANALYTEX_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    env.pop("ANALYTEX_BASE_URL", None)
    started = time.monotonic()
    kills = 0
    runs = 0
    last_batch_of_run: dict[int, frozenset[str]] = {}
    final: dict[str, Any] | None = None
    with emulator_in_a_thread(emulator) as (url, portal):
        argv = [sys.executable, "-c", CLIENT, url, str(journal), str(source),
                str(CLIENT_RATE), str(BATCH)]  # fmt: skip
        while final is None:
            portal.call(setattr, log, "run", runs)
            before = portal.call(lambda: len(log.accepted))
            process = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            runs += 1
            try:
                if kills < KILLS and wait_for(portal, log, before + rng.randint(1, 4), process):
                    time.sleep(rng.uniform(0, BATCH * 60 / CLIENT_RATE))
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                        kills += 1
                out, err = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
            portal.call(log.settle)  # a batch the server was still handling belongs to this run
            accepted_now = portal.call(lambda: list(log.accepted))
            if accepted_now[before:]:
                last_batch_of_run[runs - 1] = frozenset(accepted_now[-1].ids)
            if process.returncode == 0:
                final = json.loads(out.strip().splitlines()[-1])
            else:
                assert process.returncode == -signal.SIGKILL, err[-2000:]
        portal.call(log.settle)
        stored = portal.call(lambda: {uid: dict(u.metadata) for uid, u in emulator.users.items()})
        batches = portal.call(lambda: list(log.accepted))
    elapsed = time.monotonic() - started

    # The run that completed read everything, and the journal accounted for what it skipped.
    assert final is not None
    assert final["rows_read"] == ROWS
    assert final["rows_sent"] + final["rows_skipped"] == ROWS
    assert final["ok"]
    assert kills == KILLS

    # Every record is on the server, with the metadata it was sent with.
    assert stored == {r["user_id"]: r["metadata"] for r in records}

    # Each run repeated at most the batch that was in flight when the one before it was killed.
    seen: set[str] = set()
    repeated_batches = 0
    for run in range(runs):
        ids = [uid for b in batches if b.run == run for uid in b.ids]
        again = seen.intersection(ids)
        if again:
            assert run - 1 in last_batch_of_run
            assert again <= last_batch_of_run[run - 1], f"run {run} repeated more than one batch"
            repeated_batches += 1
        seen.update(ids)
    rows_received = sum(len(b.ids) for b in batches)
    repeated = rows_received - ROWS
    assert repeated <= kills * BATCH
    assert repeated_batches <= kills

    # The journal holds each batch once: disjoint ranges covering every position.
    entries = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    spans = sorted((e["first"], e["last"]) for e in entries)
    assert sum(e["count"] for e in entries) == ROWS
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
    assert (spans[0][0], spans[-1][1]) == (0, ROWS - 1)

    REPORT.crash.append(
        CrashFigures(
            seed=SEED,
            runs=runs,
            kills=kills,
            records=ROWS,
            accepted=len(stored),
            rows_received=rows_received,
            repeated=repeated,
            batches_repeated=repeated_batches,
            elapsed=elapsed,
        )
    )
