"""The ``analytex-async emulator`` command serves an emulator an unmodified client can use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import analytex_async.emulator
from analytex_async import AsyncAnalytex, ConflictError
from analytex_async.cli import main
from analytex_async.cli._commands import cli

from ._net import free_port, wait_for_port

TERMINAL_HINTS = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


@contextmanager
def emulator_process(
    *options: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, list[bytes]]]:
    """``analytex-async [options] emulator ...`` in a child process; its URL and its stderr."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "analytex_async", *options, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    if not wait_for_port(port, process=process):
        process.kill()
        pytest.fail(f"the emulator did not start: {process.communicate()[1].decode()}")
    stderr: list[bytes] = []
    try:
        yield f"http://127.0.0.1:{port}", stderr
    finally:
        process.terminate()
        stderr.append(process.communicate(timeout=10)[1])


@pytest.fixture
def served_emulator() -> Iterator[str]:
    with emulator_process("emulator", "--rows-per-minute", "60") as (url, stderr):
        yield url
    assert b"any-key" not in stderr[0]  # the key is never logged


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_an_unmodified_client_sees_the_documented_behaviour(
    served_emulator: str, anyio_backend: str
) -> None:
    async with AsyncAnalytex(api_key="any-key", base_url=served_emulator) as client:
        await client.identify("u1", metadata={"plan": "pro"})
        job = await client.bulk_identify([{"user_id": f"u{i}"} for i in range(100)])
        with pytest.raises(ConflictError):
            await client.bulk_identify([{"user_id": "u101"}])
        polled = await client.get_job(job.job_id)
        assert polled.total_rows == 100


def test_help_lists_the_emulator_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "emulator" in capsys.readouterr().out


def test_a_missing_cli_extra_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "analytex_async.cli._commands", None)
    with pytest.raises(SystemExit) as info:
        main(["emulator"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert 'pip install "analytex-async[cli]"' in err


# -- --api-key: the keys the emulator accepts ------------------------------------------------------


def import_with(url: str, key: str, source: Path) -> Any:
    env: dict[str, str | None] = {
        "ANALYTEX_BASE_URL": url,
        "ANALYTEX_API_KEY": None,
        **dict.fromkeys(TERMINAL_HINTS),
    }
    args = ["--api-key", key, "import", "users", str(source), "--json"]
    return CliRunner().invoke(cli, args, env=env)


def test_an_emulator_with_api_keys_refuses_any_other_key_and_the_cli_exits_2(
    tmp_path: Path,
) -> None:
    source = tmp_path / "users.ndjson"
    source.write_text('{"user_id": "u1"}\n', encoding="utf-8")
    # The global --api-key and ANALYTEX_API_KEY given to the emulator do not count: only its
    # own --api-key options do.
    with emulator_process(
        "--api-key", "bad", "emulator", "--api-key", "good", "--api-key", "also-good",
        "--rows-per-minute", "600000",
        env={"ANALYTEX_API_KEY": "bad"},
    ) as (url, stderr):  # fmt: skip
        refused = import_with(url, "bad", source)
        accepted = import_with(url, "good", source)
        also = import_with(url, "also-good", source)
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("analytex-async: error: ")
    assert "check the API key" in lines[0]
    assert "bad" not in lines[0].replace("invalid_api_key", "")
    assert "Traceback" not in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["rows_sent"] == 1
    assert also.exit_code == 0, also.output
    assert b"the --api-key keys only" in stderr[0]
    assert b"good" not in stderr[0]  # no key is ever printed


@pytest.fixture
def run_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(analytex_async.emulator, "run", lambda **options: calls.append(options))
    return calls


def test_the_global_api_key_and_the_environment_never_restrict_the_emulator(
    run_calls: list[dict[str, Any]],
) -> None:
    result = CliRunner().invoke(
        cli, ["--api-key", "global-key", "emulator"], env={"ANALYTEX_API_KEY": "env-key"}
    )
    assert result.exit_code == 0, result.output
    assert run_calls[0]["api_keys"] is None
    assert "accepting any API key" in result.stderr


def test_repeated_api_key_options_are_the_emulators_keys(run_calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(cli, ["emulator", "--api-key", "k1", "--api-key", "k2"])
    assert result.exit_code == 0, result.output
    assert run_calls[0]["api_keys"] == ["k1", "k2"]


@pytest.mark.parametrize(("key", "why"), [("", "must not be empty"), (" k1", "white space")])
def test_an_unusable_emulator_key_is_a_usage_error_that_does_not_quote_it(
    run_calls: list[dict[str, Any]], key: str, why: str
) -> None:
    result = CliRunner().invoke(cli, ["emulator", "--api-key", key])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert why in result.stderr
    assert not run_calls


def test_import_events_sends_historical_events_and_reports_the_rejected_one(
    served_emulator: str, tmp_path: Path
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(
        '{"event_type": "track", "user_id": "u1", "event_name": "Signed Up",'
        ' "inserted_at": "2024-07-28 08:55:35"}\n'
        '{"event_type": "identify_user", "user_id": "u1", "metadata": {"plan": "pro"},'
        ' "inserted_at": "2024-07-28T08:55:35Z"}\n'
        '{"event_type": "track", "user_id": "", "event_name": "x",'
        ' "inserted_at": "2024-07-28T08:55:35Z"}\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli,
        ["--api-key", "k", "--base-url", served_emulator, "import", "events", str(events),
         "--rows-per-minute", "600000", "--json"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # one event rejected
    report = json.loads(result.stdout)
    assert (report["rows_sent"], report["rows_rejected"]) == (2, 1)
    assert report["rejected"][0]["position"] == 2
