"""Request handlers under a burst of logins, and the same delivery through a 2-minute outage.

**The login run.** 800 logins, each an identify then a ``"Logged In"`` track of its user, 20% of
them repeat logins of an earlier user with new values (``_logins.py``: 640 users; a repeat sets
every profile key anew and its track carries the visit number). The 640 first logins' handlers
are started, then released at once; the 160 repeats are released together ``--repeat-after``
seconds later (1.0), when some of their users' first logins are delivered, some in flight and
some not sent yet (the rest of the window is full), so a repeat meets its user's first login in
every state: not sent yet (the new value merges into it), in flight (it waits behind it),
delivered. Against the emulator (``_emulated.py``, served by uvicorn in its own process) holding
``--rate`` requests a minute per endpoint (600, the real API's budget; a 429 beyond it). Each
side runs in a fresh interpreter on asyncio, against a fresh emulator:

* **background**: ``client.background.identify(...)`` and ``client.background.track(...)``
  inside ``async with AsyncAnalytex(...)`` at the default ``DeliveryPolicy``, then
  ``await client.background.flush()``;
* **awaited**: ``await client.identify(...)`` and ``await client.track(...)`` in each handler,
  bounded by a 5 s timeout as a web request would be; what a timeout cut off is lost;
* **PostHog** ``AsyncClient``: ``set(...)`` (a ``$set`` profile update) and ``capture(...)``,
  its enqueue time as the peer's figure, against the loopback sink of ``_sink.py`` (which
  accepts anything: no rate limit there), then ``await shutdown()``.

Figures: the time each handler spent inside the SDK (``time.perf_counter_ns`` around the two
calls only: p50, p99, max), what the server stored (its store, written by the emulator when it
stops: each user's metadata must equal the identify handed over last, and each user's events
must be its visits, each once, in order), the 429s the server answered (its request log), and
the wall time from the release until everything is flushed (background: ``flush()`` returned;
awaited: every handler returned or timed out; PostHog: ``shutdown()`` returned). A slow call
is attributed: a garbage collection during it (``gc.callbacks``), the process being off the CPU
(thread CPU time well below the wall time of the call: the machine is shared), or the SDK's own
work. The background side also runs a 1 ms heartbeat: its worst lateness outside the two
releases themselves (640, then 160 handlers run back to back in one turn of the loop by design)
is a stall figure.

**The flush bound.** The emulator, like the API, admits at most ``L`` identify requests (and,
separately, ``L`` tracks) in any 60 seconds, counted when they arrive. Tracks never merge, so
``N`` logins are ``N`` track requests whatever the identifies do (a repeat's identify may merge
into its user's unsent one: fewer identify requests, never more than ``N``). The ``k``-th track
(from 0) can arrive no earlier than ``floor(k / L) * 60`` s after the first, and the first track
cannot arrive before its user's identify was answered: per-user order puts every track behind
its user's identify (and a repeat's identify behind the user's earlier track). So the last
track cannot be answered before ``floor((N - 1) / L) * 60`` s plus one identify-then-track round
trip after the release (the round trip measured on the same emulator under another key, before
the run). The identifies give the same or less: at most ``N`` of them, each followed by a track.
The repeats' release (1 s in) is well inside the first window, so it adds nothing: a repeat
that is not merged needs an identify slot, and the first window's are taken by first logins. For
N = 800 and L = 600 the bound is 60 s plus a few milliseconds (the average-rate reading, 800 /
600 a minute = 80 s, would be a looser bound, not the one judged). The bulk budget cannot
shorten it: every identify here has its user's track behind it, and such an identify stays
real-time (the track must follow its answer). The target is a wall within 5% of the bound. When
N <= L the window never binds; the wall is then reported, not judged.

**The outage run** (``_outage.py``). 10,000 records (``--outage-records``) of many users: 6,000
in 3,000 logins (an identify and a track each, 20% repeats, of 2,400 users) and 4,000 profile
updates (identifies alone, 20% repeats, of 3,200 other users; bulk overflow may take them),
interleaved and handed over evenly during the outage's first sixth (20 s of 120), a few every
10 ms, against an emulator that answers 503 to every API request from the first one on for
``--outage-seconds`` (120), then recovers. The queue is the default (10,000): the records never
exceed it. Judged:

* nothing lost: ``flush()`` returns, ``delivered == queued - coalesced``, nothing dropped,
  failed, spilled or pending, and the store holds every user's newest values and every event
  once, in order;
* 0 429s after the recovery (the emulator's request log);
* a flat resident set. The child samples its RSS (and the interpreter's allocated blocks, the
  live objects, and the tasks alive) every 0.25 s; start, handed over, recovery, peak and end
  are shown, and the RSS every 20 s. Once everything is handed over, the RSS must not grow by
  more than ``RSS_PLATEAU_MIB`` (2 MiB) while the outage lasts (a growth with the blocks flat
  is named: the allocator's high-water mark, not memory held), and its peak must stay within
  ``RSS_PER_RECORD_KIB`` (3 KiB) per record of the start: about twice what a queued record
  costs here (some 1.5 KiB: its request body, its place in its chain and lane);
* the worst heartbeat stall of all runs <= 5 ms (a stall is attributed: a garbage collection
  during it, the process off the CPU, or its own work).

The heartbeat of this run keeps no beat (``SummaryHeartbeat``: a list of every beat would grow
by some 100 kB a second and be measured as the SDK's), and the visits are made as they are
handed over, so the benchmark's own objects neither grow the RSS nor lengthen collections.

This run is not at the API's 600 a minute: at that rate 10,000 records need at least 4 minutes
after the recovery, with every identify overflowing to bulk, more than this benchmark's time
allows. It runs at ``--outage-rate`` (3,000 requests a minute per endpoint, bulk at twice that,
the API's ratio), which still binds the windows during the outage and after the recovery; what
it judges does not depend on the rate.

Targets (background): SDK time p99 <= 50 us and max <= 2 ms; every profile stored with its
newest values and every event stored once, in order; 0 429s; flush wall <= 1.05x the bound. The
outage targets above. Stalls: the worst of all runs, not the median.

Usage: ``python benchmarks/bench_background.py [--rate N] [--logins N] [--outage-seconds S]``.
At the defaults a run takes about 5 to 6 minutes. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from _emulated import EmulatorProcess
from _handlers import Timings
from _logins import EVENT, Visit, check, interleave, visits
from _outage import side_outage
from _sink import Sink
from _table import Table, verdict
from _workload import API_KEY, describe_machine, heartbeat, run_child

from analytex_async import AsyncAnalytex

LOGINS = 800
REPEAT_SHARE = 0.2
REPEAT_AFTER = 1.0
"""Seconds after the release at which the repeat logins are released."""
HANDLER_TIMEOUT = 5.0
"""Seconds an awaited handler may take, as a web request's timeout would allow."""
TARGET_P99_US = 50.0
TARGET_MAX_US = 2000.0
TARGET_WALL_RATIO = 1.05
TARGET_STALL_MS = 5.0
WINDOW = 60.0
"""Seconds of the API's real-time window."""
ROWS_PER_REQUEST = 2
"""The bulk budget in rows a minute per real-time request a minute (the API: 1,200 and 600)."""
PROBE_KEY = "bench-probe-key"
"""Another account on the same emulator: the round-trip probe uses none of the run's budget."""
FLUSH_TIMEOUT = 600.0

