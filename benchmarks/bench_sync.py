"""Sync: 200,000 users synced twice with 1% changed between the runs, against a local server.

Each run is a fresh interpreter (``--child``) syncing generated users from a lazy generator
with the governor off, into a SQLite state file and into a Redis state (a ``redis-server``
started on a free loopback port, persistence off), against two local servers in turn: the
emulator (the faithful server: it parses, checks and applies every row; jobs at 10^9 rows a
minute, so they complete at once) and the loopback sink (which only decodes and counts the rows
and answers a completed job: the cheapest server there can be, so the strictest comparison).
The first run sends every row; before the second, every 100th user's ``score`` changes, so it
must send exactly those 2,000 rows ("received" is the rows of the jobs each run created, as the
server counts them). Targets, for each server: the second run takes at most 0.35x the first
run's time with SQLite and 0.5x with Redis, the SQLite file holds at most 100 bytes a record
(the Redis hash's size is reported), and each run's peak RSS (the process's ``VmHWM``) stays at
or under 96 MiB.

Usage: ``python benchmarks/bench_sync.py [--rows N] [--changed-every N] [--states sqlite,redis]``.
Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
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

TARGET_RATIOS = {"sqlite": 0.35, "redis": 0.5}
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port (persistence off); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("bench_sync needs redis-server: sudo apt-get install redis-server")
    port = _free_port()
    process = subprocess.Popen(  # our own command, no shell
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def redis_state_bytes(url: str, name: str) -> int:
    """The bytes Redis uses for a state's digests (``MEMORY USAGE`` of its hash)."""
    import redis  # noqa: PLC0415 - the redis extra, only for this figure

    with redis.Redis.from_url(url) as client:
        used = client.memory_usage(f"analytex:sync:{{{name}}}:digests", samples=0)
    return int(used or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changed-every", type=int, default=100)
    parser.add_argument("--states", default="sqlite,redis")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--change", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(anyio.run(child, args.url, args.state, args.rows, args.change)))
        return 0

    states = args.states.split(",")
    print(
        f"{args.rows:,} users synced twice, 1 in {args.changed_every} changed between the runs "
        f"(governor off; states: {', '.join(states)}); {describe_machine()}\n"
    )
    changed = len(range(0, args.rows, args.changed_every))
    emulator = [sys.executable, str(Path(__file__).parent / "bench_end_to_end.py"),
                "--serve-emulator", str(EMULATOR_RATE)]  # fmt: skip
    table = Table(["state, server, run", "seconds", "sent", "received",
                   "new / changed / unchanged", "peak MiB", "target"])  # fmt: skip
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as redis_url:
        for kind in states:
            for number, (name, server) in enumerate(
                (("emulator", ServerProcess(emulator)), ("sink", Sink()))
            ):
                with server:
                    if kind == "redis":
                        state = f"{redis_url}?name=bench-{number}"
                    else:
                        state = str(Path(directory) / f"users-{number}.sqlite")
                    common = ["--child", "--url", server.url, "--state", state,
                              "--rows", str(args.rows)]  # fmt: skip
                    first = run_child(common)
                    if kind == "redis":
                        state_bytes = redis_state_bytes(redis_url, f"bench-{number}")
                    else:
                        state_bytes = Path(state).stat().st_size
                    second = run_child([*common, "--change", str(args.changed_every)])
                _judge(table, kind, name, first, second, state_bytes, args.rows, changed)
    table.print()
    return verdict(table.ok)


def _judge(
    table: Table,
    kind: str,
    server: str,
    first: dict[str, Any],
    second: dict[str, Any],
    state_bytes: int,
    rows: int,
    changed: int,
) -> None:
    label = f"{kind}, {server}"
    for run_name, run, expected in (("first", first, rows), ("second", second, changed)):
        table.add(
            f"{label}, {run_name}",
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
    target = TARGET_RATIOS[kind]
    table.add(f"{label}, second / first", f"{ratio:.3f}x", "", "", "", "",
              f"<= {target}x", met=ratio <= target)  # fmt: skip
    per_record = state_bytes / rows
    if kind == "sqlite":
        table.add(f"{label}, state file", f"{state_bytes / 2**20:.1f} MiB", "", "", "", "",
                  f"<= {TARGET_STATE_BYTES} bytes a record ({per_record:.1f})",
                  met=per_record <= TARGET_STATE_BYTES)  # fmt: skip
    else:
        table.add(f"{label}, Redis hash", f"{state_bytes / 2**20:.1f} MiB", "", "", "", "",
                  f"reported: {per_record:.1f} bytes a record")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
