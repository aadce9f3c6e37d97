"""No duplicate jobs after a lost answer, end to end over a real loopback socket (sdk.md).

The emulator is served by uvicorn on 127.0.0.1, in a thread of its own (an asyncio loop behind a
blocking portal), so that the client under test runs on asyncio and on trio alike. Its faults
are added on the in-process ``Emulator`` before each import: the server handles the upload (the
job is made, the records will be stored), then loses the answer, by dropping the connection or
by answering later than the client's read timeout. The client must look its upload up by file
name in ``GET /v1/background_jobs`` and adopt that job instead of sending the file again.

Every test uses an API key of its own, so its account (jobs, users, events) is its own on the one
emulator the module serves. The unit tests of adoption (respx) are in ``tests/test_events.py``.

A long job history hides nothing: a second emulator lists its jobs in pages, oldest first (the
worst case for finding the newest job), and thousands of earlier jobs stand before the upload
whose answer is lost, or before a 409's blocking job. The history is written into its store
directly, the way thousands of earlier imports would have left it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.from_thread
import attrs
import httpx
import pytest

from analytex_async import AsyncAnalytex, Event, ImportResult, RetryPolicy
from analytex_async.emulator import Emulator, serve
from analytex_async.emulator._store import BulkJob, JobKind

pytestmark = pytest.mark.anyio

ROWS = 25
FAST = RetryPolicy(max_retries=3, initial_delay=0.0, max_delay=0.0, random=lambda: 0.0)
TIMEOUT = 0.5
"""The client's timeout in the read-timeout tests; every other request answers in milliseconds."""
LATE = 1.2
"""How long the emulator holds the handled upload's answer: well past ``TIMEOUT``."""
UPLOADS = {"users": "/v1/users/bulk_identify", "events": "/v1/imports"}
_keys = itertools.count()
T = TypeVar("T")


@attrs.frozen
class Served:
    """The emulator, its URL, and its loop (to read the emulator's state where it lives)."""

    emulator: Emulator
    url: str
    portal: anyio.from_thread.BlockingPortal

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(emulator, *args)`` on the emulator's own loop (its clock lives there)."""
        return self.portal.call(lambda: function(self.emulator, *args))


@contextmanager
def serving(emulator: Emulator) -> Iterator[Served]:
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator)) as url,
    ):
        yield Served(emulator, url, portal)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serving(Emulator(rows_per_minute=6_000_000)) as served:  # a job is done once read
        yield served


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The client runs on both backends; the served emulator keeps its own asyncio loop."""
    return str(request.param)


@pytest.fixture
def key(served: Served) -> Iterator[str]:
    """An API key of the test's own: an account of its own on the module's emulator."""
    yield f"served-key-{next(_keys)}"
    served.emulator.faults.clear()  # a fault a failed test left must not take the next upload


def records(kind: str, key: str) -> list[Any]:
    """``ROWS`` users, or ``ROWS`` events of every type, with ids unique to the test's key."""
    if kind == "users":
        return [{"user_id": f"{key}-u{i}", "metadata": {"n": i}} for i in range(ROWS)]
    at = "2024-07-28T08:55:35+00:00"
    makers = [
        lambda i: Event.identify_user(f"{key}-u{i}", {"n": i}, at),
        lambda i: Event.identify_company(f"{key}-c{i}", {"n": i}, at),
        lambda i: Event.page_view(f"{key}-u{i}", "example.com", f"/p/{i}", at),
        lambda i: Event.track(f"{key}-u{i}", "Signed Up", at, metadata={"n": i}),
    ]
    return [makers[i % len(makers)](i) for i in range(ROWS)]


async def send(served: Served, key: str, kind: str, **options: Any) -> ImportResult:
    async with AsyncAnalytex(
        api_key=key, base_url=served.url, retry_policy=FAST, **options
    ) as client:
        source = records(kind, key)
        if kind == "users":
            return await client.import_users(source)
        return await client.import_events(source)


