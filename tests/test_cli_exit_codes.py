"""Each exit status a script can act on, through the command line against an emulator.

0 success; 1 the work ran but records were rejected or a job failed; 2 usage or configuration
(a key the server refuses: see ``test_cli_emulator``); 3 the API could not be reached or kept
failing; 130 interrupted (``test_cli`` and ``test_cli_exit_status``). The emulator runs in a
background thread for the whole module, each test with its own key; retries here wait
milliseconds, not the real backoff's seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result

from analytex_async import AsyncAnalytex, RetryPolicy
from analytex_async.cli._app import Settings
from analytex_async.cli._commands import cli
from analytex_async.emulator import Emulator, serve

from ._net import free_port

FAST = 600_000
QUICK_RETRIES = RetryPolicy(max_retries=4, initial_delay=0.01, max_delay=0.02)
TERMINAL_HINTS = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[Emulator, str]]:
    served = Emulator(rows_per_minute=FAST)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(served)) as url,
    ):
        yield served, url


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's clients retry as usual (5 attempts), milliseconds apart."""
    make_client = Settings.client

    def client(self: Settings, **options: Any) -> AsyncAnalytex:
        return make_client(self, retry_policy=QUICK_RETRIES, **options)

    monkeypatch.setattr(Settings, "client", client)


def runner_for(url: str) -> Callable[..., Result]:
    key = f"sk_test_exit_{uuid.uuid4().hex}"

    def invoke(*args: str) -> Result:
        env: dict[str, str | None] = {
            "ANALYTEX_API_KEY": key,
            "ANALYTEX_BASE_URL": url,
            "ANALYTEX_REGION": None,
            **dict.fromkeys(TERMINAL_HINTS),
        }
        result = CliRunner().invoke(cli, list(args), env=env)
        assert "Traceback" not in result.output
        assert key not in result.output
        return result

    return invoke


@pytest.fixture
def run(emulator: tuple[Emulator, str]) -> Callable[..., Result]:
    return runner_for(emulator[1])


@pytest.fixture
def nothing_listening() -> Callable[..., Result]:
    return runner_for(f"http://127.0.0.1:{free_port()}")


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("analytex-async: error: "), lines[0]
    return lines[0]


def write_users(path: Path, *records: Any) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


EARLIER_REJECTS = '{"position": 7, "line": 8}\n{"position": 9, "line": 10}\n'


# -- 0 and 1 --------------------------------------------------------------------------------------