OUTAGE_RECORDS = 10_000
OUTAGE_SECONDS = 120.0
OUTAGE_RATE = 3_000
LOGIN_SHARE = 0.3
"""The outage run's logins per record (two records each); the rest are profile updates."""
HANDOVER_SHARE = 1 / 6
"""The share of the outage during which the records are handed over."""
RSS_PLATEAU_MIB = 2.0
"""How much the resident set may grow while the outage lasts once everything is handed over."""
BLOCKS_FLAT = 0.05
"""Live objects (interpreter blocks) growing by at most this share are called flat."""
RSS_PER_RECORD_KIB = 3.0
"""How much the RSS may grow over its start at its peak, per record handed over."""


def login_visits(count: int) -> list[Visit]:
    """The login run's visits: first logins, then repeats."""
    return list(visits(count, REPEAT_SHARE, "login"))


def outage_visits(records: int) -> tuple[int, Iterator[Visit]]:
    """The outage run's visits, made lazily (the benchmark holds none), and how many there are.

    Logins and profile updates, interleaved, ``records`` records in all.
    """
    logins = round(records * LOGIN_SHARE)
    updates = records - 2 * logins
    return logins + updates, interleave(
        (logins, visits(logins, REPEAT_SHARE, "shopper")),
        (updates, visits(updates, REPEAT_SHARE, "member", logins=False)),
    )


