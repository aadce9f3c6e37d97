"""Event-loop stalls during imports: 200,000 rows from a generator and from an NDJSON file, and
50 MB batches with the journal on.

A heartbeat task on the same asyncio loop sleeps 1 ms at a time and records how late each
wake-up is: that lateness is how long the loop was blocked, i.e. how long every other request of
the web app the import runs in would have waited. Every import sends to the loopback sink (in its
own process) with the governor off (``rows_per_minute=10**12``), so it runs flat out: the worst
case for the loop. The workloads:

* **generator**: 200,000 generated users (about 190 bytes each), batches of 10,000, no journal;
* **NDJSON file**: the same users read from an NDJSON file, batches of 10,000, no journal;
* **50 MB batches, journal on**: 10,000 generated users padded (a ``bio`` metadata string) to
  24,990-byte NDJSON lines, ``batch_size=2,000``, so each batch is 49,980,000 bytes of NDJSON
  and its request body about 49,980,200 bytes, just under the API's 50,000,000-byte limit;
  ``journal=`` a fresh file each run, so every batch is hashed and recorded durably.

Each workload is imported ``--runs`` times (default 3), each run on a fresh event loop. The
table shows every run's worst stall and judges the worst of all runs: the target is that no
beat in any run was more than 10 ms late, with every row sent. Also shown, for the run with the
worst stall: the 99th percentile, and the worst stall counting only time the process was
actually running (a beat held up while other processes had the CPU is the machine's doing, not
the loop's; the judged figure still counts it).

Usage: ``python benchmarks/bench_stall.py [--rows N] [--big-rows N] [--runs N]``. Exits 1 on a
miss.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
from _sink import Sink
from _table import Table, verdict
from _workload import (
    BATCH,
    Heartbeat,
    client,
    describe_machine,
    heartbeat,
    user_row,
    user_rows,
    write_ndjson,
)

TARGET_MS = 10.0
BIG_LINE_BYTES = 24_990
"""Bytes of each padded NDJSON line (newline included) in the 50 MB workload."""
BIG_BATCH = 2_000
"""Records per batch in the 50 MB workload: 2,000 x 24,990 = 49,980,000 bytes of NDJSON."""


def big_user_rows(count: int) -> Iterator[dict[str, Any]]:
    """``count`` generated users, each padded to a ``BIG_LINE_BYTES`` NDJSON line, lazily."""
    for i in range(count):
        row = user_row(i)
        row["metadata"]["bio"] = ""
        unpadded = len(json.dumps(row, separators=(",", ":"))) + 1
        row["metadata"]["bio"] = "x" * (BIG_LINE_BYTES - unpadded)
        yield row


async def import_with_heartbeat(
    url: str, source: object, batch_size: int, journal: Path | None
) -> tuple[Heartbeat, int]:
    """Import ``source`` while a 1 ms heartbeat runs; return the heartbeat and rows sent."""
    async with client(url) as analytex, heartbeat() as beat:
        result = await analytex.import_users(source, batch_size=batch_size, journal=journal)
    return beat, result.rows_sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--big-rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    print(
        "1 ms heartbeat on the asyncio loop during imports (governor off, loopback sink); "
        f"worst stall of {args.runs} runs judged; {describe_machine()}\n"
    )
    table = Table(
        [
            "workload",
            "worst ms (each run)",
            "worst of all",
            "p99 ms",
            "own worst ms",
            "beats",
            "target",
        ]
    )
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        path = Path(tmp) / "users.ndjson"
        write_ndjson(path, args.rows)
        big_batches = -(-args.big_rows // BIG_BATCH)
        # (label, the source, batch_size, journal on?, rows expected)
        workloads: list[tuple[str, Callable[[], object], int, bool, int]] = [
            (
                f"generator ({args.rows:,} rows)",
                lambda: user_rows(args.rows),
                BATCH,
                False,
                args.rows,
            ),
            (f"NDJSON file ({args.rows:,} rows)", lambda: path, BATCH, False, args.rows),
            (
                f"{big_batches} x 50 MB batches, journal on ({args.big_rows:,} rows)",
                lambda: big_user_rows(args.big_rows),
                BIG_BATCH,
                True,
                args.big_rows,
            ),
        ]
        for label, make_source, batch_size, journal_on, expected in workloads:
            runs: list[tuple[Heartbeat, int]] = []
            for number in range(args.runs):
                journal = Path(tmp) / f"journal-{len(table.rows)}-{number}" if journal_on else None
                gc.collect()
                run: Callable[[], Awaitable[tuple[Heartbeat, int]]] = functools.partial(
                    import_with_heartbeat, sink.url, make_source(), batch_size, journal
                )
                runs.append(anyio.run(run))
            worst_run = max(runs, key=lambda item: item[0].worst)[0]
            table.add(
                label,
                " ".join(f"{beat.worst * 1000:.1f}" for beat, _ in runs),
                f"{worst_run.worst * 1000:.1f}",
                f"{worst_run.p99 * 1000:.2f}",
                f"{worst_run.own_worst * 1000:.1f}",
                f"{worst_run.beats:,}",
                f"<= {TARGET_MS:.0f} ms",
                met=worst_run.worst * 1000 <= TARGET_MS
                and all(sent == expected for _, sent in runs),
            )
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
