"""Every program in examples/ runs as a user runs it, against an emulator on a loopback port.

Each example starts as ``python examples/<name>.py`` in a child process, in a temporary working
directory, with ``ANALYTEX_API_KEY`` and ``ANALYTEX_BASE_URL`` pointing at an emulator served
by this process (on its own asyncio loop, in a thread). The tests then check what the emulator
stored, through its ``/_emulator/`` inspection routes, as a person would, and what the program
printed. The emulator processes 6,000,000 rows a minute, so waiting for a job costs nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest

from analytex_async.emulator import Emulator, serve

from ._net import free_port, wait_for_port
from .redis_server import running_redis

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
API_KEY = "examples-key"


@dataclass
class Served:
    """An emulator served on 127.0.0.1, and the environment a program needs to reach it."""

    emulator: Emulator
    url: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "ANALYTEX_API_KEY": API_KEY, "ANALYTEX_BASE_URL": self.url}

    def inspect(self, path: str) -> Any:
        response = httpx.get(f"{self.url}/_emulator/{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def statuses(self) -> list[int | None]:
        return [request.status for request in self.emulator.requests]


@pytest.fixture
def served() -> Iterator[Served]:
    emulator = Emulator(rows_per_minute=6_000_000)
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator)) as url,
    ):
        yield Served(emulator, url)


def run_example(
    name: str, *args: str, served: Served, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env={**served.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def web_app(name: str, served: Served, cwd: Path) -> Iterator[tuple[str, list[str]]]:
    """The app serving on a free port; at exit, SIGTERM and wait: its output in the list."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name), "--port", str(port)],
        cwd=cwd,
        env=served.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        if not wait_for_port(port, process=process, timeout=60):
            process.kill()
            pytest.fail(f"{name} did not start: {process.communicate()[0]}")
        yield f"http://127.0.0.1:{port}", output
    finally:
        process.send_signal(signal.SIGTERM)  # as a deploy stops it: the shutdown runs
        output.append(process.communicate(timeout=60)[0])
    # uvicorn ends by re-raising the signal it handled; aiohttp returns normally.
    assert process.returncode in (0, -signal.SIGTERM), output[0]


def test_the_fastapi_app_delivers_logins_in_the_background_and_flushes_at_shutdown(
    served: Served, tmp_path: Path
) -> None:
    with web_app("fastapi_app.py", served, tmp_path) as (url, output):
        body = {"plan": "pro", "company_id": "company_001"}
        for user_id in ("user_001", "user_002"):
            response = httpx.post(f"{url}/login/{user_id}", json=body, timeout=10)
            assert response.json() == {"status": "ok"}
        stats = httpx.get(f"{url}/analytex/stats", timeout=10).json()
        assert stats["queued"] == 4
        refused = httpx.post(f"{url}/login/%20", json={}, timeout=10)  # a blank user id
        assert refused.status_code == 422  # ValidationError in the handler, nothing queued
        assert "user_id" in refused.json()["detail"]
    assert "Analytex delivery at shutdown" in output[0]
    assert "'delivered': 4" in output[0]
    for user_id in ("user_001", "user_002"):
        user = served.inspect(f"users/{user_id}")
        assert (user["metadata"], user["company_id"]) == ({"plan": "pro"}, "company_001")
    logged_in = [e["user_id"] for e in served.inspect("events") if e["event_name"] == "Logged In"]
    assert sorted(logged_in) == ["user_001", "user_002"]
    assert "'spilled': 0" in output[0]  # nothing was left for the outbox


def test_the_aiohttp_app_delivers_logins_in_the_background_and_flushes_at_shutdown(
    served: Served, tmp_path: Path
) -> None:
    with web_app("aiohttp_app.py", served, tmp_path) as (url, output):
        response = httpx.post(f"{url}/login/user_001", params={"plan": "free"}, timeout=10)
        assert response.json() == {"status": "ok"}
    assert "'delivered': 2" in output[0]
    assert served.inspect("users/user_001")["metadata"] == {"plan": "free"}
    assert [e["event_name"] for e in served.inspect("events")] == ["Logged In"]


