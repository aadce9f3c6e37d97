"""sync_users / sync_companies end to end against the emulator, for each kind of source.

In process on trio with a ``MockClock`` that jumps ahead once every task has been asleep for
2 ms: the emulator reads the same mock clock, so jobs take their real duration at 1,200 rows a
minute and the tests still finish in milliseconds.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from analytex_async import (
    ConfigurationError,
    ImportAbortedError,
    ImportProgress,
    InternalServerError,
    JobStatus,
    Rejection,
    SQLiteSyncState,
    SyncResult,
    ValidationError,
)
from analytex_async._bulk._batching import encode_record
from analytex_async._bulk._digests import canonical_digest, source_digest
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from .._uploads import Uploads
from .conftest import FAST

pytestmark = pytest.mark.anyio

PATH = "/v1/users/bulk_identify"


@pytest.fixture
def anyio_backend() -> Any:
    # Not trio_mock_clock()'s threshold of 0: while the state works in a worker thread every
    # task is asleep, and a clock that jumped at once would race through the client's periodic
    # tasks (holding the GIL the thread needs) until the thread is done.
    return ("trio", {"clock": MockClock(autojump_threshold=0.002)})


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "users.sqlite"


def users(count: int, version: int = 0, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"user_id": f"u{i}", "metadata": {"n": i, "v": version}}
        for i in range(start, start + count)
    ]


def counts(result: SyncResult) -> tuple[int, int, int, int, int]:
    return (
        result.rows_new,
        result.rows_changed,
        result.rows_unchanged,
        result.rows_missing,
        result.rows_deleted,
    )


def write_ndjson(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["user_id", "n", "v"])
        for record in records:
            writer.writerow([record["user_id"], record["metadata"]["n"], record["metadata"]["v"]])
    return path


def as_list(path: Path, records: list[dict[str, Any]]) -> object:
    del path
    return records


def as_pandas(path: Path, records: list[dict[str, Any]]) -> object:
    del path
    pandas = pytest.importorskip("pandas")
    return pandas.DataFrame(
        {
            "user_id": [r["user_id"] for r in records],
            "n": [r["metadata"]["n"] for r in records],
            "v": [r["metadata"]["v"] for r in records],
        }
    )


def as_polars(path: Path, records: list[dict[str, Any]]) -> object:
    del path
    polars = pytest.importorskip("polars")
    return polars.DataFrame(
        {
            "user_id": [r["user_id"] for r in records],
            "n": [r["metadata"]["n"] for r in records],
            "v": [r["metadata"]["v"] for r in records],
        }
    )


def as_arrow(path: Path, records: list[dict[str, Any]]) -> object:
    del path
    pyarrow = pytest.importorskip("pyarrow")
    return pyarrow.table(
        {
            "user_id": [r["user_id"] for r in records],
            "n": [r["metadata"]["n"] for r in records],
            "v": [r["metadata"]["v"] for r in records],
        }
    )


def as_parquet(path: Path, records: list[dict[str, Any]]) -> object:
    parquet = pytest.importorskip("pyarrow.parquet")
    table = as_arrow(path, records)
    target = path.with_suffix(".parquet")
    parquet.write_table(table, target)
    return target


SOURCES: dict[str, Callable[[Path, list[dict[str, Any]]], object]] = {
    "list": as_list,
    "ndjson": lambda path, records: write_ndjson(path.with_suffix(".ndjson"), records),
    "csv": lambda path, records: write_csv(path.with_suffix(".csv"), records),
    "pandas": as_pandas,
    "polars": as_polars,
    "pyarrow": as_arrow,
    "parquet": as_parquet,
}
# CSV cells are strings: a CSV source and a typed one are different records.
TABLES = {"pandas", "polars", "pyarrow", "parquet"}


def _frames_ready() -> bool:
    return importlib.util.find_spec("analytex_async._bulk._frames") is not None


@pytest.mark.parametrize("kind", list(SOURCES))
async def test_the_second_sync_sends_only_new_and_changed_records(
    kind: str, tmp_path: Path, state: Path
) -> None:
    if kind in TABLES and not _frames_ready():
        pytest.skip("DataFrame and Parquet sources are not in this tree yet")
    make = SOURCES[kind]
    emulator = Emulator()
    uploads = Uploads(emulator)
    first = users(12_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        result = await client.sync_users(make(tmp_path / "one", first), state=state)
        assert isinstance(result, SyncResult)
        assert result.ok
        assert counts(result) == (12_000, 0, 0, 0, 0)
        assert result.rows_sent == 12_000
        assert [job.status for job in result.jobs] == [JobStatus.COMPLETED] * 2

        second = [dict(r) for r in first]
        for i in (5, 500, 11_999):
            second[i] = {"user_id": f"u{i}", "metadata": {"n": i, "v": 1}}
        second += users(3, start=12_000)
        before = len(uploads.sent)
        result = await client.sync_users(make(tmp_path / "two", second), state=state)
    assert counts(result) == (3, 3, 11_997, 0, 0)
    assert result.rows_read == 12_003
    assert result.rows_sent == 6
    assert sorted(uploads.ids(before)) == sorted(
        ["u5", "u500", "u11999", "u12000", "u12001", "u12002"]
    )
    assert emulator.users["u500"].metadata["v"] in (1, "1")
    assert len(emulator.users) == 12_003


async def test_key_order_is_not_a_change(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        await analytex.client.sync_users(
            [{"user_id": "a", "metadata": {"x": 1, "y": "é"}}], state=state
        )
        result = await analytex.client.sync_users(
            [{"metadata": {"y": "é", "x": 1.0}, "user_id": "a"}], state=state
        )
    assert counts(result) == (0, 0, 1, 0, 0)
    assert result.rows_sent == 0
    # Only the form changed: the state now knows the new record, so the next run only hashes
    # it (without validating or encoding it).
    record = {"metadata": {"y": "é", "x": 1.0}, "user_id": "a"}
    line = encode_record({"user_id": "a", "metadata": {"y": "é", "x": 1.0}})
    with contextlib.closing(sqlite3.connect(state)) as db:
        (value,) = db.execute("SELECT digest FROM digests WHERE id = 'a'").fetchone()
    assert value[:16] == source_digest(record)
    assert value[16:] == canonical_digest(line, "user")[1]


async def test_full_sends_every_record_and_still_counts_against_the_state(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        await analytex.client.sync_users(users(100), state=state)
        changed = users(100)
        changed[0]["metadata"]["v"] = 9
        result = await analytex.client.sync_users(changed, state=state, full=True)
        again = await analytex.client.sync_users(changed, state=state)
    assert counts(result) == (0, 1, 99, 0, 0)
    assert result.rows_sent == 100
    assert counts(again) == (0, 0, 100, 0, 0)
    assert again.rows_sent == 0


async def test_missing_ids_are_counted_and_deleted_only_when_asked(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        await client.sync_users(users(2_600), state=state)
        kept = users(100)
        counted_only = await client.sync_users(kept, state=state)
        assert counts(counted_only) == (0, 0, 100, 2_500, 0)
        assert len(emulator.users) == 2_600

        started = anyio.current_time()
        deleted = await client.sync_users(kept, state=state, delete_missing=True)
        took = anyio.current_time() - started
        after = await client.sync_users(kept, state=state, delete_missing=True)
    assert counts(deleted) == (0, 0, 100, 2_500, 2_500)
    deletes = [r for r in emulator.requests if r.path == "/v1/users" and r.method == "DELETE"]
    assert [r.records for r in deletes] == [1_000, 1_000, 500]
    assert all(r.status == 202 for r in deletes)
    assert took >= 4.0  # three deletes, 2 s apart: the client paces them
    assert sorted(emulator.users) == sorted(f"u{i}" for i in range(100))
    assert counts(after) == (0, 0, 100, 0, 0)


async def test_a_rejected_records_id_is_present_never_missing_and_keeps_its_digest(
    state: Path,
) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    seen: list[Rejection] = []
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        await client.sync_users(users(10), state=state)
        broken = users(10)
        broken[3] = {"user_id": "u3", "metadata": {"n": [3]}}  # not a primitive
        result = await client.sync_users(
            broken, state=state, delete_missing=True, on_invalid=seen.append
        )
        assert (result.rows_rejected, result.rows_missing, result.rows_deleted) == (1, 0, 0)
        assert [r.position for r in seen] == [3]
        healed = await client.sync_users(users(10), state=state, delete_missing=True)
    assert counts(healed) == (0, 0, 10, 0, 0)
    assert "u3" in emulator.users


async def test_copies_of_a_rejected_record_are_each_rejected_never_counted_unchanged(
    state: Path,
) -> None:
    """Unchanged records skip validation only when they match a record that completed: an
    exact copy of a record this run rejected is checked (and rejected) too, in source order,
    whether it shares its run of records with the first copy or comes thousands later."""
    emulator = Emulator(rows_per_minute=600_000)
    bad = {"user_id": "u3", "metadata": {"n": [3]}}  # not a primitive
    source = [*users(10), dict(bad), dict(bad), *users(2_500, start=10), dict(bad)]
    seen: list[Rejection] = []
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        for _ in range(2):  # the second run finds every valid record unchanged
            seen.clear()
            result = await client.sync_users(source, state=state, on_invalid=seen.append)
            assert [r.position for r in seen] == [10, 11, 2_512]
            assert result.rows_rejected == 3
            valid = result.rows_new + result.rows_changed + result.rows_unchanged
            assert valid == len(source) - 3
    assert counts(result) == (0, 0, 2_510, 0, 0)
    assert result.rows_sent == 0


async def test_a_failed_job_sends_its_rows_again_next_time(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    uploads = Uploads(emulator)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        emulator.fail_next_jobs(1, after_rows=40)
        first = await client.sync_users(users(300), state=state, batch_size=100)
        assert [job.status for job in first.jobs] == [
            JobStatus.FAILED,
            JobStatus.COMPLETED,
            JobStatus.COMPLETED,
        ]
        assert not first.ok
        before = len(uploads.sent)
        second = await client.sync_users(users(300), state=state, batch_size=100)
    assert counts(second) == (100, 0, 200, 0, 0)
    assert sorted(uploads.ids(before)) == sorted(f"u{i}" for i in range(100))


async def test_an_abort_keeps_what_completed_and_counts_nothing_missing(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    uploads = Uploads(emulator)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        await client.sync_users(users(50, start=1_000), state=state)

        def fail_after_two_batches(progress: ImportProgress) -> None:
            if progress.batches_sent == 2 and not emulator.faults:
                emulator.faults.add(PATH, status=500, times=None)

        with pytest.raises(ImportAbortedError) as caught:
            await client.sync_users(
                users(500),
                state=state,
                batch_size=100,
                delete_missing=True,
                on_progress=fail_after_two_batches,
            )
        aborted = caught.value.result
        assert isinstance(aborted, SyncResult)
        assert isinstance(caught.value.__cause__, InternalServerError)
        assert (aborted.rows_sent, aborted.rows_missing, aborted.rows_deleted) == (200, 0, 0)
        emulator.faults.clear()
        before = len(uploads.sent)
        resumed = await client.sync_users(users(500), state=state, batch_size=100)
    assert sorted(uploads.ids(before)) == sorted(f"u{i}" for i in range(200, 500))
    assert counts(resumed) == (300, 0, 200, 50, 0)


async def test_a_cancelled_sync_keeps_the_jobs_it_saw_complete(state: Path) -> None:
    emulator = Emulator()  # 1,200 rows a minute: 100 rows take 5 s
    uploads = Uploads(emulator)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        with anyio.CancelScope() as scope:

            def cancel_at_the_fourth_batch(progress: ImportProgress) -> None:
                if progress.batches_sent == 4:
                    scope.cancel()

            await client.sync_users(
                users(1_000), state=state, batch_size=100, on_progress=cancel_at_the_fourth_batch
            )
        assert scope.cancelled_caught
        await anyio.sleep(60)  # the job in flight ends on its own
        assert len(emulator.users) == 400
        before = len(uploads.sent)
        result = await client.sync_users(users(1_000), state=state, batch_size=100)
    # The three jobs seen completed are not sent again; the one in flight (never seen
    # completed) and the rest are.
    assert sorted(uploads.ids(before)) == sorted(f"u{i}" for i in range(300, 1_000))
    assert counts(result) == (700, 0, 300, 0, 0)
    assert len(emulator.users) == 1_000


async def test_without_waiting_unseen_jobs_are_not_remembered(state: Path) -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        first = await client.sync_users(users(300), state=state, batch_size=100, wait=False)
        assert first.jobs[-1].status is not JobStatus.COMPLETED
        await anyio.sleep(60)
        second = await client.sync_users(users(300), state=state, batch_size=100)
    # The first two jobs were seen completed before the next batch went; the last was not.
    assert counts(second) == (100, 0, 200, 0, 0)


async def test_a_repeated_id_sends_its_last_version(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        await client.sync_users([{"user_id": "a", "metadata": {"v": 1}}], state=state)
        twice = [
            {"user_id": "a", "metadata": {"v": 2}},
            *users(5),
            {"user_id": "a", "metadata": {"v": 1}},
        ]
        result = await client.sync_users(twice, state=state, batch_size=3)
        assert emulator.users["a"].metadata == {"v": 1}
        again = await client.sync_users(twice, state=state, batch_size=3)
    assert (result.rows_changed, result.rows_new) == (2, 5)
    assert emulator.users["a"].metadata == {"v": 1}
    # The state holds v=1 now: the first 'a' (v=2) differs, the last equals it once more.
    assert (again.rows_changed, again.rows_unchanged) == (2, 5)


async def test_a_copy_of_a_record_whose_job_failed_is_not_remembered(state: Path) -> None:
    """The second copy is unchanged next to the first, which is in flight: nothing may claim
    its value for the id before a job of it completes."""
    emulator = Emulator(rows_per_minute=600_000)
    record = {"user_id": "a", "metadata": {"v": 1}}
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        emulator.fail_next_jobs(1, after_rows=0)
        failed = await client.sync_users([record, dict(record)], state=state, batch_size=1)
        assert not failed.ok
        assert (failed.rows_new, failed.rows_unchanged, failed.rows_sent) == (1, 1, 1)
        assert "a" not in emulator.users
        again = await client.sync_users([record], state=state)
    assert (again.rows_new, again.rows_sent) == (1, 1)
    assert emulator.users["a"].metadata == {"v": 1}


async def test_companies_sync_with_their_own_state(tmp_path: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    companies = [{"company_id": f"c{i}", "metadata": {"seats": i}} for i in range(20)]
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        path = tmp_path / "companies.sqlite"
        await client.sync_companies(companies, state=path)
        result = await client.sync_companies(companies[:15], state=path, delete_missing=True)
        with pytest.raises(ConfigurationError, match="holds companies, not users"):
            await client.sync_users(users(1), state=path)
    assert counts(result) == (0, 0, 15, 5, 5)
    assert sorted(emulator.companies) == sorted(f"c{i}" for i in range(15))


async def test_a_sync_state_object_is_used_as_given(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    store = SQLiteSyncState(state)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        await analytex.client.sync_users(users(5), state=store)
        result = await analytex.client.sync_users(users(5), state=store)
    assert counts(result) == (0, 0, 5, 0, 0)


async def test_journal_and_bad_arguments_are_refused_before_anything_is_sent(
    state: Path,
) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        client = analytex.client
        with pytest.raises(ValidationError, match="journal"):
            await client.sync_users(users(1), state=state, journal="j.ndjson")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="state"):
            await client.sync_users(users(1), state=42)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="full"):
            await client.sync_users(users(1), state=state, full="yes")  # type: ignore[arg-type]
    assert not emulator.requests
    assert not await anyio.Path(state).exists()


async def test_on_invalid_raise_stops_with_a_sync_result(state: Path) -> None:
    emulator = Emulator(rows_per_minute=600_000)
    records = [*users(3), {"user_id": ""}]
    async with EmulatedAnalytex(emulator, retry_policy=FAST) as analytex:
        with pytest.raises(ValidationError) as caught:
            await analytex.client.sync_users(records, state=state, on_invalid="raise")
    assert isinstance(caught.value.result, SyncResult)
    assert caught.value.result.rows_missing == 0
