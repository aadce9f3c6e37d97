"""Property: whatever happens between syncs, the server ends with the latest version of every
record, the state never claims a version the server does not hold, and no record is sent again
once the sync saw its job complete.

Each example is a random sequence of sync runs against an in-process emulator (trio with a mock
clock, so jobs at 1,200 rows a minute cost nothing): each run's source changes, drops and
brings back records and reorders their keys; the emulator fails some jobs after applying part of
their rows; some runs are cancelled right after a batch was accepted (a crash between batches).
Then clean runs follow until one ends with every job completed, and one more must send nothing.

The same property holds for the Redis state, against a real ``redis-server`` (asyncio, whose
clock cannot be mocked: the emulator and the client then run at 600,000 rows a minute).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

import anyio
import attrs
import redis
import trio
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from analytex_async import ImportProgress, SyncResult
from analytex_async._bulk._batching import encode_record
from analytex_async._bulk._digests import DIGEST_BYTES, UNKNOWN, canonical_digest
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from ._uploads import Uploads
from .redis_server import RedisServer

IDS = [f"u{i}" for i in range(12)]
BATCH = 3


@attrs.frozen
class Run:
    """One sync run of the scenario."""

    source: dict[str, int]  # id -> version; absent ids are not in the source
    failures: int  # jobs the emulator fails (after applying some rows)
    failed_rows: int
    cancel_after: int | None  # cancel once this many batches were accepted
    delete_missing: bool
    reversed_keys: bool


runs = st.builds(
    Run,
    source=st.dictionaries(st.sampled_from(IDS), st.integers(0, 2)),
    failures=st.integers(0, 2),
    failed_rows=st.integers(0, 2),
    cancel_after=st.none() | st.integers(1, 4),
    delete_missing=st.booleans(),
    reversed_keys=st.booleans(),
)


def record(user_id: str, version: int, *, reversed_keys: bool = False) -> dict[str, Any]:
    metadata = {"version": version, "name": f"user {user_id}"}
    if reversed_keys:
        metadata = dict(reversed(metadata.items()))
    return {"user_id": user_id, "metadata": metadata}


def digest_of(wire: dict[str, Any]) -> bytes:
    return canonical_digest(encode_record(wire), "user")[1]


class Store(Protocol):
    """Where a scenario keeps its state, and how a test reads it behind the sync's back."""

    @property
    def state(self) -> str | Path:
        """What ``sync_users`` takes as ``state=``."""
        ...

    def read(self) -> dict[str, bytes]:
        """The canonical digest the state holds per id (``UNKNOWN`` as it is)."""
        ...


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.state = path

    def read(self) -> dict[str, bytes]:
        if not self.state.exists():
            return {}
        with contextlib.closing(sqlite3.connect(self.state)) as db:  # closed: a sync locks it
            rows = db.execute("SELECT id, digest FROM digests").fetchall()
        # A stored value is the exact line's digest, then the canonical one: the latter decides.
        return {user_id: value[DIGEST_BYTES:] for user_id, value in rows}


class RedisStore:
    def __init__(self, server: RedisServer) -> None:
        self.name = f"prop-{uuid.uuid4().hex[:12]}"
        self.state = f"{server.url}?name={self.name}"
        self.url = server.url

    def read(self) -> dict[str, bytes]:
        with redis.Redis.from_url(self.url) as client:
            stored = client.hgetall(f"analytex:sync:{{{self.name}}}:digests")
        return {key.decode(): value[DIGEST_BYTES:] for key, value in stored.items()}


def server_digest(emulator: Emulator, user_id: str) -> bytes | None:
    stored = emulator.users.get(user_id)
    if stored is None:
        return None
    return digest_of({"user_id": user_id, "metadata": dict(stored.metadata)})


