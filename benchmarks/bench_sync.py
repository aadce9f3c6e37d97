"""Sync: 200,000 users synced twice with 1% changed between the runs, against a local server.

Each run is a fresh interpreter (``--child``) syncing generated users from a lazy generator
with the governor off into a SQLite state file, against two local servers in turn: the emulator
(the faithful server: it parses, checks and applies every row; jobs at 10^9 rows a minute, so
they complete at once) and the loopback sink (which only decodes and counts the rows and answers
a completed job: the cheapest server there can be, so the strictest comparison). The first run
sends every row; before the second, every 100th user's ``score`` changes, so it must send
exactly those 2,000 rows ("received" is the rows of the jobs each run created, as the server
counts them). Targets, for each server: the second run takes at most 0.5x the first run's time,
the state file holds at most 100 bytes a record, and each run's peak RSS (the process's
``VmHWM``) stays at or under 96 MiB.

Usage: ``python benchmarks/bench_sync.py [--rows N] [--changed-every N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from _sink import ServerProcess, Sink
from _table import Table, verdict
from _workload import client, describe_machine, peak_rss_mib, user_row

TARGET_RATIO = 0.5
TARGET_STATE_BYTES = 100
TARGET_PEAK_MIB = 96.0
EMULATOR_RATE = 1e9
"""Rows a minute the emulator processes: its jobs complete as soon as they are polled."""


def rows(count: int, changed_every: int | None) -> Iterator[dict[str, Any]]:
    """The generated users; with ``changed_every``, every such user's score changed."""
    for i in range(count):
        row = user_row(i)
        if changed_every and i % changed_every == 0:
            row["metadata"]["score"] = -1.5
        yield row


async def child(url: str, state: str, count: int, changed_every: int) -> dict[str, float]:
    """One sync run; its time, peak and counters."""
    before = peak_rss_mib()
    started = time.perf_counter()
    async with client(url) as analytex:
        result = await analytex.sync_users(rows(count, changed_every or None), state=state)
    return {
        "before_mib": before,
        "peak_mib": peak_rss_mib(),
        "seconds": time.perf_counter() - started,
        "rows_sent": result.rows_sent,
        "rows_new": result.rows_new,
        "rows_changed": result.rows_changed,
        "rows_unchanged": result.rows_unchanged,
        "received": sum(job.total_rows or 0 for job in result.jobs),
        "ok": result.ok,
    }


def run_child(args: list[str]) -> dict[str, Any]:
    import subprocess  # noqa: PLC0415 - only the parent runs children

    done = subprocess.run(  # our own script, no shell
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_sync child failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changed-every", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--change", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(anyio.run(child, args.url, args.state, args.rows, args.change)))
        return 0

    print(
        f"{args.rows:,} users synced twice, 1 in {args.changed_every} changed between the runs "
        f"(governor off, SQLite state); {describe_machine()}\n"
    )
    changed = len(range(0, args.rows, args.changed_every))
    emulator = [sys.executable, str(Path(__file__).parent / "bench_end_to_end.py"),
                "--serve-emulator", str(EMULATOR_RATE)]  # fmt: skip
    table = Table(["server, run", "seconds", "sent", "received", "new / changed / unchanged",
                   "peak MiB", "target"])  # fmt: skip
    for name, server in (("emulator", ServerProcess(emulator)), ("sink", Sink())):
        with tempfile.TemporaryDirectory() as directory, server:
            state = Path(directory) / "users.sqlite"
            common = ["--child", "--url", server.url, "--state", str(state),
                      "--rows", str(args.rows)]  # fmt: skip
            first = run_child(common)
            state_bytes = state.stat().st_size
            second = run_child([*common, "--change", str(args.changed_every)])
        _judge(table, name, first, second, state_bytes, args.rows, changed)
    table.print()
    return verdict(table.ok)


def _judge(
    table: Table,
    server: str,
    first: dict[str, Any],
    second: dict[str, Any],
    state_bytes: int,
    rows: int,
    changed: int,
) -> None:
    for label, run, expected in (("first", first, rows), ("second", second, changed)):
        table.add(
            f"{server}, {label}",
            f"{run['seconds']:.2f}",
            f"{int(run['rows_sent']):,}",
            f"{int(run['received']):,}",
            f"{int(run['rows_new']):,} / {int(run['rows_changed']):,} / "
            f"{int(run['rows_unchanged']):,}",
            f"{run['peak_mib']:.1f}",
            f"{expected:,} sent, <= {TARGET_PEAK_MIB:.0f} MiB",
            met=run["received"] == expected
            and run["rows_sent"] == expected
            and run["ok"]
            and run["peak_mib"] <= TARGET_PEAK_MIB,
        )
    ratio = second["seconds"] / first["seconds"]
    table.add(f"{server}, second / first", f"{ratio:.3f}x", "", "", "", "",
              f"<= {TARGET_RATIO}x", met=ratio <= TARGET_RATIO)  # fmt: skip
    per_record = state_bytes / rows
    table.add(f"{server}, state file", f"{state_bytes / 2**20:.1f} MiB", "", "", "", "",
              f"<= {TARGET_STATE_BYTES} bytes a record ({per_record:.1f})",
              met=per_record <= TARGET_STATE_BYTES)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