def pair_round_trip(url: str, tries: int = 5) -> float:
    """The median seconds of one identify then one track, under the probe's own key."""
    headers = {"Authorization": f"Token {PROBE_KEY}"}
    times = []
    with httpx.Client(base_url=url, headers=headers) as http:
        for n in range(tries):
            started = time.perf_counter()
            http.post("/v1/identify", json={"user_id": f"probe-{n}"}).raise_for_status()
            body = {"user_id": f"probe-{n}", "event_name": "Probed"}
            http.post("/v1/track", json=body).raise_for_status()
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


# -- the sides, each in a fresh interpreter ---------------------------------------------------


Handler = Callable[[Visit], Awaitable[None]]


async def burst(handed: Sequence[Visit], after: float, handle: Handler) -> list[float]:
    """Start a handler per visit; release the first visits at once, the repeats ``after`` later.

    Returns:
        The perf_counter readings of each release and of its last handler's return: the two
        spans during which the handlers ran back to back.
    """
    firsts = len({visit.user for visit in handed})
    go = anyio.Event()
    marks = [0.0] * 4

    async def handler(index: int, visit: Visit) -> None:
        await go.wait()
        if index >= firsts:
            await anyio.sleep_until(marks[0] + after)
            if index == firsts:
                marks[2] = time.perf_counter()
        await handle(visit)
        if index in (firsts - 1, len(handed) - 1):
            marks[1 if index < firsts else 3] = time.perf_counter()

    async with anyio.create_task_group() as tasks:
        for index, visit in enumerate(handed):
            tasks.start_soon(handler, index, visit)
        await anyio.sleep(0.1)  # every handler is waiting on `go`
        marks[0] = time.perf_counter()
        go.set()
    return marks


def _stats_dict(stats: object) -> dict[str, int]:
    names = ("queued", "pending", "delivered", "coalesced", "via_bulk", "dropped", "failed")
    return {name: int(getattr(stats, name)) for name in (*names, "spilled", "replayed")}


async def side_background(url: str, rate: int, handed: list[Visit], after: float) -> dict[str, Any]:
    timings = Timings()
    async with (
        AsyncAnalytex(API_KEY, base_url=url, requests_per_minute=rate) as client,
        heartbeat(limit=3600.0) as beat,
    ):
        background = client.background

        async def handle(visit: Visit) -> None:
            cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            background.identify(visit.user, metadata=visit.profile)
            background.track(visit.user, EVENT, metadata=visit.event)
            end = time.perf_counter_ns()
            timings.calls.append((start, end, time.thread_time_ns() - cpu))

        with timings.watching_gc():
            spans = await burst(handed, after, handle)
            stats = await background.flush(timeout=FLUSH_TIMEOUT)
        wall = time.perf_counter() - spans[0]
    outside = beat.without(spans[0], spans[1]).without(spans[2], spans[3])
    figures = timings.summary(int(TARGET_P99_US * 1000))
    figures.update(
        wall=wall,
        stats=_stats_dict(stats),
        stall=outside.worst,
        own_stall=outside.own_worst,
        stall_cause=timings.stall_cause(
            outside.worst_span, outside.own_worst, TARGET_STALL_MS / 1000
        ),
        release_stall=beat.worst,
    )
    return figures


