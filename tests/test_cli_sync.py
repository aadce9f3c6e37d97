"""``analytex-async sync users|companies FILE --state PATH``, against an emulator on a socket.

The served emulator and the in-process runner are ``test_cli``'s fixtures; two processes on one
state file run as real subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from analytex_async import SQLiteSyncState
from analytex_async.cli._commands import cli
from analytex_async.cli._report import ImportReport
from analytex_async.cli._summary import print_summary

from ._net import wait_until
from .test_cli import (  # the module's served emulator and runner
    TERMINAL_HINTS,
    Served,
    key,
    one_error_line,
    run,
    served,
    users,
    write_ndjson,
)

__all__ = ["key", "run", "served"]  # fixtures, used by name

QUICK = ("--rows-per-minute", "600000")


def summary_counts(stdout: str) -> dict[str, int]:
    """The sync section's counts: ``{"new": 3, "changed": 1, ...}``."""
    section = stdout.split("Sync against", 1)[1]
    return {
        name: int(number.replace(",", ""))
        for name, number in re.findall(r"^\s+(\w+)\s+([\d,]+)", section, re.MULTILINE)
    }


def test_a_second_sync_sends_only_what_changed_and_says_so(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    state = tmp_path / "users.sqlite"
    first = run("sync", "users", str(write_ndjson(tmp_path / "a.ndjson", users(50))),
                "--state", str(state), *QUICK)  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "sent       50 rows in 1 batch" in first.stdout
    assert summary_counts(first.stdout) == {
        "new": 50, "changed": 0, "unchanged": 0, "missing": 0, "deleted": 0, "rejected": 0,
    }  # fmt: skip

    records = users(52)
    records[7]["metadata"] = {"n": 700}
    second = run("sync", "users", str(write_ndjson(tmp_path / "b.ndjson", records)),
                 "--state", str(state), *QUICK)  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "sent       3 rows in 1 batch" in second.stdout
    assert summary_counts(second.stdout) == {
        "new": 2, "changed": 1, "unchanged": 49, "missing": 0, "deleted": 0, "rejected": 0,
    }  # fmt: skip
    assert served.account(key).users["u7"].metadata == {"n": 700}
    assert key not in second.stdout + second.stderr


def test_delete_missing_full_and_the_json_summary(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    state = tmp_path / "users.sqlite"
    source = write_ndjson(tmp_path / "a.ndjson", users(20))
    assert run("sync", "users", str(source), "--state", str(state), *QUICK).exit_code == 0
    fewer = write_ndjson(tmp_path / "b.ndjson", users(15))
    result = run("sync", "users", str(fewer), "--state", str(state), "--full",
                 "--delete-missing", "--json", *QUICK)  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["rows_sent"] == 15
    assert body["sync"] == {
        "state": str(state), "new": 0, "changed": 0, "unchanged": 15, "missing": 5,
        "deleted": 5, "rejected": 0,
    }  # fmt: skip
    assert sorted(served.account(key).users) == sorted(f"u{i}" for i in range(15))


def test_the_summary_of_a_sync_is_titled_synced(run: Callable[..., Result], tmp_path: Path) -> None:
    source = write_ndjson(tmp_path / "a.ndjson", users(3))
    result = run("sync", "users", str(source), "--state", str(tmp_path / "s.sqlite"), *QUICK)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Synced users from {source}")
    assert "Imported" not in result.stdout


@pytest.mark.parametrize(
    ("stopped", "title"),
    [
        ({"error": "the API is down"}, "Stopped: sync of users from a.ndjson"),
        ({"error": "interrupted", "interrupted": True}, "Interrupted: sync of users from a.ndjson"),
        ({}, "Synced users from a.ndjson"),
    ],
)
def test_a_sync_summary_names_the_sync_however_it_ended(
    stopped: dict[str, Any], title: str
) -> None:
    out = io.StringIO()
    report = ImportReport(
        what="users", source="a.ndjson", rows_read=1, rows_sent=1, rows_rejected=0,
        rejected=[], jobs=[], batches=1, elapsed=0.5, action="sync", **stopped,
    )  # fmt: skip
    print_summary(Console(file=out, width=120), report, rejects=None, redact=str)
    assert out.getvalue().startswith(title)


def test_rejected_records_exit_1_and_count_as_present(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    state = tmp_path / "users.sqlite"
    assert run("sync", "users", str(write_ndjson(tmp_path / "a.ndjson", users(5))),
               "--state", str(state), *QUICK).exit_code == 0  # fmt: skip
    records = [*users(5), {"user_id": ""}]
    records[2] = {"user_id": "u2", "metadata": {"n": [2]}}
    rejects = tmp_path / "rejects.ndjson"
    result = run("sync", "users", str(write_ndjson(tmp_path / "b.ndjson", records)),
                 "--state", str(state), "--delete-missing", "--rejects", str(rejects),
                 *QUICK)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert summary_counts(result.stdout) == {
        "new": 0, "changed": 0, "unchanged": 4, "missing": 0, "deleted": 0, "rejected": 2,
    }  # fmt: skip
    assert len(rejects.read_text(encoding="utf-8").splitlines()) == 2
    assert "u2" in served.account(key).users


def test_a_state_of_another_kind_is_a_usage_error(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    state = tmp_path / "users.sqlite"
    source = write_ndjson(tmp_path / "a.ndjson", users(2))
    assert run("sync", "users", str(source), "--state", str(state), *QUICK).exit_code == 0
    companies = write_ndjson(tmp_path / "c.ndjson", [{"company_id": "c1"}])
    result = run("sync", "companies", str(companies), "--state", str(state), *QUICK)
    assert result.exit_code == 2
    assert "holds users, not companies" in one_error_line(result)


def test_a_state_in_use_is_a_usage_error_and_sends_nothing(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    state = tmp_path / "users.sqlite"
    holder = SQLiteSyncState(state)

    async def hold_then_sync() -> Result:
        await holder.begin("user", "127.0.0.1")
        try:
            source = write_ndjson(tmp_path / "a.ndjson", users(2))
            return await anyio.to_thread.run_sync(
                lambda: run("sync", "users", str(source), "--state", str(state), *QUICK)
            )
        finally:
            await holder.end()

    result = anyio.run(hold_then_sync)
    assert result.exit_code == 2
    assert "in use by another sync" in one_error_line(result)
    assert not served.requests_of(key)


def test_sync_takes_no_journal_and_needs_a_state(tmp_path: Path) -> None:
    source = write_ndjson(tmp_path / "a.ndjson", users(1))
    runner = CliRunner()
    no_state = runner.invoke(cli, ["sync", "users", str(source)], env={"ANALYTEX_API_KEY": "k1"})
    assert no_state.exit_code == 2
    assert "--state" in no_state.stderr
    journal = runner.invoke(
        cli,
        ["sync", "users", str(source), "--state", str(tmp_path / "s"), "--journal", "j"],
        env={"ANALYTEX_API_KEY": "k1"},
    )
    assert journal.exit_code == 2
    assert "--journal" in journal.stderr


def test_help_lists_sync() -> None:
    result = CliRunner().invoke(cli, ["sync", "--help"])
    assert result.exit_code == 0
    assert re.search(r"^\s+users\s", result.stdout, re.MULTILINE)
    assert re.search(r"^\s+companies\s", result.stdout, re.MULTILINE)


# -- two processes on one state file --------------------------------------------------------------


def _held(path: Path) -> bool:
    """Whether a sync holds the state file: its WAL exists only while a run has it open.

    Looked at without opening the database, which would take a lock the sync may need.
    """
    return Path(f"{path}-wal").exists()


def test_two_processes_on_one_state_file_the_second_fails_clearly_the_first_finishes(
    served: Served, key: str, tmp_path: Path
) -> None:
    state = tmp_path / "users.sqlite"
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_HINTS}
    env.update(ANALYTEX_API_KEY=key, ANALYTEX_BASE_URL=served.url)
    command = [sys.executable, "-m", "analytex_async", "sync", "users"]
    # The first reads its records from stdin: it holds the state until its input ends.
    first = subprocess.Popen(
        [*command, "-", "--state", str(state), *QUICK],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: _held(state), process=first), first.communicate()
        source = write_ndjson(tmp_path / "a.ndjson", users(10))
        second = subprocess.run(
            [*command, str(source), "--state", str(state), *QUICK],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 2, second.stderr
        assert "in use by another sync" in second.stderr
        assert "Traceback" not in second.stderr
        lines = "".join(json.dumps(r) + "\n" for r in users(10)).encode()
        stdout, stderr = first.communicate(lines, timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, stderr.decode()
    assert summary_counts(stdout.decode())["new"] == 10
    # The state is whole: a third run finds every record unchanged and sends nothing.
    third = subprocess.run(
        [*command, str(source), "--state", str(state), *QUICK],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert third.returncode == 0, third.stderr
    assert summary_counts(third.stdout)["unchanged"] == 10
    assert "sent       0 rows" in third.stdout
