"""Defects a line-by-line review found in the bulk pipeline, each pinned by a test.

Bounded rejections, a 413 split charged to the governor once, one job waiter with one
"finished" rule, 2xx bodies that are not jobs, journal failures named as such, and no
hashing of 50 MB batches on the event loop.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from analytex_async import (
    APIResponseValidationError,
    AsyncAnalytex,
    ImportAbortedError,
    Job,
    JobStatus,
    Rejection,
    RowGovernor,
)
from analytex_async._bulk import _journal
from analytex_async._bulk._jobs import is_finished
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from ..conftest import API_KEY, BASE_URL, NO_WAIT, trio_mock_clock

pytestmark = pytest.mark.anyio

PATH = "/v1/users/bulk_identify"


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def mostly_invalid(count: int) -> list[dict[str, Any]]:
    """Every tenth record valid; the rest carry a nested metadata value the bulk API refuses."""
    return [
        {"user_id": f"u{i}", "metadata": {"n": i} if i % 10 == 0 else {"bad": {"nested": i}}}
        for i in range(count)
    ]


# -- rejections are bounded -------------------------------------------------------------------


async def test_the_result_keeps_the_first_1000_rejections_and_counts_all() -> None:
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        result = await analytex.client.import_users(mostly_invalid(5_000))
    assert result.rows_read == 5_000
    assert result.rows_sent == 500
    assert result.rows_rejected == 4_500
    assert len(result.rejected) == 1_000
    assert result.rejected[0].position == 1
    assert result.rejected[-1].position < 1_200  # the first ones, in order
    assert not result.ok


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_callable_on_invalid_receives_every_rejection_in_order(flavour: str) -> None:
    seen: list[Rejection] = []

    def collect(rejection: Rejection) -> None:
        seen.append(rejection)

    async def collect_async(rejection: Rejection) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(rejection)

    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        result = await analytex.client.import_users(
            mostly_invalid(3_000), on_invalid=collect if flavour == "sync" else collect_async
        )
    assert len(seen) == result.rows_rejected == 2_700
    assert [r.position for r in seen] == [i for i in range(3_000) if i % 10]
    assert result.rejected == seen[:1_000]
    assert len(emulator.users) == 300


async def test_progress_counts_every_rejection() -> None:
    last: list[int] = []
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        await analytex.client.import_users(
            mostly_invalid(3_000), on_progress=lambda p: last.append(p.rows_rejected)
        )
    assert last[-1] == 2_700


# -- a 413 split is charged to the governor once ----------------------------------------------


class CountingGovernor(RowGovernor):
    """The in-process governor, remembering every charge."""

    def __init__(self, rows_per_minute: float) -> None:
        super().__init__(rows_per_minute)
        self.charged: list[int] = []

    async def acquire(self, rows: int) -> None:
        self.charged.append(rows)
        await super().acquire(rows)


async def test_the_halves_of_a_batch_split_after_a_413_are_not_charged_again() -> None:
    emulator = Emulator(rows_per_minute=1_000_000, max_records=1_000)
    governor = CountingGovernor(120_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=120_000, governor=governor) as analytex:
        start = anyio.current_time()
        await analytex.client.import_users(
            [{"user_id": f"u{i}"} for i in range(4_000)], batch_size=2_000
        )
    assert governor.charged == [2_000, 2_000]
    starts = [r.time - start for r in emulator.requests if r.path == PATH and r.status == 202]
    # 2,000 rows at 120,000 rows/min pay for 1 s: the second batch starts 1 s after the first
    # (its halves, already paid for, go out at once), not 2 s.
    assert starts[2] == pytest.approx(1.0, abs=0.05)
    assert len(emulator.users) == 4_000


# -- one job waiter ---------------------------------------------------------------------------


async def test_wait_for_job_finishes_an_unknown_status_once_every_row_is_complete(
    router: respx.MockRouter,
) -> None:
    router.get("/v1/background_jobs/j1").mock(
        return_value=httpx.Response(
            200,
            json={"job_id": "j1", "status": "archived", "total_rows": 5, "completed_rows": 5},
        )
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        with anyio.fail_after(60):
            job = await client.wait_for_job("j1")
    assert job.status is JobStatus.UNKNOWN
    assert job.completed_rows == 5


def test_the_one_finished_rule() -> None:
    assert is_finished(Job("j", JobStatus.COMPLETED))
    assert is_finished(Job("j", JobStatus.FAILED))
    assert not is_finished(Job("j", JobStatus.PROCESSING, total_rows=5, completed_rows=5))
    assert not is_finished(Job("j", JobStatus.UNKNOWN, total_rows=5, completed_rows=4))
    assert not is_finished(Job("j", JobStatus.UNKNOWN))
    assert is_finished(Job("j", JobStatus.UNKNOWN, total_rows=5, completed_rows=5))


# -- 2xx bodies that are not what the API documents -------------------------------------------


async def test_a_job_poll_without_a_job_id_is_asked_again_then_raised(
    router: respx.MockRouter,
) -> None:
    route = router.get("/v1/background_jobs/j1").mock(
        return_value=httpx.Response(200, json={"status": "completed"})
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        with pytest.raises(APIResponseValidationError, match="job_id") as info:
            await client.get_job("j1")
    assert route.call_count == NO_WAIT.max_retries + 1
    assert info.value.attempts == NO_WAIT.max_retries + 1
    assert info.value.response.status_code == 200
    assert API_KEY not in str(info.value)


async def test_a_job_poll_that_recovers_returns_the_job(router: respx.MockRouter) -> None:
    router.get("/v1/background_jobs/j1").mock(
        side_effect=[
            httpx.Response(200, text="<html>deploying</html>"),
            httpx.Response(200, json={"job_id": "j1", "status": "completed"}),
        ]
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        job = await client.get_job("j1")
    assert job.status is JobStatus.COMPLETED


async def test_a_submit_answered_without_a_job_is_a_response_validation_error(
    router: respx.MockRouter,
) -> None:
    router.post(PATH).mock(return_value=httpx.Response(202, json={"ok": True}))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        with pytest.raises(APIResponseValidationError):
            await client.bulk_identify([{"user_id": "u1"}])


# -- the journal ------------------------------------------------------------------------------


async def test_a_journal_that_cannot_be_written_is_a_journal_failure_not_a_source_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        journal = tmp_path / "import.journal"
        # The header is written when the journal opens; the disk fills after that.
        opened = _journal.Journal.open

        async def open_then_fill(path: Any, kind: Any) -> _journal.Journal:
            opened_journal = await opened(path, kind)
            monkeypatch.setattr(_journal.os, "fsync", full_disk)
            return opened_journal

        monkeypatch.setattr(_journal.Journal, "open", open_then_fill)
        with pytest.raises(ImportAbortedError) as info:
            await analytex.client.import_users(
                [{"user_id": f"u{i}"} for i in range(300)], batch_size=100, journal=journal
            )
    message = str(info.value)
    assert "journal" in message
    assert "No space left" in message
    assert "reading the source" not in message
    assert isinstance(info.value.__cause__, _journal.JournalError)
    assert info.value.result.rows_sent == 100  # the batch was accepted before the write failed


async def test_the_journal_hashes_batches_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    hashed_on: list[int] = []
    real_digest = _journal.digest

    def watched(lines: Sequence[bytes]) -> str:
        hashed_on.append(threading.get_ident())
        return real_digest(lines)

    monkeypatch.setattr(_journal, "digest", watched)
    emulator = Emulator(rows_per_minute=1_000_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=1_000_000) as analytex:
        await analytex.client.import_users(
            [{"user_id": f"u{i}"} for i in range(300)],
            batch_size=100,
            journal=tmp_path / "import.journal",
        )
    assert len(hashed_on) == 3
    assert loop_thread not in hashed_on
