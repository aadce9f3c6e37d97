"""The background benchmark's outage run, client side: hand over, ride out the 503s, flush.

Run in a fresh interpreter (``bench_background.py --child outage``) against an emulator that
answers 503 from the first request on for the outage's length (``_emulated.py --outage``). The
visits are handed over evenly over ``handover`` seconds, a few per 10 ms tick, as requests
reach a web app; then ``flush()`` waits until everything is delivered. Meanwhile a 1 ms
heartbeat measures the event loop's stalls and a sampler reads the process's resident set
size every ``RSS_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from _handlers import Timings
from _logins import EVENT, Visit
from _workload import API_KEY, heartbeat

from analytex_async import AsyncAnalytex

RSS_INTERVAL = 0.25
TASKS_EVERY = 4
TICK = 0.01
"""Seconds between two groups of hand-overs."""
STALL_TARGET = 0.005
"""Seconds of stall beyond which the worst one is attributed (the target)."""
SLOW_NS = 50_000
"""A hand-over slower than this is attributed (the login run's p99 target)."""


def rss_mib() -> float:
    """This process's resident set size now (Linux ``VmRSS``), in MiB; 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def sample_rss(samples: list[tuple[float, float, int, int]]) -> None:
    """Append ``(monotonic time, RSS MiB, tasks, blocks)`` every ``RSS_INTERVAL`` s until cancelled.

    ``blocks`` is the interpreter's allocated memory blocks (``sys.getallocatedblocks``): the
    live Python objects, which tell memory held from an allocator's high-water mark. The tasks
    alive are counted every ``TASKS_EVERY``-th sample only (-1 otherwise): counting them walks
    them all.
    """
    for number in itertools.count():
        tasks = len(asyncio.all_tasks()) if number % TASKS_EVERY == 0 else -1
        samples.append((time.monotonic(), rss_mib(), tasks, sys.getallocatedblocks()))
        await anyio.sleep(RSS_INTERVAL)


async def hand_over(
    background: Any, handed: tuple[int, Iterator[Visit]], handover: float, timings: Timings
) -> None:
    """Hand ``handed`` (how many, and the visits) over evenly over ``handover`` seconds.

    A few per tick, each timed; the visits are made as they are handed over, so the benchmark
    holds none of them (its own objects would lengthen the process's garbage collections).
    """
    started = anyio.current_time()
    count, stream = handed
    per_tick = max(1, round(count * TICK / handover))
    for first in range(0, count, per_tick):
        for visit in itertools.islice(stream, per_tick):
            cpu = time.thread_time_ns()
            begin = time.perf_counter_ns()
            background.identify(visit.user, metadata=visit.profile)
            if visit.event is not None:
                background.track(visit.user, EVENT, metadata=visit.event)
            end = time.perf_counter_ns()
            timings.calls.append((begin, end, time.thread_time_ns() - cpu))
        await anyio.sleep_until(started + (first + per_tick) * handover / count)


async def side_outage(
    url: str,
    rate: int,
    rows: int,
    handed: tuple[int, Iterator[Visit]],
    handover: float,
    patience: float,
) -> dict[str, Any]:
    """Hand ``handed`` over during the outage, flush, and return the figures (JSON-able).

    ``patience`` is the flush's timeout in seconds: a flush that gives up is a figure too.
    """
    samples: list[tuple[float, float, int, int]] = []
    timings = Timings()
    flushed: Any = None
    error = ""
    async with (
        AsyncAnalytex(
            API_KEY, base_url=url, requests_per_minute=rate, rows_per_minute=rows
        ) as client,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(sample_rss, samples)
        background = client.background
        async with heartbeat(limit=3600.0, keep=False) as beat:
            await anyio.sleep(2 * RSS_INTERVAL)  # the starting size, sampled twice
            started = time.monotonic()
            with timings.watching_gc():
                await hand_over(background, handed, handover, timings)
                handed_over = time.monotonic()
                try:
                    flushed = await background.flush(timeout=patience)
                except TimeoutError as exc:
                    error = str(exc)
                done = time.monotonic()
        await anyio.sleep(2 * RSS_INTERVAL)  # the size once delivered, sampled twice
        tasks.cancel_scope.cancel()
    stats = flushed if flushed is not None else background.stats
    names = ("queued", "pending", "delivered", "coalesced", "via_bulk", "dropped", "failed")
    figures = timings.summary(SLOW_NS)
    figures.update(
        started=started,
        handed_over=handed_over,
        done=done,
        flush_error=error,
        stats={name: int(getattr(stats, name)) for name in (*names, "spilled", "replayed")},
        rss=samples,
        stall=beat.worst,
        own_stall=beat.own_worst,
        stall_cause=timings.stall_cause(beat.worst_span, beat.own_worst, STALL_TARGET),
        stall_p99=beat.p99,
        beats=beat.beats,
    )
    return figures
