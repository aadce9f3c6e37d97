"""Peak memory: 1,000,000 generated rows vs 100,000, and 1,000,000 rows of which 99% are invalid.

Each import runs in its own interpreter (``--child N --workload W``) against the loopback sink
with the governor off, from a lazy generator, and reports its peak resident set size (the
process's ``VmHWM``, interpreter and imports included) and its RSS before the import started.
Memory must not grow with the source, whether its rows are sent or rejected:

* **valid**: 100,000 and 1,000,000 valid users; targets: every row received by the sink, a peak
  of at most 64 MiB for 1,000,000 rows, and at most 1.1x the peak for 100,000;
* **mostly invalid**: 1,000,000 users of which 99 in 100 carry a list in their metadata (bulk
  metadata takes primitives only), imported with the default ``on_invalid="skip"``; targets:
  the 1% valid rows received, every invalid row counted in ``ImportResult.rows_rejected``, and
  a peak of at most 64 MiB. The table also shows how many ``Rejection`` entries the result kept
  (``len(ImportResult.rejected)``): what the import held in memory for the rejected rows.

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
from _workload import (
    client,
    describe_machine,
    mostly_invalid_rows,
    peak_rss_mib,
    run_child,
    user_rows,
)

TARGET_PEAK_MIB = 64.0
TARGET_RATIO = 1.1
VALID_EVERY = 100
"""In the mostly-invalid workload, one row in this many is valid."""
WORKLOADS = {"valid": user_rows, "mostly-invalid": mostly_invalid_rows}


async def child(url: str, rows: int, workload: str) -> dict[str, float]:
    """Import ``rows`` generated users; return the peaks, the time and the rows' fates."""
    before = peak_rss_mib()  # the interpreter and the imports
    started = time.perf_counter()
    async with client(url) as analytex:
        result = await analytex.import_users(WORKLOADS[workload](rows))
    return {
        "before_mib": before,
        "peak_mib": peak_rss_mib(),
        "seconds": time.perf_counter() - started,
        "rows_sent": result.rows_sent,
        "rows_rejected": result.rows_rejected,
        "rejections_kept": len(result.rejected),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--workload", choices=sorted(WORKLOADS), default="valid", help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(anyio.run(child, args.url, args.child, args.workload)))
        return 0

    print(
        "Peak RSS of a fresh process importing generated users (lazy generator, governor off, "
        f"loopback sink); {describe_machine()}\n"
    )
    plan = [("valid", args.small), ("valid", args.large), ("mostly-invalid", args.large)]
    runs: dict[tuple[str, int], dict[str, float]] = {}
    with Sink() as sink:
        for workload, rows in plan:
            sink.reset()
            runs[workload, rows] = run_child(
                __file__,
                ["--child", str(rows), "--workload", workload, "--url", sink.url],
                timeout=1800,
            )
            runs[workload, rows]["received"] = sink.stats()["records"]

    table = Table(
        [
            "import",
            "RSS at start MiB",
            "peak MiB",
            "seconds",
            "received",
            "rejected",
            "rejections kept",
            "target",
        ]
    )
    for (workload, rows), run in runs.items():
        peak_ok = run["peak_mib"] <= TARGET_PEAK_MIB
        if workload == "valid":
            label = f"{rows:,} valid rows"
            expected_sent, expected_rejected = rows, 0
            judged_peak = rows == args.large
        else:
            label = f"{rows:,} rows, 99% invalid"
            expected_sent = len(range(0, rows, VALID_EVERY))
            expected_rejected = rows - expected_sent
            judged_peak = True
        table.add(
            label,
            f"{run['before_mib']:.1f}",
            f"{run['peak_mib']:.1f}",
            f"{run['seconds']:.1f}",
            f"{int(run['received']):,}",
            f"{int(run['rows_rejected']):,}",
            f"{int(run['rejections_kept']):,}",
            (
                f"{expected_sent:,} received, <= {TARGET_PEAK_MIB:.0f} MiB"
                if judged_peak
                else f"{expected_sent:,} received"
            ),
            met=run["received"] == expected_sent
            and run["rows_rejected"] == expected_rejected
            and (peak_ok or not judged_peak),
        )
    small, large = runs["valid", args.small], runs["valid", args.large]
    ratio = large["peak_mib"] / small["peak_mib"]
    table.add(
        f"ratio {args.large:,} / {args.small:,} valid",
        "",
        f"{ratio:.3f}x",
        "",
        "",
        "",
        "",
        f"<= {TARGET_RATIO}x",
        met=ratio <= TARGET_RATIO,
    )
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
