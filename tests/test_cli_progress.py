"""What an import's display says it waits for, and how fresh its "completed" count stays.

The watch and the plain display run on a fake clock; the display's own job polls run on trio's
mock clock; the response hook that spots the import's jobs runs against a served emulator.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given
from hypothesis import strategies as st

from analytex_async import APIConnectionError, AsyncAnalytex, ImportProgress, Job
from analytex_async.cli._display import PlainImportDisplay
from analytex_async.cli._progress import ImportWatch, clock_time
from analytex_async.cli._server_jobs import (
    SERVER_REFRESH,
    job_spotter,
    keep_jobs_fresh,
    spotting_http_client,
)
from analytex_async.emulator import Emulator, serve

from .conftest import trio_mock_clock

EPOCH = 1_700_000_000.0
RATE = "the rate (1,200 rows/min)"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watching(clock: FakeClock, **options: Any) -> ImportWatch:
    return ImportWatch(
        rows_per_minute=1_200, clock=clock, wall_clock=lambda: EPOCH + clock.now, **options
    )


def at(clock: FakeClock, seconds: float) -> str:
    """The time of day the watch shows for ``seconds`` on the fake clock."""
    return clock_time(EPOCH + seconds)


def job(job_id: str, status: str, total: int, done: int) -> Job:
    return Job.from_api(
        {"job_id": job_id, "status": status, "total_rows": total, "completed_rows": done}
    )


def send_first_batch(watch: ImportWatch, clock: FakeClock, rows: int = 10_000) -> None:
    """The pipeline's reports for one batch: the rate wait, the batch leaving, its acceptance."""
    watch.update(ImportProgress(rows_read=rows, waiting_for="rate"))
    clock.now += 1  # the batch leaves at 101
    watch.update(ImportProgress(rows_read=rows))
    clock.now += 4  # accepted at 105
    watch.update(ImportProgress(rows_read=rows, rows_sent=rows, batches_sent=1))


# -- what the import waits for --------------------------------------------------------------------


def test_waiting_for_the_rate_names_the_time_of_the_next_batch() -> None:
    clock = FakeClock()
    watch = watching(clock)
    send_first_batch(watch, clock)
    watch.update(ImportProgress(rows_read=20_000, rows_sent=10_000, waiting_for="rate"))
    # 10,000 rows at 1,200 a minute: 500 s after the batch left at 101.
    assert watch.next_batch_at() == 601
    assert watch.waiting_text() == f"next batch at {at(clock, 601)}: {RATE}"


def test_a_finished_job_the_pipeline_has_not_polled_yet_is_not_the_wait() -> None:
    clock = FakeClock()
    watch = watching(clock)
    send_first_batch(watch, clock)
    clock.now = 130
    watch.update(ImportProgress(rows_read=20_000, rows_sent=10_000, waiting_for="job"))
    watch.saw_job(job("j1", "completed", 10_000, 10_000))  # the display's own look
    assert watch.rows_completed == 10_000
    assert watch.waiting_text() == f"next batch at {at(clock, 601)}: {RATE}"


def test_a_server_behind_the_rate_is_the_wait() -> None:
    clock = FakeClock()
    watch = watching(clock)
    send_first_batch(watch, clock)
    watch.saw_job(job("j1", "processing", 10_000, 26))
    clock.now = 700  # the rate would let the next batch go since 601
    watch.update(ImportProgress(rows_read=20_000, rows_sent=10_000, waiting_for="job"))
    assert watch.waiting_text() == ("waiting for the server's running job (26 of 10,000 rows done)")


def test_a_job_with_more_rows_to_do_than_the_rate_leaves_is_the_wait() -> None:
    clock = FakeClock()
    watch = watching(clock)
    send_first_batch(watch, clock)
    clock.now = 590  # the rate lets the next batch go at 601; 9,000 rows take 450 s more
    watch.saw_job(job("j1", "processing", 10_000, 1_000))
    watch.update(ImportProgress(rows_read=20_000, rows_sent=10_000, waiting_for="job"))
    assert watch.waiting_text().startswith("waiting for the server's running job")


def test_the_plain_line_says_the_binding_wait() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    watch = watching(clock, total=30_000)
    display = PlainImportDisplay(watch, lambda: stream)
    watch.update(ImportProgress(rows_read=10_000, waiting_for="rate"))
    clock.now += 1
    display.update(ImportProgress(rows_read=10_000))
    clock.now += 4
    display.update(ImportProgress(rows_read=10_000, rows_sent=10_000, batches_sent=1))
    clock.now += 20
    display.update(ImportProgress(rows_read=20_000, rows_sent=10_000, waiting_for="job"))
    watch.saw_job(job("j1", "completed", 10_000, 10_000))
    assert watch.line(display.stages).endswith(
        f"completed 10,000, rejected 0; rate -, ETA 0:16:40; next batch at {at(clock, 601)}: {RATE}"
    )


