"""End-to-end throughput against the emulator, one job at a time at rate R, the client also at R.

The emulator (``analytex_async.emulator``, served by uvicorn in its own process) processes one
bulk job at a time at ``R`` rows a minute, as the real API does; the client is
``AsyncAnalytex(rows_per_minute=R)``. The import of ``--rows`` generated users in batches of
10,000 is timed from the call until it returns with every job completed. The figure is rows
completed by the server / elapsed, against R; the target is >= 98% of R.

Every batch costs more than its processing time: the upload and the server's parsing happen
while no job runs (the server takes the next job only after the previous one ended), and the
client learns that a job ended only when it polls. The jobs' own times (``start_time`` and
``end_time``) show how long the server sat idle between jobs, which the table reports too. The
client's part is the time from a job's end to the next upload: its polls are aimed at the job's
expected completion (sdk.md, "Job waits"). A miss is reported with where the time went: the
emulator parsing each upload while no job runs, the client noticing job ends, and the client
building the first batch before anything can run.

The default R is 60,000 rows a minute (a 10,000-row job takes 10 s): fast enough to run in under
a minute, slow enough that the emulator's own per-upload work (~0.3 s to receive and parse
10,000 lines while no job runs) weighs on a job about as it would at a real rate. At the real
API's 1,200 rows a minute a job takes 500 s and that overhead is below 0.1%. At R = 600,000
(1 s jobs) the emulator's per-upload cost alone caps the figure near 75%.

Usage: ``python benchmarks/bench_end_to_end.py [--rate R] [--rows N]``. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from _sink import ServerProcess, stdin_closed
from _table import Table, verdict
from _workload import API_KEY, BATCH, describe_machine, user_rows

from analytex_async import AsyncAnalytex, Job, JobStatus

TARGET_SHARE = 0.98
MAX_SERVE_SECONDS = 1800.0
"""The emulator process stops by itself after this long, whatever happens to its parent."""


async def serve_emulator(rate: float) -> None:
    """Serve an emulator at ``rate`` rows a minute until stdin closes (the parent's signal)."""
    from analytex_async.emulator import Emulator, serve  # noqa: PLC0415  # child only

    emulator = Emulator(rows_per_minute=rate, realtime_requests_per_minute=None)
    async with serve(emulator) as url:
        print(url, flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin_closed(), MAX_SERVE_SECONDS)


def _moment(job: Job, field: str) -> dt.datetime:
    value = job.raw.get(field)
    if not isinstance(value, str):
        raise TypeError(f"job {job.job_id} has no {field}: {job.raw!r:.200}")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class RequestLog:
    """httpx event hooks that record when each request started and when its answer came."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.requests: list[tuple[str, float, float]] = []

    async def on_request(self, request: httpx.Request) -> None:
        self.started[id(request)] = time.time()

    async def on_response(self, response: httpx.Response) -> None:
        started = self.started.pop(id(response.request))
        self.requests.append((response.request.method, started, time.time()))

    def posts(self) -> list[tuple[float, float]]:
        """(start, answer) of every POST, in order, as Unix times."""
        return [(start, end) for method, start, end in self.requests if method == "POST"]


async def run_import(
    url: str, rate: float, rows: int
) -> tuple[float, float, list[Job], RequestLog]:
    """Import ``rows`` users at ``rate``.

    Returns:
        The call's start (a Unix time), the elapsed seconds, the jobs and the requests.
    """
    log = RequestLog()
    hooks: dict[str, list[Callable[..., Any]]] = {
        "request": [log.on_request],
        "response": [log.on_response],
    }
    async with (
        httpx.AsyncClient(timeout=30.0, event_hooks=hooks) as http,
        AsyncAnalytex(API_KEY, base_url=url, rows_per_minute=rate, http_client=http) as analytex,
    ):
        called = time.time()
        started = time.perf_counter()
        result = await analytex.import_users(user_rows(rows), batch_size=BATCH)
        elapsed = time.perf_counter() - started
        jobs = await analytex.list_jobs()
    if result.rows_sent != rows:
        raise RuntimeError(f"sent {result.rows_sent:,} of {rows:,} rows")
    return called, elapsed, sorted(jobs, key=lambda job: _moment(job, "start_time")), log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60_000.0, help="rows per minute")
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--serve-emulator", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator is not None:
        asyncio.run(serve_emulator(args.serve_emulator))
        return 0

    rate, rows = args.rate, args.rows
    per_batch = BATCH * 60 / rate
    print(
        f"Emulator and client at R = {rate:,.0f} rows/min ({per_batch:g} s per {BATCH:,}-row "
        f"job), {rows:,} users, {-(-rows // BATCH)} batches; {describe_machine()}\n"
    )
    command = [sys.executable, __file__, "--serve-emulator", str(rate)]
    with ServerProcess(command) as emulator:
        called, elapsed, jobs, log = anyio.run(run_import, emulator.url, rate, rows)

    completed = sum(job.completed_rows or 0 for job in jobs if job.status is JobStatus.COMPLETED)
    achieved = completed / elapsed * 60
    share = achieved / rate
    gaps = [
        (_moment(later, "start_time") - _moment(earlier, "end_time")).total_seconds()
        for earlier, later in itertools.pairwise(jobs)
    ]
    busy = sum(
        (_moment(job, "end_time") - _moment(job, "start_time")).total_seconds() for job in jobs
    )

    # Each idle gap = the client noticing the previous job ended (its poll, and the GET that
    # sees it) + the next upload until the server accepts it (sending and parsing the batch).
    every_post = log.posts()
    posts = every_post[1:]
    noticing = [
        start - _moment(job, "end_time").timestamp()
        for (start, _), job in zip(posts, jobs, strict=False)
    ]
    uploading = [end - start for start, end in posts]
    first_batch = every_post[0][0] - called

    table = Table(["figure", "ours", "comparison", "ratio", "target"])
    table.add(
        "throughput, rows/min",
        f"{achieved:,.0f}",
        f"R = {rate:,.0f}",
        f"{share:.1%}",
        f">= {TARGET_SHARE:.0%} of R",
        met=share >= TARGET_SHARE and completed == rows,
    )
    table.add("rows completed by the server", f"{completed:,}", f"{rows:,} sent", "", "")
    table.add(
        "elapsed, s",
        f"{elapsed:.2f}",
        f"{rows * 60 / rate:.2f} at R",
        f"{elapsed / (rows * 60 / rate):.3f}x",
        "",
    )
    table.add("server busy processing jobs, s", f"{busy:.2f}", "", f"{busy / elapsed:.1%}", "")
    if gaps:
        table.add(
            "server idle between jobs, ms (mean)",
            f"{statistics.mean(gaps) * 1000:.0f}",
            f"{per_batch * 1000:.0f} per job",
            f"{statistics.mean(gaps) / per_batch:.1%}",
            "",
        )
        table.add("server idle between jobs, ms (max)", f"{max(gaps) * 1000:.0f}", "", "", "")
        table.add(
            "  job end -> next upload starts, ms (mean)",
            f"{statistics.mean(noticing) * 1000:.0f}",
            "",
            "",
            "",
        )
        table.add(
            "  upload until accepted, ms (mean)",
            f"{statistics.mean(uploading) * 1000:.0f}",
            "",
            "",
            "",
        )
    table.add("  call -> first upload starts, ms", f"{first_batch * 1000:.0f}", "", "", "")
    table.print()
    if not table.ok:
        first_upload = every_post[0][1] - every_post[0][0]
        lost = {
            "the emulator receiving and parsing uploads while no job runs": sum(uploading)
            + first_upload,
            "the client noticing job ends (its polls)": sum(noticing),
            "the client building the first batch": first_batch,
        }
        causes = "; ".join(f"{what} {seconds / elapsed:.1%}" for what, seconds in lost.items())
        print(f"\nmissed: {1 - share:.1%} of the elapsed time went to: {causes}")
    return verdict(table.ok)


if __name__ == "__main__":
    sys.exit(main())