class Scenario:
    def __init__(self, store: Store, *, rows_per_minute: float = 1200, settle: float = 30) -> None:
        self.store = store
        self.emulator = Emulator(rows_per_minute=rows_per_minute)
        self.uploads = Uploads(self.emulator)
        self.settle = settle

    def check_state_is_safe(self) -> None:
        """Every digest the state holds is the record the server holds."""
        for user_id, digest in self.store.read().items():
            if digest != UNKNOWN:
                assert server_digest(self.emulator, user_id) == digest, user_id

    async def sync(self, client: Any, run: Run) -> SyncResult | None:
        """One run; ``None`` when it was cancelled. Checks what it sent and what it kept."""
        stored_before = self.store.read()
        first_batch = len(self.uploads.batches)
        first_job = len(self.emulator.jobs)
        if run.failures:
            self.emulator.fail_next_jobs(run.failures, after_rows=run.failed_rows)
        source = [
            record(user_id, version, reversed_keys=run.reversed_keys)
            for user_id, version in run.source.items()
        ]
        result: SyncResult | None = None
        with anyio.CancelScope() as scope:

            def crash(progress: ImportProgress) -> None:
                if run.cancel_after is not None and progress.batches_sent >= run.cancel_after:
                    scope.cancel()

            result = await client.sync_users(
                source,
                state=self.store.state,
                batch_size=BATCH,
                delete_missing=run.delete_missing,
                on_progress=crash,
            )
        if scope.cancelled_caught:
            result = None
        batches = self.uploads.batches[first_batch:]
        jobs = list(self.emulator.jobs.values())[first_job:]
        assert len(batches) == len(jobs)
        # Never sent: a record whose digest the state held for it when the run began.
        for sent in (r for batch in batches for r in batch):
            assert stored_before.get(sent["user_id"]) != digest_of(sent), sent
        # Kept: every record of a job the run saw completed (a cancelled run did not see its
        # last job end; a finished one saw every job).
        seen = jobs if result is not None else jobs[:-1]
        stored_after = self.store.read()
        for batch, job in zip(batches, seen, strict=False):
            if job.status == "completed":
                for sent in batch:
                    assert stored_after.get(sent["user_id"]) == digest_of(sent), sent
        await anyio.sleep(self.settle)  # a job left running (3 rows) ends
        self.check_state_is_safe()
        return result


CHANGED_THEN_FAILED_THEN_REVERTED = [
    Run({"u0": 0}, 0, 0, None, False, False),
    # The job fails after applying u0's new version: the state must not keep claiming v0.
    Run({"u0": 1}, 1, 1, None, False, False),
    Run({"u0": 0}, 0, 0, None, False, False),
]


async def play(scenario: Scenario, steps: list[Run], **client_options: Any) -> None:
    """The steps, then clean runs until every job completed, then one that sends nothing."""
    async with EmulatedAnalytex(scenario.emulator, **client_options) as analytex:
        client = analytex.client
        for step in steps:
            await scenario.sync(client, step)
        latest = attrs.evolve(steps[-1], failures=0, cancel_after=None, delete_missing=True)
        ended: list[bool] = []
        for _ in range(1 + sum(step.failures for step in steps)):
            result = await scenario.sync(client, latest)
            assert result is not None
            ended.append(result.ok)
            if result.ok:
                break
        assert ended[-1]
        # The server holds exactly the latest version of every record in the source, and the
        # state exactly the source's ids.
        for user_id, version in latest.source.items():
            expected = record(user_id, version)
            assert server_digest(scenario.emulator, user_id) == digest_of(expected)
        assert sorted(scenario.store.read()) == sorted(latest.source)
        # And a run with nothing changed sends nothing.
        before = len(scenario.uploads.sent)
        again = await scenario.sync(client, latest)
        assert again is not None
        assert len(scenario.uploads.sent) == before
        assert again.rows_unchanged == len(latest.source)
        assert (again.rows_new, again.rows_changed, again.rows_missing) == (0, 0, 0)


SETTINGS = settings(
    max_examples=25,  # each example runs syncs against a server: the suite stays fast
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    # No "explain" phase: it traces every line, and these examples run a whole server.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)


@SETTINGS
@given(steps=st.lists(runs, min_size=1, max_size=5))
@example(steps=CHANGED_THEN_FAILED_THEN_REVERTED)
def test_random_runs_end_with_the_latest_version_of_every_record(steps: list[Run]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        scenario = Scenario(SQLiteStore(Path(directory) / "state.sqlite"))
        # A small threshold: while the state works in a thread, the clock waits for it rather
        # than racing ahead through the client's periodic tasks.
        trio.run(play, scenario, steps, clock=MockClock(autojump_threshold=0.002))


FAST = 600_000


@settings(SETTINGS, max_examples=15)
@given(steps=st.lists(runs, min_size=1, max_size=5))
@example(steps=CHANGED_THEN_FAILED_THEN_REVERTED)
def test_random_runs_end_with_the_latest_version_of_every_record_on_redis(
    redis_server: RedisServer, steps: list[Run]
) -> None:
    scenario = Scenario(RedisStore(redis_server), rows_per_minute=FAST, settle=0.05)
    anyio.run(lambda: play(scenario, steps, rows_per_minute=FAST), backend="asyncio")
