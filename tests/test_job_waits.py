"""Job waits end with the job (sdk.md, "The emulator and test helpers"), on a mock clock.

The contract, for ``wait_for_job``, the pipeline's one-job slot and the command line: the first
poll comes within 1 s of the submit (or of the wait's start); polls are then at most 1 s + 10%
of the job's expected duration apart (its rows at the client's ``rows_per_minute``, counted
from the submit when known, else from the wait's start), and at most 30 s apart; once the job
has run past its expected duration, at most 10 s apart. Events imports are not paced by
``rows_per_minute``, so their waits do not depend on it.

The rules are checked as invariants over any job (size, the server's own pace, a queue delay,
the client's rate) through the one waiter, ``wait_until_finished``; then end to end through the
pipeline against the emulator in process, where the first reports of issue 21 came from.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
from click.testing import Result
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from analytex_async import AsyncAnalytex, Event, Job
from analytex_async._bulk._jobs import (
    FIRST_POLL,
    MAX_POLL_INTERVAL,
    MIN_POLL_INTERVAL,
    OVERDUE_POLL_INTERVAL,
    wait_until_finished,
)
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatorTransport

from .conftest import API_KEY, trio_mock_clock
from .test_cli import key, run, served

__all__ = ["key", "run", "served"]  # the CLI fixtures this module shares

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SLACK = 1e-6
"""Float slack on the mock clock's readings."""


