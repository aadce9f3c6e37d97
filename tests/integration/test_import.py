"""The bulk pipeline end to end against the emulator: batching, the rate, 409, 413, retries,
files, rejections, progress and aborts.

Most tests run in process on trio with ``MockClock(autojump_threshold=0)``: the emulator reads
the same mock clock, so jobs take their real duration (10,000 rows = 500 s at 1,200 rows a
minute) and the test still finishes in milliseconds.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from analytex_async import (
    ImportAbortedError,
    ImportProgress,
    InternalServerError,
    JobStatus,
    User,
    ValidationError,
)
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from ..conftest import trio_mock_clock
from .conftest import FAST

pytestmark = pytest.mark.anyio

PATH = "/v1/users/bulk_identify"


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def users(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"user_id": f"u{i}", "metadata": {"n": i}} for i in range(start, start + count)]


def submits(emulator: Emulator) -> list[tuple[int | None, float, int | None]]:
    return [(r.status, r.time, r.records) for r in emulator.requests if r.path == PATH]


async def test_25000_rows_become_three_governed_batches() -> None:
    emulator = Emulator()  # 1,200 rows a minute, like the real API
    async with EmulatedAnalytex(emulator) as analytex:
        start = anyio.current_time()
        result = await analytex.client.import_users(users(25_000))
        elapsed = anyio.current_time() - start
    assert [(s, t - start, n) for s, t, n in submits(emulator)] == [
        (202, 0.0, 10_000),
        (202, pytest.approx(500.0), 10_000),
        (202, pytest.approx(1000.0), 5_000),
    ]
    assert result.ok
    assert (result.rows_read, result.rows_sent, result.rejected) == (25_000, 25_000, [])
    assert [j.status for j in result.jobs] == [JobStatus.COMPLETED] * 3
    assert len(emulator.users) == 25_000
    assert emulator.users["u24999"].metadata == {"n": 24999}
    # The last batch's 5,000 rows take 250 s after it starts at 1,000 s.
    assert elapsed == pytest.approx(1250.0, abs=2.0)
    assert result.elapsed == pytest.approx(elapsed)


async def test_every_batch_waits_for_the_rate_even_when_the_server_is_faster() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=600) as analytex:
        await analytex.client.import_users(users(1_000), batch_size=100)
    times = [t for _, t, _ in submits(emulator)]
    assert len(times) == 10
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))  # 100 rows at 600/min


async def test_a_running_job_409_waits_and_resends_the_same_batch() -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        other = await analytex.client.bulk_identify(users(2_400, start=100_000))  # 120 s of work
        result = await analytex.client.import_users(users(100))
    statuses = [s for s, _, _ in submits(emulator)]
    assert statuses[0] == 202  # the other job
    assert statuses[1] == 409  # our batch, refused while it ran
    assert statuses[-1] == 202  # the same batch, accepted after it
    assert result.rows_sent == 100
    assert len(result.jobs) == 1
    assert emulator.job(other.job_id).status == "completed"
    assert len([u for u in emulator.users if not u.startswith("u1000")]) >= 100


async def test_a_409_storm_with_no_running_job_aborts_with_the_accepted_batches() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST, rows_per_minute=1_000_000) as analytex:
        emulator.faults.add(PATH, status=409, times=None)
        with pytest.raises(ImportAbortedError) as info:
            await analytex.client.import_users(users(10))
    assert "0 accepted batch" in str(info.value)
    assert info.value.result.rows_sent == 0


async def test_a_413_splits_the_batch_in_halves_without_losing_a_record() -> None:
    emulator = Emulator(rows_per_minute=1_000_000, max_records=3_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        result = await analytex.client.import_users(users(10_000))
    assert result.rows_sent == 10_000
    assert len(emulator.users) == 10_000
    accepted = [n for s, _, n in submits(emulator) if s == 202]
    assert sorted(accepted) == [2_500] * 4
    assert [s for s, _, _ in submits(emulator)].count(413) == 3  # 10,000, then each 5,000


async def test_a_single_record_the_server_finds_too_large_is_rejected() -> None:
    emulator = Emulator(rows_per_minute=1_000_000, max_bytes=600)
    big = {"user_id": "big", "metadata": {"blob": "x" * 1_000}}
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        result = await analytex.client.import_users([{"user_id": "a"}, big, {"user_id": "b"}])
    assert [r.position for r in result.rejected] == [1]
    assert "413" in result.rejected[0].reason
    assert set(emulator.users) == {"a", "b"}
    assert not result.ok


async def test_server_errors_are_retried_without_duplicates() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    emulator.faults.add(PATH, status=503, times=2)
    emulator.faults.add(PATH, drop_connection=True, times=1)
    async with EmulatedAnalytex(emulator, retry_policy=FAST, rows_per_minute=1_000_000) as a:
        result = await a.client.import_users(users(500), batch_size=250)
    assert result.rows_sent == 500
    assert len(emulator.jobs) == 2  # one job per batch: nothing sent twice
    assert len(emulator.users) == 500


async def test_a_batch_that_finally_fails_aborts_with_what_was_accepted() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, retry_policy=FAST, rows_per_minute=1_000_000) as a:

        async def source() -> AsyncIterator[dict[str, Any]]:
            for i, record in enumerate(users(300)):
                if i == 150:  # once the first batch is in, make every later submit fail
                    while not emulator.jobs:  # noqa: ASYNC110 -- polling the emulator's store
                        await anyio.sleep(0.01)
                    emulator.faults.add(PATH, status=500, times=None)
                yield record

        with pytest.raises(ImportAbortedError) as info:
            await a.client.import_users(source(), batch_size=100)
    error = info.value
    assert isinstance(error.__cause__, InternalServerError)
    assert error.result.rows_sent == 100
    assert len(error.result.jobs) == 1
    assert error.result.jobs[0].job_id in str(error)
    assert len(emulator.users) == 100


async def test_invalid_records_are_rejected_with_position_and_reason() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    records: list[Any] = [
        User("ok0"),
        {"user_id": ""},
        {"user_id": "ok2", "metadata": {"tags": ["a"]}},
        "not a record",
        {"user_id": "ok4", "metadata": {"score": float("nan")}},
        {"user_id": "ok5"},
    ]
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        result = await analytex.client.import_users(records)
    assert [(r.position, r.record) for r in result.rejected] == [
        (1, records[1]), (2, records[2]), (3, records[3]), (4, records[4]),
    ]  # fmt: skip
    assert "user_id" in result.rejected[0].reason
    assert "primitives only" in result.rejected[1].reason
    assert (result.rows_read, result.rows_sent) == (6, 2)
    assert set(emulator.users) == {"ok0", "ok5"}
    assert not result.ok


async def test_on_invalid_raise_stops_at_the_first_invalid_record() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    records = [*users(250), {"user_id": "x", "metadata": {"bad": {}}}, *users(10, start=900)]
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        with pytest.raises(ValidationError) as info:
            await analytex.client.import_users(records, batch_size=100, on_invalid="raise")
    assert info.value.position == 250
    assert info.value.field == "metadata.bad" or "metadata.bad" in str(info.value)
    assert info.value.result is not None
    assert info.value.result.rows_sent in (100, 200)  # what went before it is reported


async def test_files_of_every_kind(tmp_path: Path) -> None:
    ndjson = tmp_path / "users.ndjson.gz"
    with gzip.open(ndjson, "wt", encoding="utf-8") as f:
        for record in users(30):
            f.write(json.dumps(record) + "\n")
        f.write("{not json\n")
    csv_file = tmp_path / "users.csv"
    csv_file.write_text("user_id,company_id,plan\nc1,acme,pro\nc2,,free\n,x,y\n", encoding="utf-8")
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        from_ndjson = await analytex.client.import_users(ndjson)
        from_csv = await analytex.client.import_users(str(csv_file))
    assert from_ndjson.rows_sent == 30
    assert [(r.position, r.line) for r in from_ndjson.rejected] == [(30, 31)]
    assert from_csv.rows_sent == 2
    assert [(r.position, r.line) for r in from_csv.rejected] == [(2, 4)]
    assert emulator.users["c1"].company_id == "acme"
    assert emulator.users["c1"].metadata == {"plan": "pro"}
    assert emulator.users["c2"].metadata == {"plan": "free"}


async def test_companies_import() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    companies = [{"company_id": f"c{i}", "metadata": {"seats": i}} for i in range(20)]
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        result = await analytex.client.import_companies(companies)
    assert result.rows_sent == 20
    assert emulator.companies["c19"].metadata == {"seats": 19}


async def test_progress_reports_every_stage_sync_and_async() -> None:
    emulator = Emulator()
    seen: list[ImportProgress] = []

    async def record(progress: ImportProgress) -> None:
        seen.append(progress)

    async with EmulatedAnalytex(emulator) as analytex:
        result = await analytex.client.import_users(
            users(2_500), batch_size=1_000, on_progress=record
        )
        sync_seen: list[ImportProgress] = []
        await analytex.client.import_users(users(10), on_progress=sync_seen.append)
    assert {p.waiting_for for p in seen} >= {None, "rate", "job"}
    final = seen[-1]
    assert final == ImportProgress(
        rows_read=2_500, rows_sent=2_500, rows_rejected=0, rows_completed=2_500,
        batches_sent=3, waiting_for=None, sending_done=True,
    )  # fmt: skip
    # every batch is sent only once the last one was accepted: its reports say so, none before
    done = [p.sending_done for p in seen]
    assert done == sorted(done)
    assert all(p.rows_sent == 2_500 for p in seen if p.sending_done)
    assert [p.batches_sent for p in seen] == sorted(p.batches_sent for p in seen)
    assert result.ok
    assert sync_seen[-1].rows_completed == 10


async def test_retry_is_reported_and_429_pushes_the_governor_back() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    emulator.faults.add(PATH, status=429, headers={"Retry-After": "30"}, times=1)
    seen: list[ImportProgress] = []
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        start = anyio.current_time()
        await analytex.client.import_users(users(10), on_progress=seen.append)
        assert anyio.current_time() - start >= 30
        pushed = anyio.current_time()
        await analytex.client.governor.acquire(1)
        assert anyio.current_time() == pushed  # the push-back is over, nothing is owed
    assert "retry" in {p.waiting_for for p in seen}


async def test_wait_false_returns_with_the_last_job_still_running() -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        result = await analytex.client.import_users(users(1_000), wait=False)
    assert result.rows_sent == 1_000
    assert not result.jobs[0].is_terminal


async def test_an_import_can_be_cancelled_and_the_client_still_works() -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        with anyio.move_on_after(600):  # the second batch waits 500 s for the rate
            await analytex.client.import_users(users(30_000))
        assert len(emulator.jobs) == 2
        await analytex.client.identify("after")
    assert "after" in emulator.users


@pytest.mark.parametrize(
    ("options", "field"),
    [({"batch_size": 0}, "batch_size"), ({"batch_size": 10_001}, "batch_size"),
     ({"on_invalid": "ignore"}, "on_invalid"), ({"on_progress": 3}, "on_progress")],
)  # fmt: skip
async def test_bad_options_are_refused(options: dict[str, Any], field: str) -> None:
    async with EmulatedAnalytex() as analytex:
        with pytest.raises(ValidationError) as info:
            await analytex.client.import_users(users(1), **options)
    assert info.value.field == field


async def test_imports_sharing_a_client_wait_for_each_others_jobs_instead_of_colliding() -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        results = []

        async def run(start: int) -> None:
            results.append(await analytex.client.import_users(users(3_000, start=start)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, 0)
            tg.start_soon(run, 10_000)
    assert sorted(r.rows_sent for r in results) == [3_000, 3_000]
    statuses = [s for s, _, _ in submits(emulator)]
    assert statuses == [202, 202]  # no 409: the second waited for the first one's job
    assert len(emulator.users) == 6_000


async def test_a_source_that_raises_aborts_with_its_error_and_the_accepted_batches() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)

    def source() -> Any:
        yield from users(250)
        raise RuntimeError("the database went away")

    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        with pytest.raises(ImportAbortedError, match="the database went away") as info:
            await analytex.client.import_users(source(), batch_size=100)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.result.rows_read == 250
    assert info.value.result.rows_sent in (100, 200)


async def test_a_job_in_an_unknown_state_with_all_rows_done_does_not_hang_the_import() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        first = await analytex.client.import_users(users(10), wait=False)
        job_id = first.jobs[0].job_id
        emulator.faults.add(
            f"/v1/background_jobs/{job_id}",
            method="GET",
            status=200,
            body={"job_id": job_id, "status": "archived", "total_rows": 10, "completed_rows": 10},
            times=None,
        )
        second = await analytex.client.import_users(users(10, start=10))
    assert second.rows_sent == 10
    assert any(r.method == "GET" and job_id in r.path for r in emulator.requests)


async def test_5000_identifies_fired_at_once_draw_no_429_from_the_emulator() -> None:
    emulator = Emulator()  # enforces 600 identify calls a minute, in a sliding window
    async with EmulatedAnalytex(emulator, max_retries=0) as analytex:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(5_000):
                tg.start_soon(analytex.client.identify, f"u{i}")
        elapsed = anyio.current_time() - start
    assert [r.status for r in emulator.requests].count(429) == 0
    assert len(emulator.users) == 5_000
    assert 8 * 60 <= elapsed < 9 * 60 + 1
