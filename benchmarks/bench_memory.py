"""Peak memory: importing 1,000,000 generated rows vs 100,000, each in a fresh process.

Each import runs in its own interpreter (``--child N``) against the loopback sink with the
governor off, from a lazy generator, and reports its peak resident set size
(``getrusage(RUSAGE_SELF).ru_maxrss``, interpreter and imports included) and its RSS before the
import started. Memory must not grow with the source: the targets are a peak of at most 64 MiB
for 1,000,000 rows and at most 1.1x the peak for 100,000.

Usage: ``python benchmarks/bench_memory.py [--small N] [--large N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import anyio
from _sink import Sink
from _table import Table, verdict
from _workload import client, describe_machine, peak_rss_mib, run_child, user_rows

TARGET_PEAK_MIB = 64.0
TARGET_RATIO = 1.1


async def child(url: str, rows: int) -> dict[str, float]:
    """Import ``rows`` generated users; return the peaks, the time and the rows sent."""
    before = peak_rss_mib()  # the interpreter and the imports
    started = time.perf_counter()
    async with client(url) as analytex:
        result = await analytex.import_users(user_rows(rows))
    return {
        "before_mib": before,
        "peak_mib": peak_rss_mib(),
        "seconds": time.perf_counter() - started,
        "rows_sent": result.rows_sent,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(anyio.run(child, args.url, args.child)))
        return 0

    print(
        "Peak RSS of a fresh process importing generated users (lazy generator, governor off, "
        f"loopback sink); {describe_machine()}\n"
    )
    runs: dict[int, dict[str, float]] = {}
    with Sink() as sink:
        for rows in (args.small, args.large):
            sink.reset()
            runs[rows] = run_child(__file__, ["--child", str(rows), "--url", sink.url])
            runs[rows]["received"] = sink.stats()["records"]

    small, large = runs[args.small], runs[args.large]
    ratio = large["peak_mib"] / small["peak_mib"]
    table = Table(["import", "RSS at start MiB", "peak MiB", "seconds", "received", "target"])
    for rows, run in runs.items():
        is_large = rows == args.large
        table.add(
            f"{rows:,} rows",
            f"{run['before_mib']:.1f}",
            f"{run['peak_mib']:.1f}",
            f"{run['seconds']:.1f}",
            f"{int(run['received']):,}",
            f"<= {TARGET_PEAK_MIB:.0f} MiB" if is_large else f"{rows:,} received",
            met=run["received"] == rows and (not is_large or run["peak_mib"] <= TARGET_PEAK_MIB),
        )
    table.add(
        f"ratio {args.large:,} / {args.small:,}",
        "",
        f"{ratio:.3f}x",
        "",
        "",
        f"<= {TARGET_RATIO}x",
        met=ratio <= TARGET_RATIO,
    )
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
