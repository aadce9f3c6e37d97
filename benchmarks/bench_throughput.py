"""Throughput with the governor off: ``import_users`` vs a bare json.dumps + httpx loop.

Both sides send the same 200,000 generated users, 10,000 to a request, as multipart NDJSON to
the same loopback sink (``_sink.py``, in its own process, so its CPU time is not ours):

* **ours**: ``AsyncAnalytex(rows_per_minute=10**12).import_users(generator)``: validation,
  batching, the multipart body, the (idle) governor, job bookkeeping;
* **bare**: the loop a user could write without the SDK: ``json.dumps(row)`` (its defaults, the
  fastest call) for each row, join 10,000 lines, ``httpx.AsyncClient.post(files=...)``, check
  the status. No validation, no job check.

Runs alternate (bare, ours, ours, bare, ...) after a warm-up of each, and each side keeps its
best wall time. The target: ours <= 1.15x bare. The sink decodes every line of both sides'
bodies the same way, and must count every row on both sides.

Usage: ``python benchmarks/bench_throughput.py [--rows N] [--rounds N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from itertools import islice

import anyio
import httpx
from _sink import Sink
from _table import Table, verdict
from _workload import API_KEY, BATCH, client, describe_machine, user_rows

TARGET_RATIO = 1.15


async def ours(url: str, rows: int) -> int:
    """Import ``rows`` generated users through the SDK; return the rows it sent."""
    async with client(url) as analytex:
        result = await analytex.import_users(user_rows(rows))
    return result.rows_sent


async def bare(url: str, rows: int) -> int:
    """POST the same batches with json.dumps and httpx's multipart; return the rows sent."""
    sent = 0
    source = user_rows(rows)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        while batch := list(islice(source, BATCH)):
            body = "".join([json.dumps(row) + "\n" for row in batch]).encode()
            response = await http.post(
                "/v1/users/bulk_identify",
                headers={"Authorization": f"Token {API_KEY}"},
                files={"file": ("users.ndjson", body, "application/x-ndjson")},
            )
            response.raise_for_status()
            sent += len(batch)
    return sent


Side = Callable[[str, int], Awaitable[int]]


def timed(side: Side, sink: Sink, rows: int) -> tuple[float, float, int]:
    """Run one side once: (wall seconds, CPU seconds, records the sink received)."""
    sink.reset()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    sent = anyio.run(side, sink.url, rows)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    received = int(sink.stats()["records"])
    if sent != rows:
        raise RuntimeError(f"{side.__name__} sent {sent:,} of {rows:,} rows")
    return wall, cpu, received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sides: dict[str, Side] = {"ours": ours, "bare": bare}
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in sides}
    print(
        f"{args.rows:,} generated users, {BATCH:,} a request, governor off, loopback sink; "
        f"best of {args.rounds}; {describe_machine()}\n"
    )
    with Sink() as sink:
        for side in sides.values():  # warm-up: imports, connections, caches
            timed(side, sink, BATCH)
        for round_number in range(args.rounds):
            order = ["bare", "ours"] if round_number % 2 == 0 else ["ours", "bare"]
            for name in order:
                runs[name].append(timed(sides[name], sink, args.rows))

    table = Table(["side", "best s", "all runs s", "CPU s", "rows/s", "received", "target"])
    labels = {
        "ours": "ours: import_users(generator)",
        "bare": "bare: json.dumps + httpx multipart",
    }
    best: dict[str, float] = {}
    for name, label in labels.items():
        wall, cpu, _ = min(runs[name])
        best[name] = wall
        received = min(r for _, _, r in runs[name])
        table.add(
            label,
            f"{wall:.2f}",
            " ".join(f"{w:.2f}" for w, _, _ in runs[name]),
            f"{cpu:.2f}",
            f"{args.rows / wall:,.0f}",
            f"{received:,}",
            f"{args.rows:,}",
            met=all(r == args.rows for _, _, r in runs[name]),
        )
    ratio = best["ours"] / best["bare"]
    table.add(
        "ratio ours / bare (best)",
        f"{ratio:.2f}x",
        "",
        "",
        "",
        "",
        f"<= {TARGET_RATIO:.2f}x",
        met=ratio <= TARGET_RATIO,
    )
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