async def check_one_job_and_every_record_once(
    served: Served, key: str, kind: str, result: ImportResult, *, held: bool = False
) -> None:
    """One job for the account, adopted by the import; each record stored, and stored once.

    ``held``: the upload's answer may still be held by the emulator (a late answer).
    """
    async with AsyncAnalytex(api_key=key, base_url=served.url) as client:
        listed = await client.list_jobs()
    assert len(listed) == 1, [job.raw for job in listed]
    [job] = listed
    assert [j.job_id for j in result.jobs] == [job.job_id]  # the one made was adopted
    assert (job.status.value, job.total_rows) == ("completed", ROWS)
    assert result.rows_sent == ROWS

    # The log holds a request once it is answered: a held answer is not in it yet, and every
    # upload the emulator handles makes a job, so the one job listed is the proof there.
    uploads = served.portal.call(_uploads_of, served.emulator, key, UPLOADS[kind])
    assert len(uploads) <= 1 if held else len(uploads) == 1  # never sent again
    assert all(upload.fault is not None for upload in uploads)

    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        if kind == "users":
            for i in range(ROWS):
                user = (await http.get(f"/_emulator/users/{key}-u{i}")).json()
                assert user["metadata"] == {"n": i}
            return
        shown = (await http.get("/_emulator/events")).json()
    mine = [e for e in shown if (e.get("user_id") or e["company_id"]).startswith(f"{key}-")]
    assert len(mine) == ROWS  # every event stored once (each test's ids are its own)
    assert {e["job_id"] for e in mine} == {job.job_id}


def _uploads_of(emulator: Emulator, key: str, path: str) -> list[Any]:
    # Runs on the emulator's loop: reading an account settles its jobs on the emulator's clock.
    label = emulator.account(key).label
    return [r for r in emulator.requests if r.path == path and r.account == label]


LOSSES = {
    # The connection closes once the upload was handled: the answer never comes.
    "dropped": ({"drop_connection": True}, {}),
    # The answer comes after the client's read timeout gave up on it.
    "late": ({"delay": LATE}, {"timeout": TIMEOUT}),
}


@pytest.mark.parametrize("kind", ["users", "events"])
@pytest.mark.parametrize("loss", list(LOSSES))
async def test_a_lost_answer_to_a_handled_upload_adopts_the_job_the_server_made(
    served: Served, key: str, kind: str, loss: str
) -> None:
    fault_options, client_options = LOSSES[loss]
    fault = served.emulator.faults.add(
        UPLOADS[kind], method="POST", after_handling=True, **fault_options
    )
    result = await send(served, key, kind, **client_options)
    assert fault.hits == 1
    await check_one_job_and_every_record_once(served, key, kind, result, held=loss == "late")


# -- a long history -----------------------------------------------------------------------------

HISTORY = 3_000
PAGE = 25
"""Jobs per page: the history spans 120 pages, past any page cap a lookup might have had."""


@pytest.fixture(scope="module")
def paged() -> Iterator[Served]:
    with serving(Emulator(rows_per_minute=6_000_000, jobs_page_size=PAGE)) as served:
        yield served


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
    """Another process's job, the newest of all: 10 rows at 600 a minute, done in a second."""
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


def jobs_and_uploads(emulator: Emulator, key: str, path: str) -> tuple[list[BulkJob], int]:
    return list(emulator.account(key).jobs.values()), len(_uploads_of(emulator, key, path))


@pytest.fixture(params=["users", "events"])
def kind(request: pytest.FixtureRequest, paged: Served, key: str) -> str:
    """What the test imports, with thousands of earlier jobs of that kind in its account."""
    kind = str(request.param)
    paged.call(fill_history, key, "users" if kind == "users" else "events")
    return kind


async def test_a_lost_answer_is_found_behind_thousands_of_jobs_and_adopted(
    paged: Served, key: str, kind: str
) -> None:
    fault = paged.emulator.faults.add(
        UPLOADS[kind], method="POST", after_handling=True, drop_connection=True
    )
    try:
        result = await send(paged, key, kind)
    finally:
        paged.emulator.faults.clear()
    assert fault.hits == 1
    jobs, uploads = paged.call(jobs_and_uploads, key, UPLOADS[kind])
    assert uploads == 1  # never sent again
    assert len(jobs) == HISTORY + 1  # the one new job, adopted
    assert [job.job_id for job in result.jobs] == [jobs[-1].job_id]
    assert (result.jobs[0].status.value, result.rows_sent) == ("completed", ROWS)


async def test_a_409s_blocking_job_is_found_behind_thousands_of_jobs_and_waited_for(
    paged: Served, key: str, kind: str
) -> None:
    blocking = paged.call(start_blocking_job, key, "users" if kind == "users" else "events")
    result = await send(paged, key, kind)
    jobs, uploads = paged.call(jobs_and_uploads, key, UPLOADS[kind])
    assert uploads == 2  # a 409, then the same batch once the blocking job was done
    assert jobs[-2].job_id == blocking
    assert jobs[-2].status == "completed"
    assert jobs[-2].end_at is not None
    assert jobs[-1].submitted_at >= jobs[-2].end_at
    assert [job.job_id for job in result.jobs] == [jobs[-1].job_id]
    assert result.ok
