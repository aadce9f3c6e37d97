"""An emulator in a process of its own, for tests that fork, switch event loops or span processes.

The server must outlive the event loops (and processes) the tests run clients in, and a test
that forks must not have a server thread in its own process, so the emulator runs as
``python -m tests.delivery._emulator_process PORT RESULT_JSON [OPTIONS]`` from the repository
root. On SIGINT it stops and writes what it saw to ``RESULT_JSON``: every request (path, status,
records) and, over every account, the users and the events.

Options: ``--realtime N`` (real-time requests a minute per key, ``0`` for no limit),
``--rows N`` (bulk rows a minute), ``--slow PATH=SECONDS`` (every request to PATH waits first;
repeatable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests._net import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@attrs.define
class Seen:
    """What the emulator process stored and answered, read after it stopped."""

    requests: list[dict[str, Any]]
    users: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]

    def statuses(self, path: str | None = None) -> list[int | None]:
        return [r["status"] for r in self.requests if path is None or r["path"] == path]


@attrs.define
class EmulatorProcess:
    """A running emulator process; ``seen`` is filled in once it stopped."""

    port: int
    process: subprocess.Popen[str]
    result: Path
    seen: Seen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> Seen:
        if self.seen is not None:
            return self.seen
        if self.process.poll() is None:
            # SIGINT: uvicorn stops gracefully and re-raises it; the result is written on the way.
            self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=20)
        if not self.result.exists():
            pytest.fail(f"the emulator process wrote no result: {err}")
        data = json.loads(self.result.read_text())
        self.seen = Seen(data["requests"], data["users"], data["events"])
        return self.seen


def answers(base_url: str) -> bool:
    try:
        httpx.get(f"{base_url}/_emulator/jobs", timeout=2)
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def emulator_process(
    directory: Path,
    *,
    port: int | None = None,
    realtime: int = 600,
    rows: int = 1200,
    slow: dict[str, float] | None = None,
) -> Iterator[EmulatorProcess]:
    """Start an emulator process, wait until it answers HTTP, stop it after the block."""
    port = port if port is not None else free_port()
    result = directory / f"emulator-{port}.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.delivery._emulator_process", str(port), str(result)]
    command += ["--realtime", str(realtime), "--rows", str(rows)]
    for path, seconds in (slow or {}).items():
        command += ["--slow", f"{path}={seconds}"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = EmulatorProcess(port, process, result)
    try:
        base_url = running.base_url
        if not wait_until(lambda: answers(base_url), process=process):
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the emulator process did not start: {err}")
        yield running
    finally:
        if process.poll() is None and running.seen is None:
            running.stop()


def main(argv: list[str]) -> None:
    from analytex_async.emulator import Emulator, run  # noqa: PLC0415 -- the child's own import

    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("result")
    parser.add_argument("--realtime", type=int, default=600)
    parser.add_argument("--rows", type=float, default=1200)
    parser.add_argument("--slow", action="append", default=[])
    args = parser.parse_args(argv)
    emulator = Emulator(
        rows_per_minute=args.rows, realtime_requests_per_minute=args.realtime or None
    )
    for rule in args.slow:
        path, seconds = rule.split("=")
        emulator.faults.add(path, delay=float(seconds), times=None)
    try:
        run(port=args.port, emulator=emulator, log_level="warning")
    finally:
        users = {
            user_id: {"metadata": user.metadata, "company_id": user.company_id}
            for account in emulator.accounts
            for user_id, user in account.users.items()
        }
        events = [
            {"user_id": event.user_id, "event_name": event.event_name, "metadata": event.metadata}
            for account in emulator.accounts
            for event in account.events
        ]
        requests = [
            {"path": r.path, "status": r.status, "records": r.records, "time": r.time}
            for r in emulator.requests
        ]
        Path(args.result).write_text(
            json.dumps({"requests": requests, "users": users, "events": events})
        )


if __name__ == "__main__":
    main(sys.argv[1:])
