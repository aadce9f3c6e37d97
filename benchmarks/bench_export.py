"""Exports: 1,000,000 events streamed through ``export_events``, and a Parquet export as a table.

A server process holds an emulator with ``--events`` imported events (1,000,000 by default)
and serves it on loopback (files of 100,000 events, NDJSON gzip-compressed; exports complete at
once). The parent starts the exports once (an NDJSON export of the first 100,000 events, one of
all of them, and a Parquet export of all of them) and reads every file once, so the server has
rendered them all before anything is timed. Then each measured run is a fresh interpreter:

- ``bare``: httpx streaming + gzip (``zlib``) + ``json.loads`` per line over the same links,
  the floor a hand-written script would reach (it parses no field and checks nothing);
- ``export_events``: ``client.export_events(job_id=...)``, every event normalised (metadata a
  dict, ``inserted_at`` an aware datetime, every schema field present);
- ``export_table``: ``client.export_table(job_id=...)`` of the Parquet export.

Each streaming run is made twice and the faster kept (2 shared cores). Targets: peak RSS of
``export_events`` <= 80 MiB at 1,000,000 events and <= 1.1x its peak at 100,000 (flat); its
time <= 1.3x the bare loop's; ``export_table``'s peak RSS growth <= 1.5x the table's size.

Usage: ``python benchmarks/bench_export.py [--events N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import zlib

import anyio
import httpx
from _table import Table, verdict
from _workload import API_KEY, client, describe_machine, peak_rss_mib, run_child

CHUNK_ROWS = 100_000
RSS_LIMIT_MIB = 80.0
FLAT_RATIO = 1.1
TIME_RATIO = 1.3
TABLE_RATIO = 1.5
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
_SMALL = 100_000


def serve(events: int) -> None:
    """The server process: an emulator holding ``events`` imported events, on a free port."""
    import uvicorn  # noqa: PLC0415

    from analytex_async.emulator import Emulator, ImportedEvent  # noqa: PLC0415

    emulator = Emulator(
        export_chunk_rows=CHUNK_ROWS, export_duration=0.0, realtime_requests_per_minute=None
    )
    account = emulator.account(API_KEY)
    fields = {
        "hostname": "app.example.com",
        "pathname": "/dashboard",
        "screen_width": 1920,
        "screen_height": 1080,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
        "browser": "Chrome",
        "operating_system": "Linux",
        "device_type": "desktop",
        "browser_language": "en-US",
        "country_code": "DE",
    }
    plans = ({"plan": "free", "seats": 1}, {"plan": "pro", "seats": 5}, {"plan": "team"})
    account.imported_events.extend(
        ImportedEvent(
            "track",
            "backend-http-import",
            _EPOCH + dt.timedelta(seconds=i),
            f"user_{i % 50_000:06d}",
            f"company_{i % 900:04d}",
            f"event_{i % 40}",
            plans[i % 3],
            fields,
            "bench",
            0.0,
        )
        for i in range(events)
    )
    uvicorn.run(emulator.app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]),
                lifespan="off", log_level="warning", access_log=False)  # fmt: skip


async def bare(url: str, job_id: str) -> dict[str, float]:
    """The floor: httpx streaming, zlib, json.loads per line; nothing checked or normalised."""
    before = peak_rss_mib()
    started = time.perf_counter()
    count = 0
    headers = {"Authorization": f"Token {API_KEY}"}
    async with httpx.AsyncClient(timeout=60) as http:
        job = (
            await http.get(f"{url}/api/v1/analytics/exports/jobs/{job_id}", headers=headers)
        ).json()
        for link in job["presigned_urls"]:
            async with http.stream("GET", link["url"]) as response:
                inflate = zlib.decompressobj(wbits=31)
                rest = b""
                async for chunk in response.aiter_raw():
                    lines = (rest + inflate.decompress(chunk)).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        json.loads(line)
                        count += 1
                if rest.strip():
                    json.loads(rest)
                    count += 1
    return {"before_mib": before, "peak_mib": peak_rss_mib(),
            "seconds": time.perf_counter() - started, "events": count}  # fmt: skip


async def stream(url: str, job_id: str) -> dict[str, float]:
    """``client.export_events(job_id=...)``: every event normalised."""
    before = peak_rss_mib()
    started = time.perf_counter()
    count = 0
    async with client(url) as analytex:
        async for event in analytex.export_events(job_id=job_id):
            count += event["inserted_at"] is not None
    return {"before_mib": before, "peak_mib": peak_rss_mib(),
            "seconds": time.perf_counter() - started, "events": count}  # fmt: skip


async def table(url: str, job_id: str) -> dict[str, float]:
    """``client.export_table(job_id=...)`` of a Parquet export."""
    import pyarrow  # noqa: F401, PLC0415 - loaded before the baseline is taken

    async with client(url) as analytex:
        await analytex.get_export(job_id)  # the pool and the imports, before the baseline
        before = peak_rss_mib()
        started = time.perf_counter()
        result = await analytex.export_table(job_id=job_id)
    return {"before_mib": before, "peak_mib": peak_rss_mib(), "table_mib": result.nbytes / 2**20,
            "seconds": time.perf_counter() - started, "events": result.num_rows}  # fmt: skip


async def prepare(url: str, events: int) -> dict[str, str]:
    """Start the three exports and read every file once (the server renders it then)."""
    ids = {}
    async with client(url) as analytex:
        end_small = _EPOCH + dt.timedelta(seconds=min(_SMALL, events))
        end_all = _EPOCH + dt.timedelta(seconds=events)
        for name, end, kind in (("small", end_small, "ndjson"), ("all", end_all, "ndjson"),
                                ("parquet", end_all, "parquet")):  # fmt: skip
            export = await analytex.start_export(start=_EPOCH, end=end, format=kind)
            export = await analytex.wait_for_export(export)
            async with httpx.AsyncClient(timeout=300) as http:
                for file in export.files:
                    (await http.get(file.url)).raise_for_status()
            ids[name] = export.job_id
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--child", choices=["bare", "stream", "table"], help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.events)
        return 0
    if args.child is not None:
        work = {"bare": bare, "stream": stream, "table": table}[args.child]
        print(json.dumps(anyio.run(work, args.url, args.job)))
        return 0

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from _net import free_port, wait_for_port  # noqa: PLC0415

    print(f"Exports over loopback from a served emulator; {describe_machine()}\n")
    port = free_port()
    server = subprocess.Popen(  # our own script
        [sys.executable, __file__, "--serve", "--events", str(args.events)],
        env={**os.environ, "BENCH_PORT": str(port)},
    )
    try:
        wait_for_port(port, timeout=600, process=server)
        url = f"http://127.0.0.1:{port}"
        ids = anyio.run(prepare, url, args.events)
        runs: dict[str, dict[str, float]] = {}
        for name, kind, job in (("bare all", "bare", "all"), ("stream all", "stream", "all"),
                                ("bare small", "bare", "small"),
                                ("stream small", "stream", "small")):  # fmt: skip
            tries = [
                run_child(__file__, ["--child", kind, "--url", url, "--job", ids[job]], 1800)
                for _ in range(2)
            ]
            runs[name] = min(tries, key=lambda run: run["seconds"])
            runs[name]["peak_mib"] = max(run["peak_mib"] for run in tries)
        runs["table"] = run_child(
            __file__, ["--child", "table", "--url", url, "--job", ids["parquet"]], 1800
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)

    small = min(_SMALL, args.events)
    out = Table(["run", "events", "seconds", "events/s", "peak RSS MiB", "figure", "target"])
    for name in ("bare small", "stream small", "bare all", "stream all"):
        run = runs[name]
        expected = args.events if name.endswith(" all") else small
        out.add(name, f"{int(run['events']):,}", f"{run['seconds']:.2f}",
                f"{run['events'] / run['seconds']:,.0f}", f"{run['peak_mib']:.1f}", "", "",
                met=None if name.startswith("bare") else
                int(run["events"]) == expected)  # fmt: skip
    stream_all = runs["stream all"]
    out.add("export_events peak RSS", "", "", "", f"{stream_all['peak_mib']:.1f}",
            f"{stream_all['peak_mib']:.1f} MiB", f"<= {RSS_LIMIT_MIB:.0f} MiB",
            met=stream_all["peak_mib"] <= RSS_LIMIT_MIB)  # fmt: skip
    flat = stream_all["peak_mib"] / runs["stream small"]["peak_mib"]
    out.add("export_events RSS 1M / 100k", "", "", "", "", f"{flat:.3f}x",
            f"<= {FLAT_RATIO}x", met=flat <= FLAT_RATIO)  # fmt: skip
    ratio = stream_all["seconds"] / runs["bare all"]["seconds"]
    out.add("export_events time / bare", "", "", "", "", f"{ratio:.2f}x",
            f"<= {TIME_RATIO}x", met=ratio <= TIME_RATIO)  # fmt: skip
    tab = runs["table"]
    growth = tab["peak_mib"] - tab["before_mib"]
    out.add("export_table (Parquet)", f"{int(tab['events']):,}", f"{tab['seconds']:.2f}",
            f"{tab['events'] / tab['seconds']:,.0f}", f"{tab['peak_mib']:.1f}",
            f"+{growth:.1f} MiB for a {tab['table_mib']:.1f} MiB table "
            f"({growth / tab['table_mib']:.2f}x)",
            f"<= {TABLE_RATIO}x", met=growth <= TABLE_RATIO * tab["table_mib"])  # fmt: skip
    out.print()
    return verdict(out.ok)


if __name__ == "__main__":
    sys.exit(main())
