"""The ``analytex-async`` commands, run against an emulator served on a loopback socket.

The emulator runs in a background thread (its own asyncio loop, through an anyio blocking
portal) for the whole module; each test uses its own API key, so its own account. Commands run
in process through click's ``CliRunner``; Ctrl-C is tested in a subprocess.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import CliRunner, Result

from analytex_async import AsyncAnalytex
from analytex_async.cli._commands import cli
from analytex_async.emulator import Account, Emulator, serve

from ._net import wait_until

FAST = 600_000  # rows a minute: jobs of a few rows complete in milliseconds
QUICK = ("--rows-per-minute", str(FAST))  # and the client keeps to the same pace
# Variables that make rich draw for a terminal even into a pipe: the tests read plain output.
TERMINAL_HINTS = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


class Served:
    """The module's emulator, its URL, and a way to look at it from the test's thread."""

    def __init__(self, emulator: Emulator, url: str, portal: BlockingPortal) -> None:
        self.emulator = emulator
        self.url = url
        self.portal = portal

    def account(self, key: str) -> Account:
        # On the server's loop: the emulator settles jobs with that loop's clock.
        return self.portal.call(self.emulator.account, key)

    def requests_of(self, key: str) -> list[Any]:
        label = self.account(key).label
        return [r for r in list(self.emulator.requests) if r.account == label]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    emulator = Emulator(rows_per_minute=FAST)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator)) as url,
    ):
        yield Served(emulator, url, portal)


@pytest.fixture
def key() -> str:
    return f"sk_test_cli_{uuid.uuid4().hex}"


@pytest.fixture
def run(served: Served, key: str) -> Callable[..., Result]:
    """Run the command line in process, pointed at the emulator with this test's key."""

    def invoke(*args: str, input: bytes | str | None = None, **env: str | None) -> Result:
        environment: dict[str, str | None] = {
            "ANALYTEX_API_KEY": key,
            "ANALYTEX_BASE_URL": served.url,
            "ANALYTEX_REGION": None,
            **dict.fromkeys(TERMINAL_HINTS),
            **env,
        }
        return CliRunner().invoke(cli, list(args), input=input, env=environment)

    return invoke


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("analytex-async: error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def write_ndjson(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def users(n: int, prefix: str = "u") -> list[dict[str, Any]]:
    return [{"user_id": f"{prefix}{i}", "metadata": {"n": i}} for i in range(n)]


# -- identify -------------------------------------------------------------------------------------


def test_identify_sends_one_user_with_typed_metadata_and_company(
    run: Callable[..., Result], served: Served, key: str
) -> None:
    result = run("identify", "u1", "-m", "plan=pro", "--metadata", "seats:=5", "--company", "c1")
    assert result.exit_code == 0, result.output
    assert "identified u1" in result.stdout
    user = served.account(key).users["u1"]
    assert user.metadata == {"plan": "pro", "seats": 5}
    assert user.company_id == "c1"


@pytest.mark.parametrize("pair", ["plan", "=pro", "seats:=five"])
def test_identify_with_malformed_metadata_is_a_usage_error(
    run: Callable[..., Result], served: Served, key: str, pair: str
) -> None:
    result = run("identify", "u1", "-m", pair)
    assert result.exit_code == 2
    assert "--metadata" in one_error_line(result)
    assert not served.requests_of(key)


# -- import ---------------------------------------------------------------------------------------


def test_import_users_sends_every_record_in_batches_and_exits_0(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(25))
    result = run("import", "users", str(source), "--batch-size", "10", *QUICK)
    assert result.exit_code == 0, result.output
    assert "Imported users from" in result.stdout
    assert "25 rows in 3 batches" in result.stdout
    assert "3 completed" in result.stdout
    account = served.account(key)
    assert len(account.users) == 25
    assert [job.total_rows for job in account.jobs.values()] == [10, 10, 5]


def test_rejected_records_go_to_the_rejects_file_with_reason_and_line_and_exit_1(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "users.ndjson"
    source.write_text(
        '{"user_id": "a"}\n'
        '{"user_id": ""}\n'
        "\n"  # a blank line is not a record
        "not json\n"
        '{"user_id": "b", "metadata": {"tags": ["x"]}}\n'
        '{"user_id": "c"}\n',
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.ndjson"
    result = run("import", "users", str(source), "--rejects", str(rejects))
    assert result.exit_code == 1, result.output
    assert f"3 rows, written to {rejects}" in result.stdout
    entries = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(e["position"], e["line"]) for e in entries] == [(1, 2), (2, 4), (3, 5)]
    assert entries[0]["record"] == {"user_id": ""}
    assert "user_id" in entries[0]["reason"]
    assert entries[1]["record"] == "not json"
    assert "JSON" in entries[1]["reason"]
    assert "metadata.tags" in entries[2]["reason"]
    assert set(served.account(key).users) == {"a", "c"}


def test_a_rejects_file_is_rewritten_empty_when_nothing_is_rejected(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.ndjson"
    rejects.write_text("stale\n", encoding="utf-8")
    source = write_ndjson(tmp_path / "users.ndjson", users(3))
    result = run("import", "users", str(source), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert rejects.read_text(encoding="utf-8") == ""


def write_mostly_bad(path: Path, bad: int, good: int) -> Path:
    """``bad`` records without an id, then ``good`` valid users: one per line."""
    lines = [json.dumps({"metadata": {"n": n}}) for n in range(bad)]
    lines += [json.dumps(user) for user in users(good)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_rejects_file_holds_every_rejection_beyond_the_1000_an_import_keeps(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = write_mostly_bad(tmp_path / "users.ndjson", bad=1_500, good=5)
    rejects = tmp_path / "rejects.ndjson"
    result = run("import", "users", str(source), "--rejects", str(rejects), "--json", *QUICK)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["rows_rejected"], summary["rows_sent"]) == (1505, 1500, 5)
    assert len(summary["rejected"]) == 1_000  # the result keeps the first 1,000
    entries = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [e["position"] for e in entries] == list(range(1_500))
    assert [e["line"] for e in entries] == list(range(1, 1_501))
    assert entries[1_499]["record"] == {"metadata": {"n": 1_499}}
    assert all("user_id" in e["reason"] for e in entries)
    assert len(served.account(key).users) == 5


def test_the_summary_counts_every_rejection_and_lists_the_first(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_mostly_bad(tmp_path / "users.ndjson", bad=1_200, good=1)
    result = run("import", "users", str(source), *QUICK)
    assert result.exit_code == 1, result.output
    assert "rejected   1,200 rows" in result.stdout
    assert "Rejected records (1,200):" in result.stdout
    assert "... and 1,190 more (--rejects FILE saves them all)" in result.stdout


def test_a_dry_run_streams_every_rejection_too(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = write_mostly_bad(tmp_path / "users.ndjson", bad=1_200, good=3)
    rejects = tmp_path / "rejects.ndjson"
    result = run("import", "users", str(source), "--dry-run", "--json", "--rejects", str(rejects))
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows_rejected"], summary["rows_valid"]) == (1_200, 3)
    assert len(summary["rejected"]) == 1_000
    positions = [json.loads(line)["position"] for line in rejects.read_text().splitlines()]
    assert positions == list(range(1_200))
    assert not served.requests_of(key)


def test_import_reads_stdin_with_a_dash_gzip_included(
    run: Callable[..., Result], served: Served, key: str
) -> None:
    body = "".join(json.dumps(r) + "\n" for r in users(7, prefix="in"))
    assert run("import", "users", "-", input=body).exit_code == 0
    assert run("import", "users", "-", input=gzip.compress(b'{"user_id": "gz"}\n')).exit_code == 0
    assert set(served.account(key).users) == {*(f"in{i}" for i in range(7)), "gz"}


def test_import_companies_from_csv(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "companies.csv"
    source.write_text("company_id,name\nc1,Acme\nc2,Globex\n", encoding="utf-8")
    result = run("import", "companies", str(source))
    assert result.exit_code == 0, result.output
    companies = served.account(key).companies
    assert companies["c2"].metadata == {"name": "Globex"}


def test_csv_on_stdin_needs_format(run: Callable[..., Result], served: Served, key: str) -> None:
    result = run("import", "users", "-", "--format", "csv", input="user_id,plan\nu1,pro\n")
    assert result.exit_code == 0, result.output
    assert served.account(key).users["u1"].metadata == {"plan": "pro"}


MULTILINE_CSV = 'user_id,note\nu1,"line one\nline two"\nu2,plain\n'


def test_a_csv_cell_spanning_lines_is_rejected_by_line_unless_csv_multiline(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "users.csv"
    source.write_text(MULTILINE_CSV, encoding="utf-8")
    rejects = tmp_path / "rejects.ndjson"
    by_line = run("import", "users", str(source), "--rejects", str(rejects))
    assert by_line.exit_code == 1, by_line.output
    entries = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [e["line"] for e in entries] == [2, 3]
    assert all("unclosed quote" in e["reason"] for e in entries)
    assert "read only with --csv-multiline)" in by_line.stdout  # the option, not the keyword
    assert "csv_multiline=True" not in by_line.stdout
    assert set(served.account(key).users) == {"u2"}
    whole = run("import", "users", str(source), "--csv-multiline")
    assert whole.exit_code == 0, whole.output
    assert served.account(key).users["u1"].metadata == {"note": "line one\nline two"}


def test_a_dry_run_reads_csv_cells_spanning_lines_with_csv_multiline(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = tmp_path / "users.csv"
    source.write_text(MULTILINE_CSV, encoding="utf-8")
    by_line = run("import", "users", str(source), "--dry-run", "--json")
    assert by_line.exit_code == 1
    assert json.loads(by_line.stdout)["rows_rejected"] == 2
    whole = run("import", "users", str(source), "--dry-run", "--json", "--csv-multiline")
    assert whole.exit_code == 0, whole.output
    summary = json.loads(whole.stdout)
    assert (summary["rows_read"], summary["rows_valid"]) == (2, 2)


def test_json_summary_is_one_parseable_object_on_stdout(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", [*users(4), {"user_id": 5}])
    result = run("import", "users", str(source), "--json", "--batch-size", "2", *QUICK)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["kind"] == "users"
    assert summary["ok"] is False
    assert (summary["rows_read"], summary["rows_sent"], summary["rows_rejected"]) == (5, 4, 1)
    assert summary["batches"] == 2
    assert [job["status"] for job in summary["jobs"]] == ["completed", "completed"]
    assert summary["rejected"] == [
        {"position": 4, "line": 5, "reason": summary["rejected"][0]["reason"]}
    ]


def test_dry_run_validates_and_counts_and_sends_nothing(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", [*users(25), {"user_id": ""}])
    rejects = tmp_path / "rejects.ndjson"
    result = run(
        "import", "users", str(source), "--dry-run", "--batch-size", "10", "--rejects", str(rejects)
    )
    assert result.exit_code == 1, result.output
    assert "nothing was sent" in result.stdout
    assert "25 rows, 3 batches to send" in result.stdout
    assert json.loads(rejects.read_text(encoding="utf-8"))["position"] == 25
    assert not served.requests_of(key)


def test_a_clean_dry_run_needs_no_key_and_exits_0(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(3))
    result = run("import", "users", str(source), "--dry-run", "--json", ANALYTEX_API_KEY=None)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["dry_run"], summary["rows_valid"], summary["rows_sent"]) == (True, 3, 0)


def test_no_wait_returns_once_the_batches_are_accepted(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(20))
    result = run(
        "import", "users", str(source), "--no-wait", "--json", "--batch-size", "10", *QUICK
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_sent"] == 20


def test_a_failed_job_makes_the_import_exit_1(
    run: Callable[..., Result], served: Served, tmp_path: Path
) -> None:
    served.emulator.fail_next_jobs(1, reason="disk full", after_rows=1)
    source = write_ndjson(tmp_path / "users.ndjson", users(3))
    result = run("import", "users", str(source), "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["rows_rejected"] == 0
    assert [job["status"] for job in summary["jobs"]] == ["failed"]


def test_an_import_the_server_refuses_stops_with_the_partial_summary(
    run: Callable[..., Result], served: Served, tmp_path: Path
) -> None:
    served.emulator.faults.add("/v1/users/bulk_identify", status=400, times=1)
    source = write_ndjson(tmp_path / "users.ndjson", users(3))
    result = run("import", "users", str(source))
    assert result.exit_code == 1
    assert "Stopped: import of users" in result.stdout
    assert "400" in one_error_line(result)


def test_the_journal_makes_a_second_run_skip_what_was_accepted(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(12))
    journal = tmp_path / "import.journal"
    first = run(
        "import", "users", str(source), "--journal", str(journal), "--batch-size", "5", *QUICK
    )
    assert first.exit_code == 0, first.output
    again = run("import", "users", str(source), "--journal", str(journal), "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["rows_sent"], summary["rows_skipped"]) == (0, 12)
    assert len(served.account(key).jobs) == 3


# -- usage and configuration errors ---------------------------------------------------------------


def test_missing_key_is_one_line_and_exit_2(run: Callable[..., Result], tmp_path: Path) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(1))
    for args in (["jobs"], ["identify", "u1"], ["import", "users", str(source)]):
        result = run(*args, ANALYTEX_API_KEY=None)
        assert result.exit_code == 2, args
        assert "ANALYTEX_API_KEY" in one_error_line(result)
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["import", "users", "missing.ndjson"], "does not exist"),
        (["import", "users", "-", "--batch-size", "0"], "--batch-size"),
        (["import", "users", "-", "--rows-per-minute", "-1"], "--rows-per-minute"),
        (["import", "things", "-"], "No such command"),
        (["--region", "mars", "jobs"], "--region"),
        (["--base-url", "http://example.com", "jobs"], "refusing plain http://"),
        (["job"], "JOB_ID"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    run: Callable[..., Result], args: list[str], expected: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert expected in one_error_line(result)


def test_an_unwritable_rejects_file_fails_before_sending(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", users(1))
    result = run("import", "users", str(source), "--rejects", str(tmp_path / "no" / "r.ndjson"))
    assert result.exit_code == 2
    one_error_line(result)
    assert not served.requests_of(key)


def test_a_wrong_key_is_a_configuration_error(served: Served) -> None:
    emulator = Emulator(api_keys={"the-right-key"})

    async def check() -> None:
        async with serve(emulator) as url:
            env = {"ANALYTEX_API_KEY": "the-wrong-key", "ANALYTEX_BASE_URL": url}
            # The command runs its own event loop: in a worker thread, off the server's.
            result = await anyio.to_thread.run_sync(
                lambda: CliRunner().invoke(cli, ["jobs"], env=env)
            )
            assert result.exit_code == 2
            assert "check the API key" in one_error_line(result)

    served.portal.call(check)


def test_an_unexpected_error_is_one_line_not_a_traceback(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: AsyncAnalytex) -> list[Any]:
        raise RuntimeError("something broke")

    monkeypatch.setattr(AsyncAnalytex, "list_jobs", broken)
    result = run("jobs")
    assert result.exit_code == 1
    assert "unexpected RuntimeError: something broke" in one_error_line(result)


def test_the_key_is_never_printed_even_when_the_server_echoes_it(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    echo = {"errors": [{"error": "bad_request", "message": f"the key {key} is not welcome"}]}
    fault = served.emulator.faults.add(
        re.compile(r"/v1/.*"),
        status=400,
        body=echo,
        headers={"X-Request-Id": f"req-{key}"},
        times=None,
    )
    try:
        source = write_ndjson(tmp_path / "users.ndjson", users(2))
        for args in (
            ["identify", "u1"],
            ["jobs"],
            ["job", key],
            ["import", "users", str(source)],
            ["import", "users", str(source), "--json"],
            ["--api-key", key, "jobs"],
            ["identify", "u1", "--metadata", key],  # a usage error quoting the key
        ):
            result = run(*args)
            assert result.exit_code in (1, 2), (args, result.output)
            assert key not in result.output, args
            assert "***" in result.output, args
    finally:
        served.emulator.faults.remove(fault)
    assert fault.hits >= 6


def test_an_unexpected_error_quoting_the_key_is_redacted(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    async def broken(self: AsyncAnalytex) -> list[Any]:
        raise RuntimeError(f"state dump: {key}")

    monkeypatch.setattr(AsyncAnalytex, "list_jobs", broken)
    result = run("jobs")
    assert result.exit_code == 1
    assert one_error_line(result).endswith("state dump: ***")


# -- jobs -----------------------------------------------------------------------------------------


def test_jobs_lists_the_accounts_jobs_as_a_table_or_json(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    assert run("jobs").stdout.strip() == "no jobs"
    source = write_ndjson(tmp_path / "users.ndjson", users(4))
    imported = run("import", "users", str(source), "--json", "--batch-size", "2", *QUICK)
    ids = [job["job_id"] for job in json.loads(imported.stdout)["jobs"]]
    table = run("jobs")
    assert table.exit_code == 0
    assert all(job_id in table.stdout for job_id in ids)
    listed = json.loads(run("jobs", "--json").stdout)
    assert [job["job_id"] for job in listed] == ids
    assert {job["status"] for job in listed} == {"completed"}


def job_polls(served: Served, key: str, job_id: str) -> list[Any]:
    return [
        r
        for r in served.requests_of(key)
        if r.method == "GET" and r.path.endswith(f"/background_jobs/{job_id}")
    ]


def test_job_shows_one_job_and_waits_for_it(
    run: Callable[..., Result], served: Served, key: str
) -> None:
    async def submit_slow_job() -> str:
        served.emulator.rows_per_minute = 6_000  # 100 rows: one second
        try:
            async with AsyncAnalytex(api_key=key, base_url=served.url) as client:
                job = await client.bulk_identify([{"user_id": f"s{i}"} for i in range(100)])
        finally:
            served.emulator.rows_per_minute = FAST
        return job.job_id

    job_id = served.portal.call(submit_slow_job)
    shown = run("job", job_id, "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["status"] in ("queued", "processing")
    polls_before = len(job_polls(served, key, job_id))
    waited = run("job", job_id, "--wait", "--rows-per-minute", "6000")
    assert waited.exit_code == 0, waited.output
    assert "completed" in waited.stdout
    assert "100 / 100" in waited.stdout
    assert f"job {job_id}: completed" in waited.stderr
    # The one job waiter's cadence: polled when the rows should be done (a second at 6,000
    # rows a minute), not in a busy loop.
    assert len(job_polls(served, key, job_id)) - polls_before <= 5


def test_a_failed_job_exits_1_and_an_unknown_one_2(
    run: Callable[..., Result], served: Served, key: str
) -> None:
    served.emulator.fail_next_jobs(1, reason="disk full")

    async def submit() -> str:
        async with AsyncAnalytex(api_key=key, base_url=served.url) as client:
            return (await client.bulk_identify([{"user_id": "f1"}])).job_id

    job_id = served.portal.call(submit)
    failed = run("job", job_id, "--wait")
    assert failed.exit_code == 1
    assert one_error_line(failed).endswith(f"job {job_id} failed: disk full")
    unknown = run("job", "no-such-job")
    assert unknown.exit_code == 2
    assert "404" in one_error_line(unknown)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "identify", "import", "sync", "jobs", "job", "emulator"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command
    imports = CliRunner().invoke(cli, ["import", "--help"])
    for command in ("users", "companies", "events"):
        assert re.search(rf"^\s+{command}\s", imports.stdout, re.MULTILINE), command


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_stops_cleanly_says_what_was_accepted_and_how_to_resume(
    served: Served, key: str, tmp_path: Path
) -> None:
    source = write_ndjson(tmp_path / "users.ndjson", [{"user_id": ""}, *users(300)])
    journal = tmp_path / "import.journal"
    rejects = tmp_path / "rejects.ndjson"
    earlier = '{"position": 7, "line": 8}\n{"position": 9, "line": 10}\n'
    rejects.write_text(earlier, encoding="utf-8")  # a finished run's rejections
    # SIGINT may be ignored in the parent (a background CI job): give the child Python's own.
    launcher = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from analytex_async.cli import main; main(sys.argv[1:])"
    )
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_HINTS}
    env.update(ANALYTEX_API_KEY=key, ANALYTEX_BASE_URL=served.url)
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "import", "users", str(source), "--batch-size", "100",
         "--rows-per-minute", "600", "--journal", str(journal), "--rejects", str(rejects)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # The first batch goes at once; the next waits 10 s for the rate budget.
        sent = wait_until(
            lambda: any(r.status == 202 for r in served.requests_of(key)), process=process
        )
        assert sent, f"the first batch was never sent: {process.communicate()}"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "Interrupted: import of users" in stdout
    assert "accepted 100 rows in 1 batch;" in stderr
    assert f"run the same command again: the journal {journal}" in stderr
    # The earlier run's file is left whole; the partial one beside it holds this run's finds.
    assert rejects.read_text(encoding="utf-8") == earlier
    partials = list(tmp_path.glob("rejects.ndjson.*.partial"))
    assert len(partials) == 1
    assert (
        f"{rejects} was left as it was; {partials[0]} holds the 1 rejected record this run found"
        in (stderr)
    )
    assert json.loads(partials[0].read_text(encoding="utf-8"))["position"] == 0
    assert key not in stdout + stderr