def documented_curls(text: str, port: int) -> list[list[str]]:
    """The ``curl`` commands in ``text`` that call the app on ``port``, as argument lists."""
    commands = []
    for command in re.findall(r"^\s*(curl (?:[^\n]*\\\n)*[^\n]*)", text, re.MULTILINE):
        words = shlex.split(command.replace("\\\n", " "))
        if any(
            word.startswith(f"localhost:{port}") or f"//localhost:{port}" in word for word in words
        ):
            commands.append(words)
    return commands


def run_curl(words: list[str], url: str) -> httpx.Response:
    """What ``curl`` does with these arguments (the options the docs use), against ``url``."""
    method, headers, body, target = "GET", {}, None, ""
    options = iter(words[1:])
    for word in options:
        if word == "-X":
            method = next(options)
        elif word == "-H":
            name, _, value = next(options).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(options)
            method = "POST" if method == "GET" else method
        elif word.startswith("-"):
            raise AssertionError(f"curl option {word} is not understood here: {words}")
        else:
            target = word
    path = target.split("localhost:8080", 1)[1]
    return httpx.request(method, url + path, headers=headers, content=body, timeout=10)


def test_the_fastapi_signup_app_the_docs_show_awaits_its_calls(
    served: Served, tmp_path: Path
) -> None:
    with web_app("fastapi_signup.py", served, tmp_path) as (url, _):
        response = httpx.post(f"{url}/signup/user_001", timeout=10)
        assert response.json() == {"status": "ok"}
        # Awaited calls: stored before the answer came back.
        assert served.inspect("users/user_001")["metadata"] == {"plan": "free"}
    assert [e["event_name"] for e in served.inspect("events")] == ["Signed Up"]


@pytest.mark.parametrize("name", ["fastapi_app.py", "aiohttp_app.py", "fastapi_signup.py"])
def test_the_curl_commands_the_docs_give_for_an_app_work_as_written(
    name: str, served: Served, tmp_path: Path
) -> None:
    """Each ``curl`` of the app's docstring, and of examples/README.md, as a reader types it."""
    docs = (EXAMPLES / name).read_text(encoding="utf-8")
    if name == "fastapi_app.py":  # the README runs the FastAPI app
        docs += (EXAMPLES / "README.md").read_text(encoding="utf-8")
    curls = documented_curls(docs, 8080)
    assert any("-X" in words for words in curls), curls
    with web_app(name, served, tmp_path) as (url, _):
        for words in curls:
            response = run_curl(words, url)
            assert response.status_code == 200, (words, response.text)
            if "/login/" in " ".join(words):
                assert response.json() == {"status": "ok"}


