"""The fault suite: every fault the issue names, injected into a real import over a real loopback
socket, with every record accounted for.

Each case imports 3,000 distinct users in batches of 500 (fast rates on both sides, retries
without backoff unless the case is about timing) through a proxy that can break connections,
to an emulator served by uvicorn. Afterwards every valid record must be stored by the server, or
reported (rejected, in a failed job, or left unsent by an abort that says so): ``lost`` is always
0. ``duplicated`` counts records the server accepted in more than one batch; it is 0 except where
the server handled a batch whose answer never reached the client (at most that one batch).

An abort is then resumed with the same journal, and the totals are taken over both runs.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from analytex_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncAnalytex,
    ConflictError,
    ImportAbortedError,
    ImportProgress,
    ImportResult,
    InternalServerError,
    JobStatus,
    RateLimitError,
    RetryPolicy,
)
from analytex_async.emulator import Emulator, ReceivedRequest, serve

from .conftest import (
    REPORT,
    Elsewhere,
    FaultOutcome,
    FaultyProxy,
    SubmitLog,
    Tally,
    counting_job_ids,
    tally,
    user_records,
)

pytestmark = pytest.mark.anyio

KEY = "sk_test_reliability_7d1e29"
SUBMIT = "/v1/users/bulk_identify"
JOBS = "/v1/background_jobs/"
ANY_JOB = re.compile(r"/v1/background_jobs/.+")
ROWS = 3_000
BATCH = 500
RATE = 1_000_000
FAST = RetryPolicy(max_retries=3, initial_delay=0, max_delay=0, random=lambda: 0.0)
ATTEMPTS = FAST.max_retries + 1


@attrs.define
class Rig:
    """The emulator (behind the proxy), what it accepted, and a way to run the import."""

    emulator: Emulator
    log: SubmitLog
    proxy: FaultyProxy
    elsewhere: Elsewhere
    url: str
    journal: Path
    source: list[dict[str, Any]] = attrs.Factory(lambda: user_records(ROWS))
    retries: int = 0
    """Retries the imports reported: the only way a batch can reach the server twice."""

    def client(self, **options: Any) -> AsyncAnalytex:
        options.setdefault("retry_policy", FAST)
        options.setdefault("timeout", 5.0)
        return AsyncAnalytex(
            api_key=KEY,
            base_url=self.url,
            rows_per_minute=RATE,
            requests_per_minute=None,
            **options,
        )

    async def run(
        self,
        *,
        journal: bool = False,
        on_progress: Callable[[ImportProgress], None] | None = None,
        **client_options: Any,
    ) -> ImportResult:
        def progress(report: ImportProgress) -> None:
            if report.waiting_for == "retry":
                self.retries += 1
            if on_progress is not None:
                on_progress(report)

        async with self.client(**client_options) as client:
            return await client.import_users(
                self.source,
                batch_size=BATCH,
                journal=self.journal if journal else None,
                on_progress=progress,
            )

    def submits(self) -> list[ReceivedRequest]:
        return [r for r in self.emulator.requests if r.path == SUBMIT]

    async def tally(self, *results: ImportResult, aborted: bool = False) -> Tally:
        return await tally(self.log, self.source, results, aborted=aborted)

    async def abort_then_resume(
        self,
        arm: Callable[[], object],
        *,
        after: int = 2,
        cause: type[BaseException],
        may_repeat_in_flight: bool = False,
        **client_options: Any,
    ) -> tuple[ImportAbortedError, Tally, Tally]:
        """Run with a journal until ``arm``'s fault aborts it, clear the faults, run again.

        ``may_repeat_in_flight``: the fault leaves the server handling requests the client gave
        up on, so the batch in flight may have been accepted more than once.
        """
        with pytest.raises(ImportAbortedError) as info:
            await self.run(journal=True, on_progress=after_batches(after, arm), **client_options)
        error = info.value
        check_abort(error, cause=cause, batches=after)
        at_abort = await self.tally(error.result, aborted=True)
        assert at_abort.lost == 0
        if not may_repeat_in_flight:
            assert at_abort.duplicated == 0
            assert at_abort.accepted == after * BATCH
            assert at_abort.reported_unsent == ROWS - after * BATCH
        self.emulator.faults.clear()
        self.proxy.faults.clear()
        self.log.run += 1
        resumed = await self.run(journal=True)
        assert resumed.ok
        assert resumed.rows_skipped == after * BATCH
        assert resumed.rows_sent == ROWS - after * BATCH
        final = await self.tally(error.result, resumed)
        # Attempts whose outcome the client cannot know: every retried one, and the last one
        # when the abort was for want of an answer.
        unanswered = self.retries + isinstance(error.__cause__, APIConnectionError)
        assert final.duplicated <= unanswered * BATCH
        if not may_repeat_in_flight:
            assert final.duplicated == 0
        return error, at_abort, final


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    emulator = Emulator(
        rows_per_minute=RATE, realtime_requests_per_minute=None, job_id_factory=counting_job_ids()
    )
    log = SubmitLog(emulator)
    elsewhere = Elsewhere()
    async with serve(emulator) as direct:
        proxy = FaultyProxy(direct)
        async with proxy.running() as url, elsewhere.running():
            yield Rig(emulator, log, proxy, elsewhere, url, tmp_path / "import.journal")


def after_batches(count: int, arm: Callable[[], object]) -> Callable[[ImportProgress], None]:
    """A progress callback that injects a fault once ``count`` batches were accepted."""
    armed = False

    def on_progress(progress: ImportProgress) -> None:
        nonlocal armed
        if not armed and progress.batches_sent >= count:
            armed = True
            arm()

    return on_progress


def check_abort(error: ImportAbortedError, *, cause: type[BaseException], batches: int) -> None:
    """The abort names the accepted batches and their jobs, and chains the final failure."""
    assert isinstance(error.__cause__, cause), repr(error.__cause__)
    assert error.result.rows_sent == batches * BATCH
    assert len(error.result.jobs) == batches
    message = str(error)
    assert f"after {batches} accepted batch(es)" in message
    for job in error.result.jobs:
        assert job.job_id in message
    assert str(error.__cause__) in message


def record(fault: str, client_saw: str, final: Tally, at_abort: Tally | None = None) -> None:
    REPORT.faults.append(FaultOutcome(fault, client_saw, final, at_abort))


def clean(t: Tally) -> None:
    """Every record accepted, none lost, none duplicated."""
    assert (t.accepted, t.lost, t.duplicated) == (t.records, 0, 0), t


def in_flight_only(rig: Rig, t: Tally) -> None:
    """Every record accepted, none lost; repeats (if any) confined to the batch in flight."""
    assert (t.accepted, t.lost) == (t.records, 0), t
    assert rig.log.repeats_only_one_batch()


def abort_summary(error: ImportAbortedError, at_abort: Tally) -> str:
    cause = error.__cause__
    attempts = getattr(cause, "attempts", 1)
    return (
        f"`ImportAbortedError` ← `{type(cause).__name__}` ({attempts} attempt(s)); "
        f"{len(error.result.jobs)} jobs listed, {at_abort.accepted:,} accepted, "
        f"{at_abort.reported_unsent:,} reported unsent, 0 lost; journal re-run sent the rest"
    )


# -- the baseline ------------------------------------------------------------------------------


async def test_baseline_without_faults_through_the_proxy(rig: Rig) -> None:
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    assert result.ok
    assert t.batches == ROWS // BATCH
    record("none (baseline, through the proxy)", "completed", t)


# -- connections -------------------------------------------------------------------------------


async def test_connection_reset_before_the_upload_is_retried(rig: Rig) -> None:
    rig.proxy.add("reset_on_head", SUBMIT, times=2)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    assert [f.hits for f in rig.proxy.faults] == [2]
    record("TCP reset on the submit's request head (before the upload), x2", "completed", t)


async def test_connection_reset_during_the_upload_is_retried(rig: Rig) -> None:
    rig.proxy.add("reset_mid_body", SUBMIT, times=2)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    assert [f.hits for f in rig.proxy.faults] == [2]
    record("TCP reset after half the submit's body arrived (during the upload), x2", "completed", t)


async def test_server_closing_before_answering_is_retried(rig: Rig) -> None:
    rig.proxy.add("close_unanswered", SUBMIT, times=2)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    record("server closes after the whole request, before answering, x2", "completed", t)


async def test_an_answer_lost_after_the_server_accepted_repeats_at_most_that_batch(
    rig: Rig,
) -> None:
    rig.proxy.add("answer_lost", SUBMIT, times=1)
    result = await rig.run()
    t = await rig.tally(result)
    in_flight_only(rig, t)
    # The server made a job the client never heard of; the retry sent the batch again. No API
    # idempotency key exists, so this one in-flight batch is the most that may repeat.
    assert t.duplicated <= BATCH
    assert t.batches == ROWS // BATCH + (1 if t.duplicated else 0)
    assert len(result.jobs) == ROWS // BATCH
    met_409 = 409 in [r.status for r in rig.submits()]
    record(
        "server handles the submit, then its answer is lost (connection closed), x1",
        "completed; the retry "
        + ("met the unseen job (409), waited for it and resent" if met_409 else "was accepted")
        + f": {t.duplicated:,} records twice (that one batch)",
        t,
    )


async def test_a_response_cut_mid_body_is_retried(rig: Rig) -> None:
    rig.emulator.faults.add(SUBMIT, drop_connection=True, times=2)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    record("submit answer cut after its headers (emulator `drop_connection`), x2", "completed", t)


async def test_connection_failures_on_job_polls_are_retried(rig: Rig) -> None:
    # Three failures in a row on one poll: exactly the retry budget (3 retries).
    rig.proxy.add("reset_on_head", JOBS, method="GET", times=1)
    rig.emulator.faults.add(ANY_JOB, method="GET", drop_connection=True, times=2)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    assert result.ok
    record("job polls: a TCP reset, then 2 answers cut mid-body", "completed", t)


async def test_connection_failures_longer_than_the_budget_abort_then_resume(rig: Rig) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.proxy.add("reset_mid_body", SUBMIT, times=10**6), cause=APIConnectionError
    )
    assert error.__cause__ is not None
    assert error.__cause__.attempts == ATTEMPTS  # type: ignore[attr-defined]
    clean(final)
    record("TCP resets during every upload after batch 2", abort_summary(error, at_abort), final)


# -- 5xx and 429 -------------------------------------------------------------------------------


async def test_5xx_shorter_than_the_budget_is_retried(rig: Rig) -> None:
    rig.emulator.faults.add(SUBMIT, status=503, times=FAST.max_retries)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    record(f"503 on the submit x{FAST.max_retries} (within the retry budget)", "completed", t)


async def test_a_5xx_storm_on_submits_aborts_listing_the_accepted_batches(rig: Rig) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(SUBMIT, status=500, times=None), cause=InternalServerError
    )
    assert error.__cause__.attempts == ATTEMPTS  # type: ignore[union-attr]
    clean(final)
    record("500 on every submit after batch 2", abort_summary(error, at_abort), final)


async def test_a_5xx_storm_on_job_polls_aborts_listing_the_accepted_batches(rig: Rig) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(ANY_JOB, method="GET", status=502, times=None),
        cause=InternalServerError,
    )
    clean(final)
    record("502 on every job poll after batch 2", abort_summary(error, at_abort), final)


async def test_a_429_storm_aborts_listing_the_accepted_batches(rig: Rig) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(SUBMIT, status=429, times=None), cause=RateLimitError
    )
    assert error.__cause__.attempts == ATTEMPTS  # type: ignore[union-attr]
    clean(final)
    record(
        "429 (no Retry-After) on every submit after batch 2", abort_summary(error, at_abort), final
    )


def gap_after_429(rig: Rig) -> float:
    submits = rig.submits()
    index = next(i for i, r in enumerate(submits) if r.status == 429)
    return submits[index + 1].time - submits[index].time


async def test_429_with_retry_after_in_seconds_is_honoured(rig: Rig) -> None:
    arm = after_batches(
        1, lambda: rig.emulator.faults.add(SUBMIT, status=429, headers={"Retry-After": "1"})
    )
    result = await rig.run(on_progress=arm)
    t = await rig.tally(result)
    clean(t)
    gap = gap_after_429(rig)
    assert 1.0 <= gap < 2.5
    record("429 with `Retry-After: 1` after batch 1", f"waited {gap:.2f} s, completed", t)


async def test_429_with_retry_after_as_an_http_date_is_honoured(rig: Rig) -> None:
    def arm() -> None:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s
        rig.emulator.faults.add(SUBMIT, status=429, headers={"Retry-After": when})

    result = await rig.run(on_progress=after_batches(1, arm))
    t = await rig.tally(result)
    clean(t)
    gap = gap_after_429(rig)
    assert 0.9 <= gap < 3.0
    record("429 with `Retry-After: <HTTP date 2 s ahead>`", f"waited {gap:.2f} s, completed", t)


async def test_429_without_retry_after_backs_off(rig: Rig) -> None:
    policy = RetryPolicy(max_retries=3, initial_delay=0.3, max_delay=0.3, jitter=0)
    arm = after_batches(1, lambda: rig.emulator.faults.add(SUBMIT, status=429))
    result = await rig.run(on_progress=arm, retry_policy=policy)
    t = await rig.tally(result)
    clean(t)
    gap = gap_after_429(rig)
    assert 0.3 <= gap < 1.5
    record("429 without `Retry-After` (backoff 0.3 s)", f"waited {gap:.2f} s, completed", t)


async def test_a_huge_retry_after_is_capped(rig: Rig) -> None:
    policy = RetryPolicy(max_retries=3, initial_delay=0, max_delay=0, max_retry_after=0.5)
    arm = after_batches(
        1, lambda: rig.emulator.faults.add(SUBMIT, status=429, headers={"Retry-After": "86400"})
    )
    with anyio.fail_after(10):
        result = await rig.run(on_progress=arm, retry_policy=policy)
    t = await rig.tally(result)
    clean(t)
    gap = gap_after_429(rig)
    assert 0.5 <= gap < 1.5
    record("429 with `Retry-After: 86400` (cap 0.5 s)", f"waited {gap:.2f} s, completed", t)


# -- slow server and timeouts ------------------------------------------------------------------


async def test_a_slow_submit_times_out_then_recovers(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="analytex_async")
    arm = after_batches(2, lambda: rig.emulator.faults.add(SUBMIT, delay=1.0, times=1))
    result = await rig.run(on_progress=arm, timeout=0.2)
    t = await rig.tally(result)  # also waits for the stalled request to finish server-side
    assert (t.accepted, t.lost) == (ROWS, 0)
    assert rig.retries >= 1
    assert f"{SUBMIT}: timed out waiting for the answer (ReadTimeout" in caplog.text  # timeout
    # The emulator, like a real server, still handles a request the client gave up on: the
    # abandoned attempt may become a job the client never hears of. Nothing else repeats.
    assert t.duplicated <= rig.retries * BATCH
    stalled = [r for r in rig.submits() if r.fault is not None]
    assert len(stalled) == 1
    record(
        "submit stalled 1 s, client timeout 0.2 s, x1",
        f"`APITimeoutError`, retried, completed; the abandoned attempt still got "
        f"{stalled[0].status} from the server",
        t,
    )


async def test_a_slow_server_beyond_the_budget_aborts_with_a_timeout_then_resumes(
    rig: Rig,
) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(SUBMIT, delay=1.0, times=None),
        cause=APITimeoutError,
        may_repeat_in_flight=True,
        timeout=0.2,
    )
    assert error.__cause__.attempts == ATTEMPTS  # type: ignore[union-attr]
    assert (final.accepted, final.lost) == (ROWS, 0)
    # The emulator (like a real server) still handles a request the client gave up on: every
    # timed-out attempt of the batch in flight may become a job the client never heard of.
    assert final.duplicated <= ATTEMPTS * BATCH
    record(
        "every submit stalled 1 s after batch 2, timeout 0.2 s",
        abort_summary(error, at_abort)
        + f"; the server still handled the {final.duplicated // BATCH} abandoned attempts",
        final,
    )


async def test_a_slow_job_poll_times_out_then_recovers(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="analytex_async")
    rig.emulator.faults.add(ANY_JOB, method="GET", delay=1.0, times=1)
    result = await rig.run(timeout=0.2)
    t = await rig.tally(result)
    clean(t)
    assert f"{JOBS}job-1: timed out waiting for the answer (ReadTimeout" in caplog.text
    record("a job poll stalled 1 s, timeout 0.2 s", "`APITimeoutError`, retried, completed", t)


# -- 409 ---------------------------------------------------------------------------------------


async def test_unexplained_409s_within_the_budget_are_retried(rig: Rig) -> None:
    arm = after_batches(
        1, lambda: rig.emulator.faults.add(SUBMIT, status=409, times=FAST.max_retries)
    )
    result = await rig.run(on_progress=arm)
    t = await rig.tally(result)
    clean(t)
    assert [r.status for r in rig.submits()].count(409) == FAST.max_retries
    record(f"409 with no running job x{FAST.max_retries}", "completed", t)


async def test_a_409_storm_with_no_running_job_aborts(rig: Rig) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(SUBMIT, status=409, times=None), cause=ConflictError
    )
    clean(final)
    record(
        "409 on every submit after batch 2, no job running", abort_summary(error, at_abort), final
    )


async def test_409s_from_a_competing_writer_are_waited_out(rig: Rig) -> None:
    """Another process on the same account keeps submitting jobs: every 409 is a real one."""
    foreign = user_records(2_000, prefix="other")
    foreign_jobs = 0

    async def competitor(client: AsyncAnalytex) -> None:
        nonlocal foreign_jobs
        for _ in range(6):
            while True:
                try:
                    job = await client.bulk_identify(foreign)
                    break
                except ConflictError:
                    await anyio.sleep(0.002)
            foreign_jobs += 1
            await client.wait_for_job(job.job_id, poll_interval=0.005)

    async with rig.client() as other:
        # 10,000 rows hold the slot for 0.6 s as the import starts: its first submit meets a 409.
        first = await other.bulk_identify(user_records(10_000, prefix="first"))
        foreign_jobs += 1
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(competitor, other)
            result = await rig.run()
        await other.wait_for_job(first.job_id, poll_interval=0.005)
    t = await rig.tally(result)
    clean(t)
    ours = [r for r in rig.submits() if r.records == BATCH]
    conflicts = [r for r in ours if r.status == 409]
    assert conflicts, "the import never met a running foreign job"
    assert [j.status for j in result.jobs] == [JobStatus.COMPLETED] * (ROWS // BATCH)
    record(
        f"409s: a competing writer on the account ran {foreign_jobs} jobs of 2,000 rows",
        f"{len(conflicts)} x 409, each waited out and resent; completed",
        t,
    )


# -- jobs that fail or answer nonsense ---------------------------------------------------------


async def test_a_failed_job_is_reported_and_the_import_continues(rig: Rig) -> None:
    arm = after_batches(1, lambda: rig.emulator.fail_next_jobs(1, after_rows=100))
    result = await rig.run(on_progress=arm)
    t = await rig.tally(result)
    assert not result.ok
    assert [j.status for j in result.jobs].count(JobStatus.FAILED) == 1
    assert result.rows_sent == ROWS  # the batches after it were still sent
    assert (t.accepted, t.reported_failed, t.lost, t.duplicated) == (ROWS - 400, 400, 0, 0)
    record(
        "job 2 ends `failed` after 100 of its 500 rows",
        "completed, `result.ok` False, the failed job listed (400 rows reported)",
        t,
    )


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"job_id": "job-2", "status": "exploding", "total_rows": 500}, "unknown status"),
        ({"job_id": "job-2"}, "only a job id (status and counts missing)"),
        ({"job_id": "job-2", "status": None, "total_rows": "many", "completed_rows": -1},
         "null status, nonsense counts"),
    ],
)  # fmt: skip
async def test_odd_job_answers_are_polled_again(rig: Rig, body: dict[str, Any], what: str) -> None:
    fault = rig.emulator.faults.add(JOBS + "job-2", method="GET", status=200, body=body, times=3)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    assert result.ok
    assert fault.hits == 3
    record(f"job poll answers {what}, x3", "kept polling; completed", t)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("<html>502 Bad Gateway</html>", "a non-JSON body"),
        ({"status": "completed"}, "a job without a job id"),
        (["job-2"], "a JSON list"),
    ],
)
async def test_a_malformed_job_poll_answer_is_polled_again(rig: Rig, body: Any, what: str) -> None:
    fault = rig.emulator.faults.add(ANY_JOB, method="GET", status=200, body=body, times=1)
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    assert result.ok
    assert fault.hits == 1
    record(f"a job poll answers 200 with {what}, x1", "polled again; completed", t)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("<html>502 Bad Gateway</html>", "a non-JSON body"),
        ({"status": "completed"}, "a job without a job id"),
        (["job-2"], "a JSON list"),
    ],
)
async def test_malformed_job_poll_answers_every_time_abort_cleanly(
    rig: Rig, body: Any, what: str
) -> None:
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(ANY_JOB, method="GET", status=200, body=body, times=None),
        cause=APIError,
    )
    clean(final)
    record(f"every job poll answers 200 with {what}", abort_summary(error, at_abort), final)


@pytest.mark.parametrize(
    ("body", "what"),
    [("accepted", "a non-JSON body"), ({"status": "queued"}, "a job without a job id")],
)
async def test_a_malformed_submit_answer_aborts_cleanly(rig: Rig, body: Any, what: str) -> None:
    # The fault answers instead of the emulator: the batch was not really accepted.
    error, at_abort, final = await rig.abort_then_resume(
        lambda: rig.emulator.faults.add(SUBMIT, status=202, body=body, times=1), cause=APIError
    )
    clean(final)
    record(f"the submit answers 202 with {what}, x1", abort_summary(error, at_abort), final)


async def test_a_poll_naming_another_job_does_not_lose_or_repeat_records(rig: Rig) -> None:
    rig.emulator.faults.add(
        JOBS + "job-2", method="GET", status=200, body={"job_id": "job-1", "status": "completed"}
    )
    result = await rig.run()
    t = await rig.tally(result)
    clean(t)
    record("a job-2 poll answers job-1 as completed, x1", "completed", t)


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "where"), [(307, "submit"), (302, "job poll")])
async def test_a_redirect_to_another_host_is_not_followed(
    rig: Rig, status: int, where: str
) -> None:
    path = SUBMIT if where == "submit" else ANY_JOB
    method = "POST" if where == "submit" else "GET"
    target = rig.elsewhere.url + SUBMIT

    def arm() -> None:
        rig.emulator.faults.add(
            path, method=method, status=status, headers={"Location": target}, times=None
        )

    error, at_abort, final = await rig.abort_then_resume(arm, cause=APIStatusError)
    assert "not followed" in str(error)
    assert error.__cause__.attempts == 1  # type: ignore[union-attr]
    assert rig.elsewhere.connections == 0
    assert b"authorization" not in bytes(rig.elsewhere.received).lower()
    clean(final)
    record(
        f"{status} from the {where} to another loopback host",
        abort_summary(error, at_abort) + "; the other host got 0 connections",
        final,
    )
