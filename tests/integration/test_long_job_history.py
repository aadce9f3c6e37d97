"""A long job history hides nothing: the lost-answer lookup and a 409's blocking job (sdk.md).

The job list is paginated, in the server's order (the emulator's is oldest first, the worst
case for finding the newest job). With thousands of jobs behind it, an upload whose answer was
lost is still found and adopted (not sent again), and a 409's blocking job is still found and
waited for (not taken for an unexplained conflict). The emulator is served on a real loopback
socket, so that a dropped answer is a dropped connection, as in
``test_no_duplicate_jobs_served.py``; the history is written into its store directly, the way
thousands of earlier imports would have left it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import attrs
import pytest

from analytex_async import AsyncAnalytex, RetryPolicy
from analytex_async.emulator import Emulator, serve
from analytex_async.emulator._store import BulkJob, JobKind

pytestmark = pytest.mark.anyio

HISTORY = 3_000
PAGE = 25
"""Jobs per page: the history spans 120 pages, past any page cap a lookup might have had."""
FAST = RetryPolicy(max_retries=3, initial_delay=0.0, max_delay=0.0, random=lambda: 0.0)
_keys = itertools.count()


@attrs.frozen
class Served:
    emulator: Emulator
    url: str
    portal: anyio.from_thread.BlockingPortal

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function`` on the emulator's own loop (its clock and store live there)."""
        return self.portal.call(lambda: function(self.emulator, *args))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    emulator = Emulator(rows_per_minute=6_000_000, jobs_page_size=PAGE)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator)) as url,
    ):
        yield Served(emulator, url, portal)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def key(served: Served) -> Iterator[str]:
    yield f"history-key-{next(_keys)}"
    served.emulator.faults.clear()


def _old_job(emulator: Emulator, key: str, n: int, kind: JobKind) -> BulkJob:
    now = emulator._now()
    return BulkJob(
        job_id=f"{key}-old-{n}",
        kind=kind,
        account=emulator.account(key).label,
        total_rows=10,
        submitted_at=now - 60,
        start_at=now - 60,
        rows_per_minute=1_200,
        file_size=100,
        filename=f"earlier-import-{n}.ndjson",
        status="completed",
        completed_rows=10,
        end_at=now - 59.5,
    )


def fill_history(emulator: Emulator, key: str, kind: JobKind) -> None:
    jobs = emulator.account(key).jobs
    for n in range(HISTORY):
        job = _old_job(emulator, key, n, kind)
        jobs[job.job_id] = job


def start_blocking_job(emulator: Emulator, key: str, kind: JobKind) -> str:
    """Another process's job, newest of all: 10 rows at 600 a minute, done in a second."""
    now = emulator._now()
    job = attrs.evolve(
        _old_job(emulator, key, HISTORY, kind),
        job_id=f"{key}-blocking",
        submitted_at=now,
        start_at=now,
        rows_per_minute=600,
        status="queued",
        completed_rows=0,
        end_at=None,
    )
    emulator.account(key).jobs[job.job_id] = job
    return job.job_id


def account_state(emulator: Emulator, key: str, path: str) -> tuple[list[BulkJob], int]:
    account = emulator.account(key)
    uploads = [r for r in emulator.requests if r.path == path and r.account == account.label]
    return list(account.jobs.values()), len(uploads)


UPLOADS = {"users": "/v1/users/bulk_identify", "events": "/v1/imports"}


def rows(kind: str, key: str) -> list[dict[str, Any]]:
    if kind == "users":
        return [{"user_id": f"{key}-u{i}"} for i in range(5)]
    at = "2024-07-28T08:55:35+00:00"
    return [
        {"event_type": "track", "user_id": f"{key}-u{i}", "event_name": "e", "inserted_at": at}
        for i in range(5)
    ]


async def run_import(served: Served, key: str, kind: str) -> Any:
    async with AsyncAnalytex(api_key=key, base_url=served.url, retry_policy=FAST) as client:
        if kind == "users":
            return await client.import_users(rows(kind, key))
        return await client.import_events(rows(kind, key))


@pytest.mark.parametrize("kind", ["users", "events"])
async def test_a_lost_answer_is_found_behind_thousands_of_jobs_and_adopted(
    served: Served, key: str, kind: str
) -> None:
    served.call(fill_history, key, kind)
    fault = served.emulator.faults.add(
        UPLOADS[kind], method="POST", after_handling=True, drop_connection=True
    )
    result = await run_import(served, key, kind)
    assert fault.hits == 1
    jobs, uploads = served.call(account_state, key, UPLOADS[kind])
    assert uploads == 1  # never sent again
    assert len(jobs) == HISTORY + 1  # the one new job, adopted
    assert [job.job_id for job in result.jobs] == [jobs[-1].job_id]
    assert (result.jobs[0].status.value, result.rows_sent) == ("completed", 5)


@pytest.mark.parametrize("kind", ["users", "events"])
async def test_a_409s_blocking_job_is_found_behind_thousands_of_jobs_and_waited_for(
    served: Served, key: str, kind: str
) -> None:
    served.call(fill_history, key, kind)
    blocking = served.call(start_blocking_job, key, kind)
    result = await run_import(served, key, kind)
    jobs, uploads = served.call(account_state, key, UPLOADS[kind])
    assert uploads == 2  # a 409, then the same batch once the blocking job was done
    assert jobs[-2].job_id == blocking
    assert jobs[-2].status == "completed"
    assert jobs[-2].end_at is not None
    assert jobs[-1].submitted_at >= jobs[-2].end_at
    assert [job.job_id for job in result.jobs] == [jobs[-1].job_id]
    assert result.ok