def write_users(path: Path, ids: range) -> None:
    lines = (json.dumps({"user_id": f"u{i}", "metadata": {"n": i}}) for i in ids)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_two_redis_workers_share_the_queue_and_one_budget(served: Served, tmp_path: Path) -> None:
    files = []
    for number in range(4):
        files.append(tmp_path / f"users-{number}.ndjson")
        write_users(files[-1], range(number * 5, number * 5 + 5))
    with running_redis(tmp_path) as redis:
        env = {"REDIS_URL": redis.url}
        queued = run_example(
            "worker_redis.py", "--enqueue", *map(str, files), served=served, cwd=tmp_path, env=env
        )
        assert queued.returncode == 0, queued.stderr
        command = [sys.executable, str(EXAMPLES / "worker_redis.py"), "--idle-exit", "1"]
        workers = [
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env={**served.env, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    printed = "".join(out for out, _ in outputs)
    assert sorted(line.split(": ")[1] for line in printed.splitlines()) == sorted(map(str, files))
    assert printed.count("5 sent") == 4
    for i in range(20):
        assert served.inspect(f"users/u{i}")["metadata"] == {"n": i}
    # One job at a time across both processes: the shared slot kept every submit from a 409.
    assert 409 not in served.statuses()
    assert len(served.inspect("jobs")) == 4


def test_the_nightly_sync_sends_only_what_changed(served: Served, tmp_path: Path) -> None:
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    export = tmp_path / "users.parquet"

    def nightly(table: dict[str, list[Any]], *options: str) -> str:
        parquet.write_table(pyarrow.table(table), export)
        done = run_example(
            "nightly_sync_parquet.py", str(export), "--state", "state.sqlite", *options,
            served=served, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = {"user_id": ["u1", "u2", "u3"], "plan": ["pro", "free", None]}
    assert "3 new, 0 changed, 0 unchanged" in nightly(first)
    assert (tmp_path / "state.sqlite").exists()
    second = {"user_id": ["u1", "u2"], "plan": ["pro", "pro"]}
    out = nightly(second, "--delete-missing")
    assert "0 new, 1 changed, 1 unchanged, 1 missing, 1 deleted, 0 rejected; 1 sent" in out
    assert served.inspect("users/u2")["metadata"] == {"plan": "pro"}
    assert httpx.get(f"{served.url}/_emulator/users/u3", timeout=10).status_code == 404


EVENTS = [
    {"event_type": "track", "user_id": "u1", "event_name": "Signed Up",
     "inserted_at": "2024-07-28T08:55:35Z", "metadata": {"plan": "pro"}},
    {"event_type": "page_view", "user_id": "u1", "hostname": "app.example.com",
     "pathname": "/billing", "inserted_at": "2024-07-28 08:57:02"},
    {"event_type": "track", "user_id": "u2", "inserted_at": "2024-07-29T10:00:00Z"},  # no name
]  # fmt: skip


def test_the_events_backfill_imports_a_file_and_a_second_run_skips_it(
    served: Served, tmp_path: Path
) -> None:
    export = tmp_path / "events.ndjson"
    export.write_text("".join(json.dumps(event) + "\n" for event in EVENTS), encoding="utf-8")
    first = run_example("import_events.py", str(export), served=served, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # one rejected event
    assert "2 events imported, 0 already imported by an earlier run, 1 rejected" in first.stdout
    rejects = (tmp_path / "rejected-events.ndjson").read_text(encoding="utf-8")
    rejected = [json.loads(line) for line in rejects.splitlines()]
    assert [(r["position"], r["line"]) for r in rejected] == [(2, 3)]
    assert "event_name" in rejected[0]["reason"]
    stored = served.inspect("events")
    assert [(e["event_type"], e["user_id"]) for e in stored] == [
        ("track", "u1"),
        ("page_view", "u1"),
    ]
    assert stored[0]["metadata"] == {"plan": "pro"}

    again = run_example("import_events.py", str(export), served=served, cwd=tmp_path)
    assert "0 events imported, 2 already imported by an earlier run" in again.stdout
    assert len(served.inspect("events")) == 2


def test_exporting_a_month_to_parquet_writes_the_imported_events(
    served: Served, tmp_path: Path
) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")
    from analytex_async import AsyncAnalytex, Event  # noqa: PLC0415 - this test only

    november = dt.datetime(2026, 11, 3, 12, tzinfo=dt.timezone.utc)

    async def backfill() -> None:
        async with AsyncAnalytex(API_KEY, base_url=served.url) as client:
            events = [Event.track(f"u{i}", "report_opened", november, metadata={"n": i})
                      for i in range(3)]  # fmt: skip
            events.append(Event.page_view("u1", "app.example.com", "/", november))
            events.append(Event.track("u1", "late", november.replace(month=12)))  # outside
            assert (await client.import_events(events)).ok

    anyio.run(backfill)
    done = run_example(
        "export_to_parquet.py", "events.parquet", "--start", "2026-11-01", "--end", "2026-12-01",
        served=served, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4 events" in done.stdout
    assert "track: 3" in done.stdout
    assert "completed" in done.stderr
    table = parquet.read_table(tmp_path / "events.parquet")
    assert sorted(table.column("user_id").to_pylist()) == ["u0", "u1", "u1", "u2"]
    assert str(table.schema.field("inserted_at").type) == "timestamp[us, tz=UTC]"