async def side_awaited(url: str, rate: int, handed: list[Visit], after: float) -> dict[str, Any]:
    timings = Timings()
    cut_off = {"identify": 0, "track": 0}
    async with AsyncAnalytex(API_KEY, base_url=url, requests_per_minute=rate) as client:

        async def handle(visit: Visit) -> None:
            step = "identify"
            cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            with anyio.move_on_after(HANDLER_TIMEOUT) as scope:
                await client.identify(visit.user, metadata=visit.profile)
                step = "track"
                await client.track(visit.user, EVENT, metadata=visit.event)
            end = time.perf_counter_ns()
            timings.calls.append((start, end, time.thread_time_ns() - cpu))
            if scope.cancelled_caught:
                cut_off[step] += 1

        with timings.watching_gc():
            spans = await burst(handed, after, handle)
        wall = time.perf_counter() - spans[0]
    figures = timings.summary(int(TARGET_P99_US * 1000))
    figures.update(wall=wall, cut_off=cut_off)
    return figures


async def side_posthog(url: str, handed: list[Visit], after: float) -> dict[str, Any]:
    from posthog import AsyncClient  # noqa: PLC0415  # a peer: imported in its own child only

    timings = Timings()
    posthog = AsyncClient("phc_bench", host=url)

    async def handle(visit: Visit) -> None:
        cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        posthog.set(distinct_id=visit.user, properties=visit.profile)
        posthog.capture(EVENT, distinct_id=visit.user, properties=visit.event)
        end = time.perf_counter_ns()
        timings.calls.append((start, end, time.thread_time_ns() - cpu))

    with timings.watching_gc():
        spans = await burst(handed, after, handle)
    await posthog.shutdown()
    wall = time.perf_counter() - spans[0]
    figures = timings.summary(int(TARGET_P99_US * 1000))
    figures["wall"] = wall
    return figures


def child(args: argparse.Namespace) -> dict[str, Any]:
    if args.child == "outage":
        stream = outage_visits(args.outage_records)
        handover = args.outage_seconds * HANDOVER_SHARE
        timeout = args.outage_seconds + FLUSH_TIMEOUT
        rows = args.outage_rate * ROWS_PER_REQUEST
        return asyncio.run(side_outage(args.url, args.outage_rate, rows, stream, handover, timeout))
    handed, after = login_visits(args.logins), args.repeat_after
    if args.child == "background":
        return asyncio.run(side_background(args.url, args.rate, handed, after))
    if args.child == "awaited":
        return asyncio.run(side_awaited(args.url, args.rate, handed, after))
    return asyncio.run(side_posthog(args.url, handed, after))


# -- the parent: run each side, gather, judge -------------------------------------------------