def run_on_mock_clock(main: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``main`` under trio with a clock that jumps ahead whenever every task sleeps."""
    return anyio.run(
        functools.partial(main, *args, **kwargs),
        backend="trio",
        backend_options={"clock": MockClock(autojump_threshold=0)},
    )


@attrs.define
class FakeJob:
    """A job the fake server processes from clock reading 0: queued, then at its own pace."""

    rows: int
    server_rate: float  # rows a minute
    queued_for: float
    events: bool = False
    tells_submit: bool = True
    polls: list[float] = attrs.Factory(list)
    base: float = 0.0  # the clock's reading at the submit

    @property
    def finish(self) -> float:
        return self.queued_for + self.rows * 60.0 / self.server_rate

    def state(self, now: float) -> Job:
        done = 0
        status = "queued"
        if now >= self.queued_for:
            status = "processing"
            done = min(self.rows, math.floor((now - self.queued_for) * self.server_rate / 60))
            if now >= self.finish:
                status, done = "completed", self.rows
        raw: dict[str, Any] = {
            "job_id": "j1",
            "status": status,
            "type": "import" if self.events else "bulk_identify_users",
            "total_rows": self.rows,
            "completed_rows": done,
        }
        if self.tells_submit:
            raw["submitted_at"] = EPOCH.isoformat()
        return Job.from_api(raw)

    async def fetch(self, job_id: str) -> Job:
        now = anyio.current_time() - self.base
        self.polls.append(now)
        return self.state(now)


async def wait_as(
    server: FakeJob, client_rate: float, *, from_submit: bool, wait_starts: float
) -> tuple[float, float]:
    """Wait for the job as the pipeline does (``from_submit``) or as ``wait_for_job`` does.

    Returns:
        The wait's origin (the submit, or the wait's start) and the first poll's bound.
    """
    start = server.base = anyio.current_time()  # the submit: the fake job counts from here
    fetch = server.fetch

    def wall_clock() -> float:
        return EPOCH.timestamp() + anyio.current_time() - start

    if from_submit:
        await wait_until_finished(
            fetch,
            server.state(0.0),
            rows_per_minute=client_rate,
            submitted_at=start,
            seen_at=start,
            wall_clock=wall_clock,
        )
        return 0.0, FIRST_POLL
    await anyio.sleep(wait_starts)
    await wait_until_finished(
        fetch, Job("j1", server.state(0.0).status), rows_per_minute=client_rate,
        wall_clock=wall_clock,
    )  # fmt: skip
    origin = 0.0 if server.tells_submit else wait_starts
    return origin, wait_starts + 0.0  # polled at once at the wait's start


jobs = st.builds(
    FakeJob,
    rows=st.integers(1, 20_000),
    server_rate=st.sampled_from([300.0, 1_200.0, 6_000.0, 60_000.0, 600_000.0]),
    queued_for=st.sampled_from([0.0, 0.0, 0.5, 3.0, 40.0]),
    events=st.booleans(),
    tells_submit=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    server=jobs,
    client_rate=st.sampled_from([300.0, 1_200.0, 6_000.0, 60_000.0, 600_000.0]),
    from_submit=st.booleans(),
    wait_starts=st.sampled_from([0.0, 0.3, 5.0, 200.0]),
)
def test_every_wait_keeps_the_contracts_bounds_and_ends_with_the_job(
    server: FakeJob, client_rate: float, from_submit: bool, wait_starts: float
) -> None:
    origin, first_by = run_on_mock_clock(
        wait_as, server, client_rate, from_submit=from_submit, wait_starts=wait_starts
    )
    polls = server.polls
    assert polls[0] <= first_by + SLACK  # within 1 s of the submit, or at the wait's start
    if from_submit:
        origin = 0.0
    expected = None if server.events else server.rows * 60.0 / client_rate
    looks = ([0.0] if from_submit else []) + polls
    for before, after in itertools.pairwise(looks):
        gap = after - before
        assert gap >= MIN_POLL_INTERVAL - SLACK  # never a busy loop
        if expected is None:
            assert gap <= OVERDUE_POLL_INTERVAL + SLACK
            continue
        assert gap <= min(1 + 0.1 * expected, MAX_POLL_INTERVAL) + SLACK
        overdue_from = max(before, origin + expected)
        if after > overdue_from:
            assert after - overdue_from <= OVERDUE_POLL_INTERVAL + SLACK
    # The wait ends with the job: the first poll after it finished is the last.
    assert polls[-1] >= server.finish - SLACK
    assert all(poll < server.finish for poll in polls[:-1])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 10_000),
    rate=st.sampled_from([1_200.0, 60_000.0, 600_000.0]),
)
def test_a_job_at_the_clients_rate_is_seen_done_right_when_it_ends(rows: int, rate: float) -> None:
    # Aimed at the expected completion: no poll lands far after it, whatever the job's size.
    server = FakeJob(rows, rate, 0.0)
    run_on_mock_clock(wait_as, server, rate, from_submit=True, wait_starts=0.0)
    assert server.finish - SLACK <= server.polls[-1] <= server.finish + 60 / rate + 0.011


@settings(max_examples=40, deadline=None)
@given(server=jobs.map(lambda job: attrs.evolve(job, events=True)), from_submit=st.booleans())
def test_an_events_import_is_waited_for_whatever_the_clients_row_rate(
    server: FakeJob, from_submit: bool
) -> None:
    seen = []
    for client_rate in (1_200.0, 600_000.0):
        job = attrs.evolve(server, polls=[])
        run_on_mock_clock(wait_as, job, client_rate, from_submit=from_submit, wait_starts=1.0)
        seen.append(job.polls)
    assert seen[0] == seen[1]


# -- end to end: the pipeline against the emulator --------------------------------------------


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def connect(emulator: Emulator, client_rate: float) -> AsyncAnalytex:
    http = httpx.AsyncClient(transport=EmulatorTransport(emulator))
    return AsyncAnalytex(
        api_key=API_KEY, base_url="http://127.0.0.1", rows_per_minute=client_rate, http_client=http
    )


def event_rows(count: int) -> list[Event]:
    return [Event.track(f"u{n}", "Signed Up", "2026-11-01T10:00:00Z") for n in range(count)]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["users", "events"])
async def test_an_import_ends_about_when_its_job_does_whatever_the_clients_rate(
    kind: str,
) -> None:
    # Issue 21: 991 rows against a server at 600,000 rows/min took 30 s from a client at
    # 1,200 rows/min. The job is done in 0.1 s; its first poll comes within 1 s of the submit.
    for client_rate in (1_200.0, 600_000.0):
        emulator = Emulator(rows_per_minute=600_000)
        async with connect(emulator, client_rate) as client:
            start = anyio.current_time()
            if kind == "users":
                result = await client.import_users([{"user_id": f"u{n}"} for n in range(991)])
            else:
                result = await client.import_events(event_rows(991))
            elapsed = anyio.current_time() - start
        assert result.ok
        assert result.jobs[0].status.value == "completed"
        if kind == "events":
            assert elapsed <= 0.25 + 0.01  # an import is looked at after 0.25 s, then by its age
        else:
            assert elapsed <= FIRST_POLL + 0.01 if client_rate == 1_200 else elapsed <= 0.11


@pytest.mark.anyio
@pytest.mark.parametrize("server_rate", [60_000.0, 30_000.0, 120_000.0])
async def test_each_batch_goes_soon_after_the_previous_job_ends(server_rate: float) -> None:
    client_rate = 60_000.0
    emulator = Emulator(rows_per_minute=server_rate)
    async with connect(emulator, client_rate) as client:
        result = await client.import_users(
            [{"user_id": f"u{n}"} for n in range(3_000)], batch_size=1_000
        )
    assert result.ok
    jobs = list(emulator.jobs.values())
    assert len(jobs) == 3
    expected = 1_000 * 60 / client_rate  # 1 s: polls at most 1.1 s apart, then 10 s
    for earlier, later in itertools.pairwise(jobs):
        assert earlier.end_at is not None
        idle = later.submitted_at - earlier.end_at
        assert idle >= 0
        if server_rate == client_rate:
            assert idle <= 0.02  # the poll aimed at the expected completion found it done
        else:
            assert idle <= 1 + 0.1 * expected


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["users", "events"])
def test_the_cli_import_ends_with_its_job_at_the_clients_default_rate(
    run: Callable[..., Result], tmp_path: Path, kind: str
) -> None:
    # Issue 21, as reported: 991 rows, a served emulator at 600,000 rows/min, the client at the
    # API's 1,200 (no --rows-per-minute): 30 s for a job the server finished in 0.1 s.
    source = tmp_path / f"{kind}.ndjson"
    if kind == "users":
        lines = [json.dumps({"user_id": f"u{n}"}) for n in range(991)]
    else:
        lines = [
            json.dumps({"event_type": "track", "user_id": f"u{n}", "event_name": "e",
                        "inserted_at": "2026-11-01T10:00:00Z"})
            for n in range(991)
        ]  # fmt: skip
    source.write_text("\n".join(lines) + "\n")
    result = run("import", kind, str(source), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows_sent"] == 991
    assert summary["elapsed"] < 1 + 1  # the first poll, 1 s after the submit at the latest