def test_an_import_that_sends_every_record_exits_0(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_users(tmp_path / "users.ndjson", {"user_id": "a"}, {"user_id": "b"})
    result = run("import", "users", str(source), "--rows-per-minute", str(FAST))
    assert result.exit_code == 0, result.output


def test_an_import_with_a_rejected_record_exits_1_and_replaces_the_rejects_file(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_users(tmp_path / "users.ndjson", {"user_id": "a"}, {"user_id": ""})
    rejects = tmp_path / "rejects.ndjson"
    rejects.write_text(EARLIER_REJECTS, encoding="utf-8")
    result = run("import", "users", str(source), "--rejects", str(rejects))
    assert result.exit_code == 1, result.output
    assert [json.loads(line)["position"] for line in rejects.read_text().splitlines()] == [1]
    assert not list(tmp_path.glob("*.partial"))


def test_a_failed_job_exits_1(
    run: Callable[..., Result], emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    emulator[0].fail_next_jobs(1, reason="disk full")
    source = write_users(tmp_path / "users.ndjson", {"user_id": "a"})
    assert run("import", "users", str(source)).exit_code == 1


# -- 3: the API could not be reached or kept failing ----------------------------------------------


def test_nothing_listening_exits_3_naming_the_url_it_tried(
    nothing_listening: Callable[..., Result], tmp_path: Path
) -> None:
    result = nothing_listening("jobs")
    assert result.exit_code == 3, result.output
    line = one_error_line(result)
    url = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert url is not None, line
    assert "connection refused after 5 attempts over" in line


def test_an_import_that_cannot_reach_the_api_exits_3_and_leaves_the_rejects_file(
    nothing_listening: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_users(tmp_path / "users.ndjson", {"user_id": ""}, {"user_id": "a"})
    rejects = tmp_path / "rejects.ndjson"
    rejects.write_text(EARLIER_REJECTS, encoding="utf-8")
    result = nothing_listening("import", "users", str(source), "--rejects", str(rejects))
    assert result.exit_code == 3, result.output
    assert "Stopped: import of users" in result.stdout
    assert "written to" not in result.stdout
    assert re.search(r"error: .*http://127\.0\.0\.1:\d+.*connection refused", result.stderr)
    # An abort is an interrupted run: the earlier file stays, the partial one is named.
    assert rejects.read_text(encoding="utf-8") == EARLIER_REJECTS
    (partial,) = tmp_path.glob("rejects.ndjson.*.partial")
    assert (
        f"{rejects} was left as it was; {partial} holds the 1 rejected record this run found"
        in (result.stderr)
    )
    assert json.loads(partial.read_text(encoding="utf-8"))["position"] == 0


def test_server_errors_after_the_retries_exit_3(
    run: Callable[..., Result], emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    fault = emulator[0].faults.add(re.compile(r"/v1/.*"), status=503, times=None)
    try:
        listed = run("jobs")
        source = write_users(tmp_path / "users.ndjson", {"user_id": "a"})
        imported = run("import", "users", str(source), "--json")
    finally:
        emulator[0].faults.remove(fault)
    assert listed.exit_code == 3, listed.output
    assert "503" in one_error_line(listed)
    assert imported.exit_code == 3, imported.output
    assert json.loads(imported.stdout)["error"] is not None


# As a shell runs it: a process of its own, where nothing configured logging (in process, pytest's
# handlers would catch what Python otherwise prints on stderr). Retries milliseconds apart.
CHILD = """
import sys

from analytex_async import RetryPolicy
from analytex_async.cli import main
from analytex_async.cli._app import Settings

make_client = Settings.client
quick = RetryPolicy(max_retries=4, initial_delay=0.01, max_delay=0.02)
Settings.client = lambda self, **options: make_client(self, retry_policy=quick, **options)
main(sys.argv[1:])
"""


def run_in_a_shell(*args: str) -> subprocess.CompletedProcess[str]:
    key = f"sk_test_exit_{uuid.uuid4().hex}"
    env = {**os.environ, "ANALYTEX_API_KEY": key}
    env.update({"ANALYTEX_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert key not in done.stderr + done.stdout
    return done


def test_an_error_is_one_line_on_stderr_with_no_retry_printed_before_it() -> None:
    done = run_in_a_shell("jobs")
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("analytex-async: error: GET http://127.0.0.1:")
    assert "connection refused after 5 attempts" in lines[0]


def test_verbose_shows_each_retry_on_a_line_of_its_own_before_the_error() -> None:
    lines = run_in_a_shell("-v", "jobs").stderr.splitlines()
    retries = [line for line in lines if line.startswith("analytex-async: warning: ")]
    assert len(retries) == 4, lines
    assert "GET /v1/background_jobs failed" in retries[0]
    assert "retry 1 of 4" in retries[0]
    assert lines[-1].startswith("analytex-async: error: ")
    assert len(lines) == 5, lines
    debug = run_in_a_shell("-vv", "jobs").stderr.splitlines()
    assert any(line.startswith("analytex-async: debug: ") for line in debug), debug


def test_an_aborted_run_without_rejections_leaves_the_file_and_says_so(
    nothing_listening: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_users(tmp_path / "users.ndjson", {"user_id": "a"})
    rejects = tmp_path / "rejects.ndjson"
    rejects.write_text(EARLIER_REJECTS, encoding="utf-8")
    result = nothing_listening("import", "users", str(source), "--rejects", str(rejects))
    assert result.exit_code == 3
    assert rejects.read_text(encoding="utf-8") == EARLIER_REJECTS
    assert not list(tmp_path.glob("*.partial"))
    assert f"{rejects} was left as it was (no rejected record was found)" in result.stderr


# -- 2: usage, in the command line's words --------------------------------------------------------


def test_a_file_of_unknown_format_names_the_option_not_the_keyword(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = tmp_path / "users.txt"
    source.write_text('{"user_id": "a"}\n', encoding="utf-8")
    rejects = tmp_path / "rejects.ndjson"
    rejects.write_text(EARLIER_REJECTS, encoding="utf-8")
    for dry_run in ((), ("--dry-run",)):
        result = run("import", "users", str(source), "--rejects", str(rejects), *dry_run)
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert "--format ndjson or --format csv" in line
        assert "format=" not in line
        assert "field 'source'" not in line
        assert rejects.read_text(encoding="utf-8") == EARLIER_REJECTS
    assert not list(tmp_path.glob("*.partial"))