def percentile(values: Sequence[int], share: float) -> int:
    """The nearest-rank percentile (the same rule as the heartbeat's p99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def child_args(args: argparse.Namespace, side: str, url: str) -> list[str]:
    return [
        *("--child", side, "--url", url, "--rate", str(args.rate)),
        *("--logins", str(args.logins), "--repeat-after", str(args.repeat_after)),
        *("--outage-records", str(args.outage_records)),
        *("--outage-seconds", str(args.outage_seconds), "--outage-rate", str(args.outage_rate)),
    ]


def run_login_side(side: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    rows = args.rate * ROWS_PER_REQUEST
    with EmulatorProcess(directory, side, API_KEY, args.rate, rows) as emulator:
        round_trip = pair_round_trip(emulator.url)
        figures = run_child(__file__, child_args(args, side, emulator.url), timeout=900)
    served = emulator.report()
    figures.update(
        check(login_visits(args.logins), served["users"], served["events"]),
        round_trip=round_trip,
        too_many=served["too_many"],
    )
    return figures


def run_posthog(args: argparse.Namespace) -> dict[str, Any]:
    with Sink() as sink:
        figures = run_child(__file__, child_args(args, "posthog", sink.url), timeout=900)
        figures["records"] = int(sink.stats()["records"])
    return figures


def run_outage(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    rate = args.outage_rate
    with EmulatorProcess(
        directory, "outage", API_KEY, rate, rate * ROWS_PER_REQUEST, args.outage_seconds
    ) as emulator:
        timeout = args.outage_seconds + FLUSH_TIMEOUT + 300
        figures = run_child(__file__, child_args(args, "outage", emulator.url), timeout=timeout)
    served = emulator.report()
    handed = list(outage_visits(args.outage_records)[1])
    figures.update(check(handed, served["users"], served["events"]))
    figures.update(
        too_many=served["too_many"],
        too_many_after=served["too_many_after"],
        outage=served["outage"],
        last_answer=served["last_answer"],
        requests=served["requests"],
        jobs=served["jobs"],
    )
    return figures


def _causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{count} {cause}" for cause, count in causes.items()) or "none"


def us(ns: int) -> str:
    return f"{ns / 1000:,.1f}"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def rss_phases(figures: dict[str, Any]) -> dict[str, tuple[float, int, int]]:
    """The outage run's moments: resident set (MiB), tasks alive (-1: not counted), blocks.

    Each moment shows the last sample taken at or before it (the tasks: the last count).
    """
    samples: list[tuple[float, float, int, int]] = [tuple(sample) for sample in figures["rss"]]
    recovered = (figures["outage"] or [None, None])[1] or figures["done"]

    def at(moment: float) -> tuple[float, int, int]:
        before = [sample for sample in samples if sample[0] <= moment] or samples[:1]
        counted = [sample[2] for sample in before if sample[2] >= 0]
        return before[-1][1], counted[-1] if counted else -1, before[-1][3]

    plateau = [(mib, t) for t, mib, _, _ in samples if figures["handed_over"] <= t <= recovered]
    peak = max(samples, key=lambda sample: sample[1])
    return {
        "start": at(figures["started"]),
        "handed over": at(figures["handed_over"]),
        "recovery": at(recovered),
        "plateau peak": at(max(plateau)[1]) if plateau else at(figures["handed_over"]),
        "peak": at(peak[0]),
        "end": at(samples[-1][0]),
    }


def rss_timeline(figures: dict[str, Any], every: float = 20.0) -> str:
    """The resident set (MiB) and the interpreter's blocks every ``every`` s of the outage run."""
    start = figures["started"]
    points, due = [], 0.0
    for moment, mib, _, blocks in figures["rss"]:
        if moment >= start + due:
            points.append(f"{moment - start:+.0f} s {mib:.1f} ({blocks / 1000:,.0f}k)")
            due += every
    return ", ".join(points)


def login_tables(
    args: argparse.Namespace, ours: dict[str, Any], awaited: dict[str, Any], peer: dict[str, Any]
) -> Table:
    n = args.logins
    table = Table(
        ["side", "SDK p50 us", "p99 us", "max us", "newest profiles", "events in order", "429s",
         "wall s"]
    )  # fmt: skip
    users, event_users = ours["users"], ours["event_users"]
    for label, figures in (
        ("client.background + flush()", ours),
        (f"awaited, {HANDLER_TIMEOUT:g} s handler timeout", awaited),
    ):
        durations = figures["durations_ns"]
        table.add(
            label,
            us(percentile(durations, 0.5)),
            us(percentile(durations, 0.99)),
            us(max(durations)),
            f"{figures['newest']:,}/{users:,}",
            f"{figures['in_order']:,}/{event_users:,}",
            f"{figures['too_many']:,}",
            f"{figures['wall']:.2f}",
        )
    durations = peer["durations_ns"]
    table.add(
        "PostHog AsyncClient set + capture (sink)",
        us(percentile(durations, 0.5)),
        us(percentile(durations, 0.99)),
        us(max(durations)),
        "",
        f"{peer['records']:,}/{2 * n:,} rec.",
        "n/a",
        f"{peer['wall']:.2f}",
    )
    mine = ours["durations_ns"]
    table.add(
        "background / PostHog",
        ratio(percentile(mine, 0.5), percentile(durations, 0.5)),
        ratio(percentile(mine, 0.99), percentile(durations, 0.99)),
        ratio(max(mine), max(durations)),
        "",
        "",
        "",
        ratio(ours["wall"], peer["wall"]),
    )
    return table