def test_with_nothing_left_to_send_the_rate_is_never_the_wait() -> None:
    # Issue 21: "next batch at ...: the rate" showed while the last job ran, nothing left to send.
    clock = FakeClock()
    watch = watching(clock)
    send_first_batch(watch, clock)
    clock.now = 130  # the rate would hold a next batch until 601, but there is none
    last = ImportProgress(rows_read=10_000, rows_sent=10_000, waiting_for="job", sending_done=True)
    watch.update(last)
    watch.saw_job(job("j1", "processing", 10_000, 500))
    assert watch.waiting_text() == "waiting for the server's running job (500 of 10,000 rows done)"
    watch.saw_job(job("j1", "completed", 10_000, 10_000))  # the display saw it before the pipeline
    assert watch.waiting_text() == "finishing: the server is done"
    assert "the rate" not in watch.line()


def test_an_events_import_never_names_the_rate_nor_an_eta_from_it() -> None:
    clock = FakeClock()
    watch = watching(clock, paced=False, total=20_000)
    send_first_batch(watch, clock)
    watch.update(ImportProgress(rows_read=20_000, rows_sent=10_000, waiting_for="job"))
    watch.saw_job(job("j1", "completed", 10_000, 10_000))
    assert watch.waiting_text() == "waiting for the server's running job"
    assert watch.eta() is None  # no rate paces events: no ETA until one is measured
    assert "rate (" not in watch.line()


def test_the_running_jobs_rows_done_agree_with_the_completed_count() -> None:
    # Issue 21: "completed 41 (0 of 991 rows done)": the count from the pipeline's poll, the
    # job's rows from an older state the display had.
    clock = FakeClock()
    watch = watching(clock)
    send_first_batch(watch, clock, rows=991)
    watch.saw_job(job("j1", "queued", 991, 0))
    watch.update(
        ImportProgress(rows_read=991, rows_sent=991, rows_completed=41, waiting_for="job",
                       sending_done=True)
    )  # fmt: skip
    assert watch.rows_completed == 41
    assert watch.waiting_text() == "waiting for the server's running job (41 of 991 rows done)"


@given(
    jobs=st.lists(
        st.tuples(st.integers(1, 10_000), st.floats(0, 1), st.booleans()), min_size=1, max_size=5
    ),
    fresher=st.floats(0, 1),
)
def test_rows_done_never_disagree_with_the_completed_count(
    jobs: list[tuple[int, float, bool]], fresher: float
) -> None:
    clock = FakeClock()
    watch = watching(clock)
    sent = sum(total for total, _, _ in jobs)
    for n, (total, share, _) in enumerate(jobs):
        # every job but the last is finished; the last one runs
        status, done = ("completed", total) if n < len(jobs) - 1 else ("processing", 0)
        if n == len(jobs) - 1:
            done = int(total * share)
        watch.saw_job(job(f"j{n}", status, total, done))
    seen = watch.rows_completed
    # the pipeline's own count may be fresher than the display's states, never past what was sent
    reported = seen + int((sent - seen) * fresher)
    watch.update(
        ImportProgress(rows_read=sent, rows_sent=sent, rows_completed=reported,
                       waiting_for="job", sending_done=True)
    )  # fmt: skip
    text = watch.waiting_text()
    running_total = jobs[-1][0]
    done = int(text.split("(")[1].split(" of ")[0].replace(",", ""))
    others = sent - running_total
    assert done <= running_total
    assert done + others == watch.rows_completed  # the line's two counts tell the same story


# -- the display's own look at the server ----------------------------------------------------------


class FakeServer:
    """Jobs that finish on a schedule; counts the looks."""

    def __init__(self) -> None:
        self.states: dict[str, Job] = {}
        self.looks: list[tuple[float, str]] = []

    async def get_job(self, job_id: str) -> Job:
        self.looks.append((anyio.current_time(), job_id))
        return self.states[job_id]


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


