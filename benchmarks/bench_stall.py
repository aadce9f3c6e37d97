"""Event-loop stalls during a 200,000-row import, from a generator and from an NDJSON file.

A heartbeat task on the same asyncio loop sleeps 1 ms at a time and records how late each
wake-up is: that lateness is how long the loop was blocked, i.e. how long every other request of
the web app the import runs in would have waited. The import sends to the loopback sink (in its
own process) with the governor off, so it runs flat out: the worst case for the loop. The
target: the worst stall <= 10 ms. Also shown: the 99th percentile, and the worst stall counting
only time the process was actually running (a beat held up while other processes had the CPU
is the machine's doing, not the loop's).

Each source is imported ``--runs`` times (default 3); the table shows every run's worst stall
and judges the median run, so that one preemption by another process does not decide it.

Usage: ``python benchmarks/bench_stall.py [--rows N] [--runs N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
from _sink import Sink
from _table import Table, verdict
from _workload import Heartbeat, client, describe_machine, heartbeat, user_rows, write_ndjson

TARGET_MS = 10.0


async def import_with_heartbeat(url: str, source: object) -> tuple[Heartbeat, int]:
    """Import ``source`` while a 1 ms heartbeat runs; return the heartbeat and rows sent."""
    async with client(url) as analytex, heartbeat() as beat:
        result = await analytex.import_users(source)
    return beat, result.rows_sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    print(
        f"1 ms heartbeat on the asyncio loop during an import of {args.rows:,} users "
        f"(governor off, loopback sink); {describe_machine()}\n"
    )
    table = Table(
        ["source", "worst ms (each run)", "median run", "p99 ms", "own worst ms", "beats", "target"]
    )
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        path = Path(tmp) / "users.ndjson"
        write_ndjson(path, args.rows)
        sources: dict[str, Callable[[], object]] = {
            "generator": lambda: user_rows(args.rows),
            "NDJSON file": lambda: path,
        }
        for name, make_source in sources.items():
            runs: list[tuple[Heartbeat, int]] = []
            for _ in range(args.runs):
                gc.collect()
                runs.append(anyio.run(import_with_heartbeat, sink.url, make_source()))
            worst = [beat.worst * 1000 for beat, _ in runs]
            median = statistics.median(worst)
            middle = sorted(runs, key=lambda run: run[0].worst)[len(runs) // 2][0]
            table.add(
                f"{name} ({args.rows:,} rows)",
                " ".join(f"{w:.1f}" for w in worst),
                f"{median:.1f}",
                f"{middle.p99 * 1000:.2f}",
                f"{middle.own_worst * 1000:.1f}",
                f"{middle.beats:,}",
                f"<= {TARGET_MS:.0f} ms",
                met=median <= TARGET_MS and all(sent == args.rows for _, sent in runs),
            )
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