def store_targets(targets: Table, figures: dict[str, Any]) -> None:
    """The store's rows: each user's newest values, each user's events once and in order."""
    users = figures["users"]
    targets.add(
        "profiles stored with the newest values",
        f"{figures['newest']:,} ({figures['stale']:,} stale, {figures['missing_users']:,} missing)",
        f"{users:,}",
        met=figures["newest"] == users,
    )
    targets.add(
        "events stored once, in order per user",
        f"{figures['stored']:,}/{figures['events']:,}, "
        f"{figures['in_order']:,}/{figures['event_users']:,} users in order",
        f"{figures['events']:,}, all",
        met=figures["stored"] == figures["events"]
        and figures["in_order"] == figures["event_users"],
    )


def login_targets(args: argparse.Namespace, ours: dict[str, Any]) -> Table:
    n, rate = args.logins, args.rate
    targets = Table(["target (login run, client.background)", "figure", "target"])
    p99, worst = percentile(ours["durations_ns"], 0.99), max(ours["durations_ns"])
    slow = int(TARGET_P99_US * 1000)
    targets.add(
        "SDK time per handler, p99",
        f"{us(p99)} us",
        f"<= {TARGET_P99_US:g} us",
        met=p99 <= slow,
    )
    targets.add(
        "SDK time per handler, max",
        f"{us(worst)} us",
        f"<= {TARGET_MAX_US:g} us",
        met=worst <= TARGET_MAX_US * 1000,
    )
    store_targets(targets, ours)
    targets.add("429s drawn", f"{ours['too_many']:,}", "0", met=ours["too_many"] == 0)
    binding = n > rate
    bound = (n - 1) // rate * WINDOW + ours["round_trip"]
    wall_ratio = ours["wall"] / bound
    targets.add(
        "flush wall / the windows' bound",
        f"{ours['wall']:.2f} / {bound:.2f} s = {wall_ratio:.3f}x",
        f"<= {TARGET_WALL_RATIO:.2f}x" if binding else "window not binding",
        met=wall_ratio <= TARGET_WALL_RATIO if binding else None,
    )
    return targets