@pytest.mark.anyio
async def test_the_display_refreshes_what_the_server_completed_every_10_seconds() -> None:
    stream = io.StringIO()
    watch = ImportWatch(rows_per_minute=1_200, total=10_000, clock=anyio.current_time)
    display = PlainImportDisplay(watch, lambda: stream, interval=5.0)
    server = FakeServer()
    display.update(ImportProgress(rows_read=10_000, rows_sent=10_000, batches_sent=1))
    watch.saw_job(job("j1", "processing", 10_000, 26))
    server.states["j1"] = job("j1", "completed", 10_000, 10_000)  # done; the pipeline waits on
    started = anyio.current_time()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(display.keep_showing)
        tasks.start_soon(keep_jobs_fresh, watch, server.get_job, display.redraw)
        await anyio.sleep(SERVER_REFRESH + 1)
        assert watch.rows_completed == 10_000
        await anyio.sleep(60)  # nothing unfinished: nothing more is asked
        tasks.cancel_scope.cancel()
    assert [(when - started, job_id) for when, job_id in server.looks] == [(SERVER_REFRESH, "j1")]
    lines = stream.getvalue().splitlines()
    assert "completed 26," in lines[1]  # 5 s: as the job was accepted
    assert lines[3].startswith("analytex-async: [0:00:15]")
    assert "completed 10,000," in lines[3]  # the line after the display's look, at 10 s


@pytest.mark.anyio
async def test_a_failed_look_is_skipped_not_raised() -> None:
    watch = ImportWatch(rows_per_minute=1_200)
    watch.saw_job(job("j1", "processing", 100, 1))
    looks = 0

    async def failing(job_id: str) -> Job:
        nonlocal looks
        looks += 1
        raise APIConnectionError("http://127.0.0.1:9: connection refused")

    with anyio.move_on_after(3 * SERVER_REFRESH + 1):
        await keep_jobs_fresh(watch, failing, lambda: None)
    assert looks == 3
    assert watch.rows_completed == 1  # the last state seen stands


# -- spotting the import's jobs -------------------------------------------------------------------


def response(method: str, path: str, status: int, body: Any) -> httpx.Response:
    request = httpx.Request(method, f"https://analytex.test{path}")
    return httpx.Response(status, json=body, request=request)


@pytest.mark.anyio
async def test_the_hook_takes_jobs_from_accepted_bulk_uploads_only() -> None:
    watch = ImportWatch(rows_per_minute=1_200)
    spot = job_spotter(watch)
    accepted = {"job_id": "j1", "status": "queued", "total_rows": 5}
    await spot(response("POST", "/v1/users/bulk_identify", 202, accepted))
    await spot(response("GET", "/v1/background_jobs/j2", 200, {"job_id": "j2"}))
    await spot(response("POST", "/v1/users/bulk_identify", 409, {"job_id": "j3"}))
    await spot(response("POST", "/v1/companies/bulk_identify", 202, {"no": "job"}))
    await spot(response("POST", "/v1/identify", 200, {"job_id": "j4"}))
    assert list(watch.jobs) == ["j1"]
    assert watch.unfinished_jobs()[0].total_rows == 5


@pytest.mark.anyio
async def test_the_hook_takes_events_imports_and_every_later_state_of_the_imports_jobs() -> None:
    watch = ImportWatch(rows_per_minute=1_200, paced=False)
    spot = job_spotter(watch)
    await spot(response("POST", "/v1/imports", 200, {"job_id": "i1", "status": "queued"}))
    polled = {"job_id": "i1", "status": "processing", "total_rows": "10", "completed_rows": "4"}
    await spot(response("GET", "/v1/background_jobs/i1", 200, polled))
    await spot(response("GET", "/v1/background_jobs/other", 200, {"job_id": "other"}))
    await spot(response("GET", "/v1/background_jobs/i1", 503, {"job_id": "i1"}))
    assert list(watch.jobs) == ["i1"]  # another job's state is not the import's
    assert watch.jobs["i1"].completed_rows == 4  # the pipeline's poll, seen by the display


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(Emulator(rows_per_minute=600_000))) as url,
    ):
        yield url


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_client_on_the_spotting_http_client_hands_its_jobs_to_the_watch(
    served: str, anyio_backend: str
) -> None:
    watch = ImportWatch(rows_per_minute=600_000)
    async with (
        spotting_http_client(served, watch) as http_client,
        AsyncAnalytex(api_key="spotted", base_url=served, http_client=http_client) as client,
    ):
        accepted = await client.bulk_identify([{"user_id": f"u{i}"} for i in range(3)])
        assert list(watch.jobs) == [accepted.job_id]
        finished = await client.wait_for_job(accepted.job_id)
    assert finished.total_rows == 3
