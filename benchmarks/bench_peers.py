"""Peers on the same job: 200,000 user-profile updates from one Python process to a loopback sink.

Each contender runs in a fresh interpreter (``--child NAME``) on an asyncio loop with a 1 ms
heartbeat task, and delivers the same generated users to the same sink (``_sink.py``, its own
process). What each one sends, with its defaults:

* **ours**: ``AsyncAnalytex(rows_per_minute=10**12).import_users(generator)`` (governor off):
  ``POST /v1/users/bulk_identify``, 10,000 records a request as one multipart NDJSON file
  (about 1.9 MB, uncompressed), 20 requests;
* **PostHog** ``posthog.AsyncClient`` (its default ``v0`` capture mode):
  ``set(distinct_id=..., properties=metadata)`` per user (a ``$set`` profile update), posted
  by its consumer task as ``POST /batch/`` with a JSON ``{"batch": [...], ...}`` of up to 100
  events (``flush_at``), uncompressed (``gzip=False``), then ``await shutdown()`` (flushes);
* **Segment** ``segment.analytics.Client``: ``identify(user_id, traits=metadata)`` per user,
  posted by its consumer thread as ``POST /v1/batch`` with a JSON ``{"batch": [...], ...}`` of
  up to 100 messages (``upload_size``), uncompressed (``gzip=False``), then ``flush()`` and
  ``join()`` in a worker thread so the loop keeps beating.

The sink does the same work for every client: it reads each body whole, decodes all of it
with the one routine for its wire shape (every NDJSON line of the multipart file part with
``json.loads``; the whole JSON batch with ``json.loads``, gunzipped first if it were
compressed), and counts the decoded records with one routine for all (each must be a JSON
object). Its answer follows the count, so a body that takes longer to decode is answered later.

The peers' per-record calls are synchronous queue writes; the loop that drives them yields to
the event loop whenever 1 ms has passed, the same slicing our pipeline uses, so a stall is the
peer's own doing. Each peer runs with its default queue (10,000) and with one large enough
for the whole job (200,000). Figures: records the sink counted, requests it answered (any
method), wall time (from creating the client until the import, or the peer's flush, returned),
peak RSS (the process's ``VmHWM``) and the worst event-loop stall. Targets for ours: 200,000 of
200,000, wall <= 0.3x the fastest peer run that delivered all 200,000, peak RSS <= 64 MiB, stall
<= 10 ms.

Usage: ``python benchmarks/bench_peers.py [--rows N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _sink import Sink
from _table import Table, verdict
from _workload import client, describe_machine, heartbeat, peak_rss_mib, run_child
from _workload import user_rows as generated_users

TARGET_WALL_RATIO = 0.3
TARGET_PEAK_MIB = 64.0
TARGET_STALL_MS = 10.0
SLICE = 0.001
"""Seconds of peer calls between two yields to the event loop."""


async def deliver_ours(url: str, rows: int, _large_queue: bool) -> None:
    async with client(url) as analytex:
        await analytex.import_users(generated_users(rows))


async def deliver_posthog(url: str, rows: int, large_queue: bool) -> None:
    from posthog import AsyncClient  # noqa: PLC0415  # a peer: imported in its own child only

    posthog = (
        AsyncClient("phc_bench", host=url, max_queue_size=rows)
        if large_queue
        else AsyncClient("phc_bench", host=url)
    )
    yield_at = time.perf_counter() + SLICE
    for row in generated_users(rows):
        posthog.set(distinct_id=row["user_id"], properties=row["metadata"])
        if time.perf_counter() > yield_at:
            await asyncio.sleep(0)
            yield_at = time.perf_counter() + SLICE
    await posthog.shutdown()


async def deliver_segment(url: str, rows: int, large_queue: bool) -> None:
    from segment.analytics import Client  # noqa: PLC0415  # a peer: imported in its own child only

    segment = (
        Client("bench-write-key", host=url, max_queue_size=rows)
        if large_queue
        else Client("bench-write-key", host=url)
    )
    yield_at = time.perf_counter() + SLICE
    for row in generated_users(rows):
        segment.identify(row["user_id"], traits=row["metadata"])
        if time.perf_counter() > yield_at:
            await asyncio.sleep(0)
            yield_at = time.perf_counter() + SLICE
    await asyncio.to_thread(segment.flush)
    await asyncio.to_thread(segment.join)


Deliver = Callable[[str, int, bool], Awaitable[None]]
CONTENDERS: dict[str, tuple[str, Deliver, bool]] = {
    "ours": ("ours: import_users", deliver_ours, False),
    "posthog-default": ("PostHog AsyncClient, default queue", deliver_posthog, False),
    "posthog-large": ("PostHog AsyncClient, queue 200,000", deliver_posthog, True),
    "segment-default": ("Segment Client, default queue", deliver_segment, False),
    "segment-large": ("Segment Client, queue 200,000", deliver_segment, True),
}


async def child(name: str, url: str, rows: int) -> dict[str, float]:
    """Deliver ``rows`` users with one contender under a heartbeat; return its figures."""
    _, deliver, large_queue = CONTENDERS[name]
    async with heartbeat() as beat:
        started = time.perf_counter()
        await deliver(url, rows, large_queue)
        wall = time.perf_counter() - started
    return {
        "wall": wall,
        "peak_mib": peak_rss_mib(),
        "stall_ms": beat.worst * 1000,
        "p99_ms": beat.p99 * 1000,
        "own_stall_ms": beat.own_worst * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--child", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows: int = args.rows
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child, args.url, rows))))
        return 0

    print(
        f"{rows:,} user-profile updates from one process to a loopback sink, each contender in a "
        f"fresh process with a 1 ms heartbeat on its asyncio loop; {describe_machine()}\n"
    )
    figures: dict[str, dict[str, Any]] = {}
    with Sink() as sink:
        for name in CONTENDERS:
            sink.reset()
            figures[name] = run_child(
                __file__, ["--child", name, "--url", sink.url, "--rows", str(rows)], timeout=900
            )
            stats = sink.stats()
            figures[name]["delivered"] = int(stats["records"])
            figures[name]["requests"] = int(stats["requests"])

    complete = [
        f["wall"] for name, f in figures.items() if name != "ours" and f["delivered"] == rows
    ]
    fastest_peer = min(complete, default=float("inf"))
    ours = figures["ours"]
    wall_ratio = ours["wall"] / fastest_peer

    table = Table(
        [
            "contender",
            "delivered",
            "requests",
            "wall s",
            "peak RSS MiB",
            "worst stall ms",
            "p99 ms",
            "target",
        ]
    )
    for name, (label, _, _) in CONTENDERS.items():
        f = figures[name]
        is_ours = name == "ours"
        table.add(
            label,
            f"{f['delivered']:,}",
            f"{f['requests']:,}",
            f"{f['wall']:.2f}",
            f"{f['peak_mib']:.0f}",
            f"{f['stall_ms']:.1f}",
            f"{f['p99_ms']:.1f}",
            (
                f"{rows:,}, <= {TARGET_PEAK_MIB:.0f} MiB, <= {TARGET_STALL_MS:.0f} ms"
                if is_ours
                else ""
            ),
            met=(
                f["delivered"] == rows
                and f["peak_mib"] <= TARGET_PEAK_MIB
                and f["stall_ms"] <= TARGET_STALL_MS
            )
            if is_ours
            else None,
        )
    table.add(
        "wall: ours / fastest complete peer",
        "",
        "",
        f"{wall_ratio:.3f}x",
        "",
        "",
        "",
        f"<= {TARGET_WALL_RATIO}x",
        met=wall_ratio <= TARGET_WALL_RATIO,
    )
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