def outage_targets(outage: dict[str, Any], stall: tuple[str, float, float]) -> Table:
    stats = outage["stats"]
    targets = Table(["target (outage run, client.background)", "figure", "target"])
    balance = stats["queued"] - stats["coalesced"]
    others = stats["dropped"] + stats["failed"] + stats["spilled"] + stats["pending"]
    targets.add(
        "records delivered (stats)",
        f"{stats['delivered']:,} of {stats['queued']:,} queued - {stats['coalesced']:,} "
        f"coalesced; {others:,} dropped/failed/spilled/pending",
        f"{balance:,}, 0",
        met=not outage["flush_error"] and stats["delivered"] == balance and others == 0,
    )
    store_targets(targets, outage)
    targets.add(
        "429s after the recovery",
        f"{outage['too_many_after']:,}",
        "0",
        met=outage["too_many_after"] == 0,
    )
    phases = rss_phases(outage)
    rss = {phase: mib for phase, (mib, _, _) in phases.items()}
    growth = rss["plateau peak"] - rss["handed over"]
    held, most = phases["handed over"][2], phases["plateau peak"][2]
    cause = (
        f"; live objects flat ({most - held:+,} blocks): the allocator's high-water mark"
        if growth > RSS_PLATEAU_MIB and most - held <= BLOCKS_FLAT * held
        else (f"; live objects {most - held:+,} blocks" if growth > RSS_PLATEAU_MIB else "")
    )
    targets.add(
        "RSS growth while the outage lasts",
        f"{growth:+.1f} MiB{cause}",
        f"<= {RSS_PLATEAU_MIB:g} MiB",
        met=growth <= RSS_PLATEAU_MIB,
    )
    budget = outage["stats"]["queued"] * RSS_PER_RECORD_KIB / 1024
    targets.add(
        "RSS peak over its start",
        f"{rss['peak'] - rss['start']:+.1f} MiB",
        f"<= {budget:.1f} MiB ({RSS_PER_RECORD_KIB:g} KiB a record)",
        met=rss["peak"] - rss["start"] <= budget,
    )
    run, worst, own = stall
    targets.add(
        "worst loop stall, all runs",
        f"{worst * 1000:.2f} ms ({run}; {own * 1000:.2f} ms on the CPU)",
        f"<= {TARGET_STALL_MS:g} ms",
        met=worst * 1000 <= TARGET_STALL_MS,
    )
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=600, help="requests/min per endpoint")
    parser.add_argument("--logins", type=int, default=LOGINS)
    parser.add_argument("--repeat-after", type=float, default=REPEAT_AFTER)
    parser.add_argument("--outage-seconds", type=float, default=OUTAGE_SECONDS)
    parser.add_argument("--outage-records", type=int, default=OUTAGE_RECORDS)
    parser.add_argument("--outage-rate", type=int, default=OUTAGE_RATE)
    parser.add_argument(
        "--child", choices=["background", "awaited", "posthog", "outage"], help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args)))
        return 0

    n, rate = args.logins, args.rate
    load = os.getloadavg()
    print(
        f"{n:,} logins (identify + track of one user; {REPEAT_SHARE:.0%} repeats with new "
        f"values) against the emulator at {rate:,} requests/min per endpoint (429 beyond); then "
        f"{args.outage_records:,} records through {args.outage_seconds:g} s of 503s at "
        f"{args.outage_rate:,}/min; default DeliveryPolicy; {describe_machine()}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start\n"
    )
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        ours = run_login_side("background", args, directory)
        awaited = run_login_side("awaited", args, directory)
        peer = run_posthog(args)
        outage = run_outage(args, directory)

    login_tables(args, ours, awaited, peer).print()
    print()
    logins = login_targets(args, ours)
    logins.print()
    stalls = [
        ("login run", ours["stall"], ours["own_stall"]),
        ("outage run", outage["stall"], outage["own_stall"]),
    ]
    worst_stall = max(stalls, key=lambda item: item[1])
    print()
    outages = outage_targets(outage, worst_stall)
    outages.print()
    print_notes(args, ours, awaited, peer, outage, stalls)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    return verdict(logins.ok and outages.ok)


