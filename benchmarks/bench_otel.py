"""OpenTelemetry with no SDK configured: what it costs a real-time call and a bulk import.

The same work runs in one process, against the in-process emulator (``EmulatedAnalytex``: no
sockets, so the SDK's own cost is as large a share of each call as it can be), in two modes:

* **api, no provider**: ``opentelemetry-api`` installed and importable, no tracer or meter
  provider set (the application did not configure OpenTelemetry): the SDK looks the providers
  up on every call, finds the API's proxies and records nothing;
* **disabled**: the telemetry module forced to its "not installed" path
  (``_otel.use_opentelemetry(False)``), as without the ``otel`` extra.

A last, informative row times the telemetry of one API call alone (``ApiCall``: enter, one
attempt, exit) in both modes, in microseconds.

Workloads: ``--calls`` awaited ``identify`` calls, eight at a time (calls a second), and an
import of ``--rows`` users in batches of 1,000 with the governor off (rows a second). The modes
alternate, ``--rounds`` times each (ABBA order, so drift in the machine's speed falls on both).
Throughput is counted against the process's CPU time (``time.process_time``): the emulator runs
in the process, so that is all the work, and other processes on a shared machine then move the
figures far less than they move wall time. Each mode's best round is shown (the one least
disturbed); the figure judged is the median, over the rounds, of the ratio of the two runs of a
round (run back to back, so a disturbance lasting seconds falls on both). Target: that paired
ratio api / disabled >= 0.98 for both workloads.

Usage: ``python benchmarks/bench_otel.py [--calls N] [--rows N] [--rounds N]``. Exits 1 on a
miss.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
from _table import Table, verdict
from _workload import describe_machine, user_rows

from analytex_async import _otel, _telemetry
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

TARGET_RATIO = 0.98
FAST = 1e12
"""Rows a minute for the governor and the emulator's jobs: neither waits."""
CONCURRENCY = 8


def emulated() -> EmulatedAnalytex:
    emulator = Emulator(
        rows_per_minute=FAST, realtime_requests_per_minute=None, request_log_limit=1_000
    )
    return EmulatedAnalytex(emulator, rows_per_minute=FAST, requests_per_minute=None)


async def realtime(calls: int) -> float:
    """Awaited identify calls a second."""
    async with emulated() as analytex:
        client = analytex.client
        await client.identify("warm-up")
        left = iter(range(calls))

        async def caller() -> None:
            for n in left:
                await client.identify(f"u{n}", metadata={"n": n})

        started = time.process_time()
        async with anyio.create_task_group() as tasks:
            for _ in range(CONCURRENCY):
                tasks.start_soon(caller)
        return calls / (time.process_time() - started)


async def bulk(rows: int) -> float:
    """Rows a second of one import."""
    async with emulated() as analytex:
        started = time.process_time()
        result = await analytex.client.import_users(user_rows(rows), batch_size=1_000)
        elapsed = time.process_time() - started
        assert result.rows_sent == rows, result
        return rows / elapsed


def overhead_us(telemetry_on: bool, calls: int = 100_000) -> float:
    """Microseconds the telemetry of one API call costs: its span, metrics and log fields."""
    _otel.use_opentelemetry(telemetry_on)
    base_url, path = "http://127.0.0.1", "/v1/identify"
    started = time.perf_counter()
    for _ in range(calls):
        with _telemetry.ApiCall("POST", path, base_url) as call:
            call.attempted(1, 202, "req-1")
    return (time.perf_counter() - started) / calls * 1e6


def measure(work: Callable[[], Awaitable[float]], telemetry_on: bool) -> float:
    _otel.use_opentelemetry(telemetry_on)
    gc.collect()
    return anyio.run(work)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)

    _otel.use_opentelemetry(True)
    if not _otel.opentelemetry_available():
        print("opentelemetry-api is not installed: install the otel extra to run this benchmark")
        return 1
    if _otel.tracer() is not None or _otel.instruments() is not None:
        print("a tracer or meter provider is configured: this benchmark needs none")
        return 1

    workloads: dict[str, Callable[[], Awaitable[float]]] = {
        f"real-time identify x{args.calls:,} (calls/s)": lambda: realtime(args.calls),
        f"import {args.rows:,} users (rows/s)": lambda: bulk(args.rows),
    }
    print(f"bench_otel: {describe_machine()}, {args.rounds} alternating rounds per mode\n")
    columns = ["workload", "disabled (best)", "api, no provider (best)", "best ratio"]
    table = Table([*columns, "paired ratio", "target"])
    for name, work in workloads.items():
        measure(work, True)  # warm-up: imports, caches, the emulator's first requests
        figures: dict[bool, list[float]] = {True: [], False: []}
        for round_number in range(args.rounds):
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for telemetry_on in order:
                figures[telemetry_on].append(measure(work, telemetry_on))
        best_off, best_on = max(figures[False]), max(figures[True])
        best = best_on / best_off
        paired = statistics.median(
            on / off for on, off in zip(figures[True], figures[False], strict=True)
        )
        table.add(
            name,
            f"{best_off:,.0f}",
            f"{best_on:,.0f}",
            f"{best:.3f}x",
            f"{paired:.3f}x",
            f">= {TARGET_RATIO}x",
            met=paired >= TARGET_RATIO,
        )
    off_us = min(overhead_us(False) for _ in range(3))
    on_us = min(overhead_us(True) for _ in range(3))
    table.add("telemetry per API call (us)", f"{off_us:.2f}", f"{on_us:.2f}", "", "", "", met=None)
    _otel.use_opentelemetry(True)
    table.print()
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
