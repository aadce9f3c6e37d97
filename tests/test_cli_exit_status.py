"""Exit statuses that need no server: an outage is 1, a Ctrl-C is 130, a stray cancel is not.

The library calls are replaced by stubs, so the commands never reach the network.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from analytex_async import AsyncAnalytex, GovernorUnavailableError, ImportAbortedError, ImportResult
from analytex_async.cli import _app
from analytex_async.cli._commands import cli

KEY = "sk_test_cli_exit_SECRET"
ENV = {
    "ANALYTEX_API_KEY": KEY,
    "ANALYTEX_BASE_URL": "https://analytex.test",
    "ANALYTEX_REGION": None,
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TTY_INTERACTIVE": None,
}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV)


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("analytex-async: error: "), lines[0]
    return lines[0]


def stub_list_jobs(monkeypatch: pytest.MonkeyPatch, work: Callable[[], Any]) -> None:
    async def list_jobs(self: AsyncAnalytex) -> list[Any]:
        await work()
        return []

    monkeypatch.setattr(AsyncAnalytex, "list_jobs", list_jobs)


# -- an outage is not a usage error ---------------------------------------------------------------


def test_an_unreachable_governor_store_exits_1_not_2(monkeypatch: pytest.MonkeyPatch) -> None:
    async def outage() -> None:
        raise GovernorUnavailableError(f"redis://cache:6379 refused the connection ({KEY})")

    stub_list_jobs(monkeypatch, outage)
    result = run("jobs")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "redis://cache:6379 refused the connection" in line
    assert KEY not in result.output


def test_an_import_aborted_by_the_governor_store_exits_1_with_its_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def import_users(self: AsyncAnalytex, source: object, **options: Any) -> ImportResult:
        partial = ImportResult(rows_read=3, rows_sent=2)
        try:
            raise GovernorUnavailableError("redis://cache:6379 is unreachable")
        except GovernorUnavailableError as outage:
            raise ImportAbortedError("the import stopped: " + str(outage), result=partial) from (
                outage
            )

    monkeypatch.setattr(AsyncAnalytex, "import_users", import_users)
    source = tmp_path / "users.ndjson"
    source.write_text('{"user_id": "a"}\n{"user_id": "b"}\n{"user_id": "c"}\n', encoding="utf-8")
    result = run("import", "users", str(source))
    assert result.exit_code == 1, result.output
    assert "Stopped: import of users" in result.stdout
    assert "analytex-async: error: the import stopped: redis://cache:6379" in result.stderr


# -- Ctrl-C, and what is not one ------------------------------------------------------------------


@pytest.fixture
def like_python_3_10(monkeypatch: pytest.MonkeyPatch) -> None:
    """``anyio.run`` as on Python 3.10: a Ctrl-C comes out as the root task's CancelledError.

    The runner cancels the root task on the first SIGINT on every version; only 3.11 has
    ``Task.uncancel`` to turn the cancellation back into a ``KeyboardInterrupt``.
    """
    real_run = anyio.run

    def run_without_uncancel(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_run(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise asyncio.CancelledError from exc

    monkeypatch.setattr(_app, "CTRL_C_MAY_CANCEL_THE_ROOT", True)
    monkeypatch.setattr(anyio, "run", run_without_uncancel)


def cancelled_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """``anyio.run`` ends with the root task's CancelledError, no SIGINT involved."""

    def cancelled(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError

    monkeypatch.setattr(anyio, "run", cancelled)


@pytest.mark.usefixtures("like_python_3_10")
def test_on_python_3_10_a_ctrl_c_that_cancels_the_root_task_exits_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def ctrl_c() -> None:
        signal.raise_signal(signal.SIGINT)
        await anyio.sleep(30)

    stub_list_jobs(monkeypatch, ctrl_c)
    result = run("jobs")
    assert result.exit_code == 130, result.output
    assert "analytex-async: interrupted" in result.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


@pytest.mark.usefixtures("like_python_3_10")
def test_on_python_3_10_a_cancelled_root_task_without_a_ctrl_c_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cancelled_root(monkeypatch)
    result = run("jobs")
    assert result.exit_code == 1
    assert "CancelledError" in one_error_line(result)


def test_on_python_3_11_a_cancelled_root_task_is_not_a_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_app, "CTRL_C_MAY_CANCEL_THE_ROOT", False)
    cancelled_root(monkeypatch)
    result = run("jobs")
    assert result.exit_code == 1
    assert "CancelledError" in one_error_line(result)


def test_a_ctrl_c_exits_130_on_this_python(monkeypatch: pytest.MonkeyPatch) -> None:
    async def ctrl_c() -> None:
        signal.raise_signal(signal.SIGINT)
        await anyio.sleep(30)

    stub_list_jobs(monkeypatch, ctrl_c)
    result = run("jobs")
    assert result.exit_code == 130, result.output
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