def print_notes(
    args: argparse.Namespace,
    ours: dict[str, Any],
    awaited: dict[str, Any],
    peer: dict[str, Any],
    outage: dict[str, Any],
    stalls: list[tuple[str, float, float]],
) -> None:
    n, rate = args.logins, args.rate
    worst = max(ours["durations_ns"])
    cut = awaited["cut_off"]
    stats = ", ".join(f"{k} {v:,}" for k, v in ours["stats"].items())
    print(
        f"\nbound: floor(({n} - 1) / {rate}) = {(n - 1) // rate} full window(s) of {WINDOW:g} s "
        f"(the tracks: {n:,}, they never merge) + one identify-then-track round trip "
        f"({ours['round_trip'] * 1000:.1f} ms); the average-rate reading would be "
        f"{n / rate * WINDOW:.1f} s."
        f"\nlogin run, background stats: {stats}."
        f"\nslowest background call: {us(worst)} us, {ours['slowest_cause']}; "
        f"{ours['collections']} collection(s) during the run; calls over "
        f"{TARGET_P99_US:g} us: {_causes(ours['slow_causes'])}."
        f"\nslowest PostHog call: {us(max(peer['durations_ns']))} us, {peer['slowest_cause']}."
        f"\nawaited: {sum(cut.values()):,} handler(s) timed out after {HANDLER_TIMEOUT:g} s "
        f"({cut['identify']:,} in identify, {cut['track']:,} in track); what they had not sent is "
        f"lost: {awaited['users'] - awaited['newest']:,} profile(s) without their newest values, "
        f"{awaited['events'] - awaited['stored']:,} event(s) never stored."
    )
    for run, figures in (("login", ours), ("outage", outage)):
        if figures["duplicates"] or figures["out_of_order"] or figures["lost"]:
            print(
                f"{run} run: {figures['lost']:,} event(s) lost, {figures['duplicates']:,} stored "
                f"twice, {figures['out_of_order']:,} user(s) with events out of order"
            )
    start = outage["started"]
    began, ended = outage["outage"] or [None, None]
    durations = outage["durations_ns"]
    requests = ", ".join(
        f"{path} " + "/".join(f"{count:,}x{status}" for status, count in sorted(counts.items()))
        for path, counts in sorted(outage["requests"].items())
    )
    print(
        f"\noutage run: {len(durations):,} hand-overs (SDK time p50 "
        f"{us(percentile(durations, 0.5))} us, p99 {us(percentile(durations, 0.99))} us, max "
        f"{us(max(durations))} us) within {outage['handed_over'] - start:.1f} s of the start; "
        + (
            f"the outage from {began - start:+.1f} s to {ended - start:+.1f} s; "
            if began is not None and ended is not None
            else "the outage never ended (the run stopped first); "
        )
        + f"flush() returned at {outage['done'] - start:+.1f} s"
        + (f" ({outage['done'] - ended:.1f} s after the recovery); " if ended is not None else "; ")
        + f"{outage['jobs']:,} bulk job(s); requests: {requests}."
        f"\noutage run, slowest hand-over: {us(max(durations))} us, {outage['slowest_cause']}; "
        f"over {TARGET_P99_US:g} us: {_causes(outage['slow_causes'])}."
    )
    if outage["flush_error"]:
        print(f"outage run: flush() gave up: {outage['flush_error']}")
    stats = ", ".join(f"{k} {v:,}" for k, v in outage["stats"].items())
    rss = ", ".join(
        f"{phase} {mib:.1f} ("
        + (f"{tasks:,} tasks, " if tasks >= 0 else "")
        + f"{blocks / 1000:,.0f}k blocks)"
        for phase, (mib, tasks, blocks) in rss_phases(outage).items()
    )
    print(
        f"outage run, stats: {stats}.\noutage run, RSS (MiB): {rss}."
        f"\noutage run, RSS (MiB, and blocks) over time: {rss_timeline(outage)}."
    )
    for (run, stall, own), figures in zip(stalls, (ours, outage), strict=True):
        cause = figures["stall_cause"] if stall * 1000 > TARGET_STALL_MS else "within the target"
        released = (
            f"; the releases themselves held the loop up to {ours['release_stall'] * 1000:.1f} "
            "ms, left out"
            if run == "login run"
            else ""
        )
        print(
            f"{run}: worst stall {stall * 1000:.2f} ms, {own * 1000:.2f} ms of it on the CPU: "
            f"{cause}; {figures['collections']:,} collections, {figures['full_collections']:,} "
            f"of them full, the longest {figures['longest_collection_ms']:.1f} ms{released}."
        )


if __name__ == "__main__":
    sys.exit(main())
