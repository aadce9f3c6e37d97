"""Peak memory of a Parquet import: 1,000,000 rows from one file vs 100,000 from another.

The parent writes two Parquet files of the generated users (``_workload.user_row``: an id, a
company, six metadata fields, plus a timestamp column), each as pyarrow writes a file by
default (row groups of up to 1,048,576 rows: the million rows are one row group, the case
where a reader that loads a row group whole would grow with the file). Each import runs in its
own interpreter (``--child PATH``) against the loopback sink with the governor off, and reports
its peak resident set size (``VmHWM``, interpreter and imports included), its RSS before the
import, its time and the rows sent.

Targets: every row received by the sink, and a peak for 1,000,000 rows of at most 1.1x the
peak for 100,000: memory is bounded by the record batches, not by the file.

Usage: ``python benchmarks/bench_parquet.py [--small N] [--large N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
from _sink import Sink
from _table import Table, verdict
from _workload import client, describe_machine, peak_rss_mib, run_child, user_row

TARGET_RATIO = 1.1
_WRITE_ROWS = 100_000
"""Rows generated (and held by the parent) per ``write_batch`` call while writing a file."""
_EPOCH = dt.datetime(2020, 1, 1)


def write_users(path: Path, count: int) -> None:
    """Write ``count`` generated users to ``path``, in row groups as large as pyarrow's default."""
    schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("company_id", pa.string()),
            ("name", pa.string()),
            ("email", pa.string()),
            ("plan", pa.string()),
            ("seats", pa.int64()),
            ("active", pa.bool_()),
            ("score", pa.float64()),
            ("signed_up", pa.timestamp("us")),
        ]
    )
    batches = []
    for start in range(0, count, _WRITE_ROWS):
        columns: dict[str, list[object]] = {name: [] for name in schema.names}
        for i in range(start, min(start + _WRITE_ROWS, count)):
            row = user_row(i)
            columns["user_id"].append(row["user_id"])
            columns["company_id"].append(row["company_id"])
            for key, value in row["metadata"].items():
                columns[key].append(value)
            columns["signed_up"].append(_EPOCH + dt.timedelta(seconds=i * 37))
        batches.append(pa.RecordBatch.from_pydict(columns, schema=schema))
    pq.write_table(pa.Table.from_batches(batches, schema=schema), path)


async def child(url: str, path: str) -> dict[str, float]:
    """Import the users of ``path``; return the peaks, the time and the rows sent."""
    before = peak_rss_mib()  # the interpreter and the imports
    started = time.perf_counter()
    async with client(url) as analytex:
        result = await analytex.import_users(path)
    return {
        "before_mib": before,
        "peak_mib": peak_rss_mib(),
        "seconds": time.perf_counter() - started,
        "rows_sent": result.rows_sent,
        "rows_rejected": result.rows_rejected,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(anyio.run(child, args.url, args.child)))
        return 0

    print(
        "Peak RSS of a fresh process importing users from a Parquet file (governor off, "
        f"loopback sink); {describe_machine()}\n"
    )
    runs: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder, Sink() as sink:
        for rows in (args.small, args.large):
            path = Path(folder) / f"users-{rows}.parquet"
            write_users(path, rows)
            sink.reset()
            runs[rows] = run_child(
                __file__, ["--child", str(path), "--url", sink.url], timeout=1800
            )
            runs[rows]["received"] = sink.stats()["records"]
            runs[rows]["file_mib"] = path.stat().st_size / (1 << 20)
            path.unlink()

    columns = ["import", "file MiB", "RSS at start MiB", "peak MiB", "seconds", "rows/s"]
    table = Table([*columns, "received", "target"])
    for rows, run in runs.items():
        table.add(
            f"{rows:,} rows",
            f"{run['file_mib']:.1f}",
            f"{run['before_mib']:.1f}",
            f"{run['peak_mib']:.1f}",
            f"{run['seconds']:.1f}",
            f"{rows / run['seconds']:,.0f}",
            f"{int(run['received']):,}",
            f"{rows:,} received",
            met=run["received"] == rows and run["rows_rejected"] == 0,
        )
    ratio = runs[args.large]["peak_mib"] / runs[args.small]["peak_mib"]
    table.add(
        f"ratio {args.large:,} / {args.small:,}",
        "",
        "",
        f"{ratio:.3f}x",
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
