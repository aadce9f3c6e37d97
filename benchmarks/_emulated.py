"""The emulator served by uvicorn in its own process, with an outage plan and a report.

Run as a script it serves ``analytex_async.emulator`` at ``--rate`` real-time requests a minute
per endpoint and ``--rows`` bulk rows a minute, prints its base URL on the first line of stdout,
and serves until its stdin closes (``ServerProcess``). With ``--outage SECONDS`` it answers every
API request (``/v1/...``) with 503 from the first request on, for that many seconds, then
recovers (a fault of the emulator's own fault injection, removed when the time is up): an outage
that starts when the client under test starts sending.

Once stopped it writes a JSON report to ``--report``: the requests per ``"METHOD /path"`` and
status, the 429s (and those that arrived after the outage ended), the outage's start and end
and the arrival of the last answered request, on the machine's monotonic clock (the clock an
asyncio loop reads: another process's ``time.monotonic()`` can be compared with it), and what
the account of ``--key`` stored: each user's metadata, and its tracks in arrival order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from _sink import ServerProcess, stdin_closed

MAX_SERVE_SECONDS = 1800.0
OUTAGE_STATUS = 503


class Outage:
    """A 503 for every API request from the first one on, for ``seconds``, then recovery."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None
        self.ended: float | None = None

    async def run(self, emulator: Any) -> None:
        fault = emulator.faults.add(re.compile(r"/v1/.*"), status=OUTAGE_STATUS, times=None)
        while not fault.hits:  # noqa: ASYNC110 -- the emulator tells nobody of a hit
            await anyio.sleep(0.002)
        self.started = time.monotonic()
        await anyio.sleep(self.seconds)
        emulator.faults.remove(fault)
        self.ended = time.monotonic()


def report(emulator: Any, key: str, outage: Outage | None) -> dict[str, Any]:
    """What the emulator saw and stored (see the module docstring)."""
    summary: dict[str, dict[str, int]] = {}
    ended = outage.ended if outage is not None and outage.ended is not None else -1.0
    too_many = too_many_after = 0
    last_answer = None
    for request in emulator.requests:
        counts = summary.setdefault(f"{request.method} {request.path}", {})
        status = str(request.status)
        counts[status] = counts.get(status, 0) + 1
        if request.status == 429:
            too_many += 1
            too_many_after += request.time >= ended
        if request.status is not None and 200 <= request.status < 300:
            last_answer = request.time
    account = emulator.account(key)
    return {
        "requests": summary,
        "too_many": too_many,
        "too_many_after": too_many_after,
        "outage": None if outage is None else [outage.started, outage.ended],
        "last_answer": last_answer,
        "jobs": len(account.jobs),
        "users": {user_id: user.metadata for user_id, user in account.users.items()},
        "events": [[e.user_id, e.event_name, e.metadata] for e in account.events],
    }


async def serve_emulator(args: argparse.Namespace) -> None:
    from analytex_async.emulator import Emulator, serve  # noqa: PLC0415  # the child only

    emulator = Emulator(
        realtime_requests_per_minute=args.rate,
        rows_per_minute=args.rows,
        request_log_limit=None,
    )
    outage = Outage(args.outage) if args.outage else None
    async with serve(emulator) as url, anyio.create_task_group() as tasks:
        if outage is not None:
            tasks.start_soon(outage.run, emulator)
        print(url, flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin_closed(), MAX_SERVE_SECONDS)
        tasks.cancel_scope.cancel()
    # The server has stopped: nothing else runs on this loop, so a blocking write is fine.
    Path(args.report).write_text(json.dumps(report(emulator, args.key, outage)))  # noqa: ASYNC240


class EmulatorProcess(ServerProcess):
    """The emulator in a child process; ``report()`` reads its report once it stopped.

    Args:
        directory: Where the report is written.
        name: The report's name.
        key: The API key whose store the report holds.
        rate: Real-time requests a minute per endpoint.
        rows: Bulk rows a minute.
        outage: Seconds of 503s from the first request on (0: none).
    """

    def __init__(
        self, directory: Path, name: str, key: str, rate: int, rows: int, outage: float = 0.0
    ) -> None:
        self.report_path = directory / f"{name}-report.json"
        super().__init__(
            [
                sys.executable,
                __file__,
                *("--rate", str(rate), "--rows", str(rows), "--outage", str(outage)),
                *("--key", key, "--report", str(self.report_path)),
            ]
        )

    def __enter__(self) -> EmulatorProcess:
        super().__enter__()
        return self

    def report(self) -> dict[str, Any]:
        """The report (after the ``with`` block)."""
        return dict(json.loads(self.report_path.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--outage", type=float, default=0.0)
    parser.add_argument("--key", required=True)
    parser.add_argument("--report", required=True)
    asyncio.run(serve_emulator(parser.parse_args()))


if __name__ == "__main__":
    main()
