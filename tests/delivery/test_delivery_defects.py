"""One regression test per defect issue 19 found in background delivery, each at the settings
where it was seen (the default policy where it was), against the in-process emulator on trio's
MockClock (retries, windows and jobs cost no real time).

Each of these failed on the delivery core before its rebuild (the lane-and-semaphore worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from analytex_async import AsyncAnalytex, DeliveryPolicy, QueueFullError
from analytex_async._delivery._outbox import Outbox, OutboxError
from analytex_async._delivery._session import DeliverySession
from analytex_async.emulator import Emulator
from analytex_async.testing import EMULATED_BASE_URL, EmulatorTransport

from ..conftest import API_KEY, BASE_URL, trio_mock_clock

pytestmark = pytest.mark.anyio

BULK = "/v1/users/bulk_identify"


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def opened(emulator: Emulator, **options: Any) -> AsyncAnalytex:
    policy = options.pop("delivery", None)
    return AsyncAnalytex(
        api_key="sk_test",
        base_url=EMULATED_BASE_URL,
        http_client=httpx.AsyncClient(transport=EmulatorTransport(emulator)),
        delivery=policy,
        **options,
    )


def session_of(client: AsyncAnalytex) -> DeliverySession:
    session = client._life._session
    assert session is not None
    return session


def arrivals(emulator: Emulator, path: str) -> list[float]:
    return [r.time for r in emulator.requests if r.path == path]


# -- it deadlocked at the default policy --------------------------------------------------------


async def test_a_signup_burst_after_other_identifies_is_delivered_at_the_default_policy() -> None:
    """20 identifies, then 16 signups (identify + track of one user each): it stuck at 36."""
    emulator = Emulator()
    async with opened(emulator) as client:
        for n in range(20):
            client.background.identify(f"other{n}", metadata={"n": n})
        for n in range(16):
            client.background.identify(f"new{n}", metadata={"plan": "free"})
            client.background.track(f"new{n}", "Signed Up")
        stats = await client.background.flush(timeout=10)
    assert stats.delivered == 52
    assert stats.pending == stats.dropped == 0
    assert len(emulator.events) == 16


async def test_a_close_after_a_burst_past_the_window_drops_nothing_at_the_default_policy() -> None:
    """500 identifies and 167 tracks in an ``async with``: 635 were dropped at exit."""
    emulator = Emulator()
    async with opened(emulator) as client:
        for n in range(500):
            client.background.identify(f"u{n}", metadata={"n": n})
            if n % 3 == 0:
                client.background.track(f"u{n}", "Logged In")
    stats = client.background.stats
    assert stats.dropped == 0
    assert stats.delivered == 667
    assert len(emulator.users) == 500
    assert len(emulator.events) == 167


# -- an older value overwrote a newer one -------------------------------------------------------


async def test_a_newer_identify_waits_for_an_older_one_being_retried() -> None:
    emulator = Emulator()
    emulator.faults.add("/v1/identify", status=503, times=1)
    async with opened(emulator) as client:
        client.background.identify("u1", metadata={"plan": "free"})
        await anyio.sleep(0.1)  # its first attempt drew the 503: it is being retried
        client.background.identify("u1", metadata={"plan": "pro"})
        stats = await client.background.flush(timeout=120)
    assert emulator.users["u1"].metadata == {"plan": "pro"}
    assert stats.delivered == 2
    assert [r.status for r in emulator.requests if r.path == "/v1/identify"] == [503, 202, 202]


async def test_a_newer_identify_waits_for_the_bulk_job_of_an_older_one() -> None:
    emulator = Emulator(rows_per_minute=1)  # the job takes 3 minutes: the window frees before
    async with opened(
        emulator, requests_per_minute=2, delivery=DeliveryPolicy(max_delay=1)
    ) as client:
        for n in range(5):
            client.background.identify(f"u{n}", metadata={"plan": "free"})
        # u2..u4 went out in a bulk job, not processed yet
        while not emulator.jobs:  # noqa: ASYNC110 -- polling the emulator on a mock clock
            await anyio.sleep(0.05)
        client.background.identify("u4", metadata={"plan": "pro"})
        stats = await client.background.flush(timeout=900)
    assert emulator.users["u4"].metadata == {"plan": "pro"}
    assert stats.via_bulk >= 3
    assert stats.delivered == 6


# -- order per user ------------------------------------------------------------------------------


async def test_tracks_of_one_user_arrive_in_the_order_they_were_handed_over() -> None:
    emulator = Emulator()
    emulator.faults.add("/v1/track", delay=0.5, times=1)  # the first one is slow to arrive
    async with opened(emulator) as client:
        client.background.identify("u1")
        for n in range(10):
            client.background.track("u1", f"step {n}")
        await client.background.flush(timeout=60)
    assert [e.event_name for e in emulator.events] == [f"step {n}" for n in range(10)]
    identify, first_track = (
        next(r.time for r in emulator.requests if r.path == p)
        for p in ("/v1/identify", "/v1/track")
    )
    assert identify <= first_track


async def test_the_outbox_keeps_identify_before_track_across_a_spill_and_a_replay(
    tmp_path: Path,
) -> None:
    emulator = Emulator()
    down = emulator.faults.add("/v1/identify", status=503, times=None)
    policy = DeliveryPolicy(outbox=tmp_path, drain_timeout=1)
    async with opened(emulator, delivery=policy, max_concurrency=1) as client:
        client.background.identify("u1", metadata={"plan": "pro"})
        client.background.track("u1", "Signed Up")
        await anyio.sleep(0.5)  # the identify is retrying, the track waits behind it
    assert client.background.stats.spilled == 2
    emulator.faults.remove(down)
    emulator.requests.clear()
    async with opened(emulator, delivery=policy) as client:
        await client.background.flush(timeout=60)
    paths = [r.path for r in emulator.requests if r.status == 202]
    assert paths == ["/v1/identify", "/v1/track"]


# -- a failed spill lost what it had claimed ----------------------------------------------------


async def test_a_spill_that_fails_removes_nothing_claimed_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = Emulator()
    down = emulator.faults.add("/v1/track", status=503, times=None)
    policy = DeliveryPolicy(outbox=tmp_path, drain_timeout=1)
    async with opened(emulator, delivery=policy) as client:
        client.background.track("u1", "Signed Up")
    [spilled] = list(tmp_path.glob("outbox-*.ndjson"))  # noqa: ASYNC240 -- a test's look

    async def disk_full(self: Outbox, records: object) -> int:
        raise OutboxError(f"the outbox could not write to {str(tmp_path)!r}: No space left")

    monkeypatch.setattr(Outbox, "spill", disk_full)
    with caplog.at_level(logging.ERROR, logger="analytex_async"):
        async with opened(emulator, delivery=policy) as client:
            client.background.track("u2", "Signed Up")
    stats = client.background.stats
    assert stats.replayed == 1
    assert stats.dropped == 2  # the replayed one (still in its file) and the new one
    assert spilled.exists()  # claimed, not delivered, not spilled again: it stays
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR and "spill" in r.message]
    assert "No space left" in error.message
    assert "(no outbox)" not in error.message
    monkeypatch.undo()
    emulator.faults.remove(down)
    async with opened(emulator, delivery=policy) as client:
        stats = await client.background.flush(timeout=60)
    assert stats.replayed == 1
    assert [e.user_id for e in emulator.events] == ["u1"]
    assert not list(tmp_path.glob("outbox-*.ndjson"))  # noqa: ASYNC240 -- a test's look


# -- memory was unbounded ------------------------------------------------------------------------


async def test_queue_size_bounds_records_inside_bulk_jobs_too() -> None:
    emulator = Emulator()
    policy = DeliveryPolicy(queue_size=50, on_full="raise", max_delay=1)
    async with opened(emulator, requests_per_minute=2, delivery=policy) as client:
        for n in range(50):
            client.background.identify(f"u{n}", metadata={"n": n})
        while not emulator.jobs:  # noqa: ASYNC110 -- polling the emulator's state on a mock clock
            await anyio.sleep(0.01)
        # 48 records are inside a bulk job the server has not finished: they still count.
        assert client.background.stats.pending == 48
        client.background.identify("u50")
        client.background.identify("u51")
        with pytest.raises(QueueFullError):
            client.background.identify("late", metadata={"n": -1})
        stats = await client.background.flush(timeout=600)
        client.background.identify("later", metadata={"n": -2})  # room again
        stats = await client.background.flush(timeout=600)
    assert stats.delivered == 53
    assert stats.via_bulk >= 48


async def test_a_settled_record_leaves_no_bookkeeping_without_a_flush() -> None:
    emulator = Emulator()
    async with opened(emulator) as client:
        for n in range(300):
            client.background.identify(f"u{n % 40}", metadata={"n": n})
            client.background.track(f"u{n % 40}", "Viewed")
        while client.background.stats.pending:  # noqa: ASYNC110 -- polling the emulator's state on a mock clock
            await anyio.sleep(1)
        ledger = session_of(client).ledger
        assert ledger._unsettled == {}
        assert ledger._chains == {}
        assert ledger._unsent_identify == {}
        assert not ledger.identifies
        assert not ledger.tracks


# -- a 429 drew a wave of 429s -------------------------------------------------------------------


async def test_a_429_pauses_the_whole_window_then_one_probe_goes_first() -> None:
    emulator = Emulator()
    emulator.faults.add("/v1/track", status=429, headers={"Retry-After": "2"}, times=1)
    async with opened(emulator) as client:
        for n in range(40):
            client.background.track(f"u{n}", "Viewed")
            await anyio.sleep(0.1)
        await client.background.flush(timeout=60)
    tracks = [r for r in emulator.requests if r.path == "/v1/track"]
    assert [r.status for r in tracks].count(429) == 1
    assert sum(1 for r in tracks if r.status == 202) == 40
    paused_at = next(r.time for r in tracks if r.status == 429)
    after = [r.time - paused_at for r in tracks if r.time > paused_at]
    assert min(after) >= 2.0  # nothing during the Retry-After


async def test_awaited_calls_wait_out_a_429_of_their_window_too() -> None:
    emulator = Emulator()
    emulator.faults.add("/v1/identify", status=429, headers={"Retry-After": "3"}, times=1)
    async with opened(emulator) as client, anyio.create_task_group() as tasks:
        for n in range(10):
            tasks.start_soon(lambda n=n: client.identify(f"u{n}"))
            await anyio.sleep(0.25)
    identifies = [r for r in emulator.requests if r.path == "/v1/identify"]
    assert [r.status for r in identifies].count(429) == 1
    paused_at = next(r.time for r in identifies if r.status == 429)
    assert all(r.time == paused_at or r.time >= paused_at + 3 for r in identifies)


async def test_a_restart_within_the_minute_draws_no_429(tmp_path: Path) -> None:
    """The closing client leaves its send times in the outbox; the next one counts them."""
    emulator = Emulator()
    policy = DeliveryPolicy(outbox=tmp_path)
    async with opened(emulator, delivery=policy) as client:
        for n in range(600):
            client.background.track(f"u{n}", "Viewed")
        await client.background.flush(timeout=60)
    async with opened(emulator, delivery=policy) as client:
        for n in range(30):
            client.background.track(f"v{n}", "Viewed")
        stats = await client.background.flush(timeout=120)
    assert stats.delivered == 30
    assert 429 not in [r.status for r in emulator.requests]


# -- bulk overflow ------------------------------------------------------------------------------


async def test_a_lost_bulk_answer_is_adopted_not_sent_again() -> None:
    emulator = Emulator()
    emulator.faults.add(BULK, drop_connection=True, after_handling=True, times=1)
    async with opened(
        emulator, requests_per_minute=2, delivery=DeliveryPolicy(max_delay=1)
    ) as client:
        for n in range(30):
            client.background.identify(f"u{n}", metadata={"n": n})
        stats = await client.background.flush(timeout=900)
    assert len(emulator.jobs) == 1
    assert stats.via_bulk == 28
    assert stats.delivered == 30
    assert sum(job.total_rows or 0 for job in emulator.jobs.values()) == 28


async def test_two_identifies_that_would_merge_past_50_mb_stay_two_records() -> None:
    emulator = Emulator()
    big = "x" * 26_000_000
    down = emulator.faults.add("/v1/identify", status=503, times=None)
    async with opened(emulator, delivery=DeliveryPolicy(drain_timeout=0.1)) as client:
        client.background.identify("u0")  # holds the window's attention: retried
        client.background.identify("u1", metadata={"a": big})
        client.background.identify("u1", metadata={"b": big})
        stats = client.background.stats
        assert stats.coalesced == 0
        assert stats.pending == 3
        emulator.faults.remove(down)
        stats = await client.background.flush(timeout=120)
    assert stats.delivered == 3
    assert emulator.users["u1"].metadata.keys() == {"a", "b"}


async def test_choosing_the_bulk_route_does_not_rescan_what_waits() -> None:
    """10,000 waiting identifies: each new one is routed in O(1) (it took 61 ms a pass)."""
    emulator = Emulator()
    async with opened(emulator, requests_per_minute=2) as client:
        ledger = session_of(client).ledger
        looked = 0
        overflow = session_of(client).overflow
        assert overflow is not None
        route = overflow.route

        def counting(record: Any, followed: bool) -> Any:
            nonlocal looked
            looked += 1
            return route(record, followed)

        overflow.route = counting  # type: ignore[method-assign]
        for n in range(10_000):
            client.background.identify(f"u{n}")
        assert looked == 10_000  # once per record, as it became ready
        assert len(ledger.identifies) + sum(map(len, overflow.lanes.values())) == 10_000


# -- loops ---------------------------------------------------------------------------------------


def test_a_loop_that_ended_with_a_call_in_flight_does_not_block_the_next() -> None:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        hang = asyncio.Event()

        async def never(request: httpx.Request) -> httpx.Response:
            await hang.wait()
            return httpx.Response(200)

        router.post("/v1/identify").mock(side_effect=never)
        client = AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL)
        first = asyncio.new_event_loop()

        left: list[asyncio.Task[None]] = []

        async def start() -> None:
            left.append(asyncio.ensure_future(client.identify("u1")))
            await asyncio.sleep(0.05)

        first.run_until_complete(start())
        first.close()  # ended, the call still in flight
        router.post("/v1/track").mock(return_value=httpx.Response(200))
        asyncio.run(client.track("u1", "Came Back"))
        with contextlib.suppress(BaseException):  # the abandoned call, closed for the GC's sake
            left[0].get_coro().close()  # type: ignore[union-attr]


async def test_an_outage_costs_a_probe_now_and_then_not_the_whole_window() -> None:
    """A run of 503s pauses the lane (1 s, 2 s, 4 s ... up to a minute), then one probe."""
    emulator = Emulator()
    down = emulator.faults.add("/v1/identify", status=503, times=None)
    async with opened(emulator) as client:
        for n in range(200):
            client.background.identify(f"u{n}", metadata={"n": n})
        await anyio.sleep(120)
        during = len(arrivals(emulator, "/v1/identify"))
        emulator.faults.remove(down)
        stats = await client.background.flush(timeout=300)
    assert during <= 16 + 8  # the first sends in flight, then a probe after each pause
    assert stats.delivered == 200
    assert len(emulator.users) == 200
