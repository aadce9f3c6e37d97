"""``analytex-async demo``: the README's first command, and the sample it imports."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import anyio
from click.testing import CliRunner
from rich.console import Console

from analytex_async.cli._commands import cli
from analytex_async.cli._demo import planted_positions, write_sample
from analytex_async.cli._display import PlainImportDisplay
from analytex_async.cli._import import validate_only
from analytex_async.cli._progress import ImportWatch
from analytex_async.cli._report import ImportRequest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    """The one-line commands of the README's ``console`` blocks, in order."""
    blocks = re.findall(r"```console\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_shows_two_one_line_commands_the_demo_first() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("analytex-async demo")
    install = demo.split("&&")[1]
    assert "pip install" in install
    assert '".[cli,emulator]"' in install
    assert (
        tests
        == Path(__file__)
        .resolve()
        .parent.parent.joinpath(".ci", "run")
        .read_text(encoding="utf-8")
        .splitlines()[-1]
    )


def test_the_readme_demo_command_runs_and_prints_the_summary() -> None:
    demo = readme_commands()[0].split("&&")[-1].strip()
    program, *arguments = shlex.split(demo)
    assert Path(program).name == "analytex-async"
    # The README installs into .venv; here the package is installed in the running environment.
    script = Path(sys.executable).parent / "analytex-async"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "analytex_async"]
    # Plain output, whatever the environment says about terminals.
    hints = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {k: v for k, v in os.environ.items() if k not in hints}
    started = time.monotonic()
    done = subprocess.run(
        [*command, *arguments], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 60
    out = done.stdout
    assert "Imported users from demo-users.ndjson" in out
    assert "read       50,000 rows" in out
    assert "sent       49,994 rows in 5 batches" in out
    assert "rejected   6 rows" in out
    assert "jobs       5 completed" in out
    assert "Rejected records (6):" in out
    assert "line 44,445: not valid JSON" in out
    assert "The emulator ended with 49,994 users stored" in out
    assert "batch 5 accepted" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_small_demo_runs_in_process() -> None:
    result = CliRunner().invoke(cli, ["demo", "--users", "2000"], env={"FORCE_COLOR": None})
    assert result.exit_code == 0, result.output
    assert "sent       1,994 rows in 1 batch" in result.stdout
    assert "The emulator ended with 1,994 users stored" in result.stdout


def rows_per_minute_of(command: str) -> float | None:
    words = shlex.split(command.split("#", maxsplit=1)[0])
    if "--rows-per-minute" not in words:
        return None
    return float(words[words.index("--rows-per-minute") + 1])


def test_the_suggested_import_runs_at_the_suggested_emulators_pace() -> None:
    result = CliRunner().invoke(cli, ["demo", "--users", "100"], env={"FORCE_COLOR": None})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    (emulator,) = [line for line in lines if "analytex-async emulator" in line]
    (importing,) = [line for line in lines if "analytex-async import users" in line]
    pace = rows_per_minute_of(emulator)
    assert pace is not None
    assert pace > 1_200  # faster than the real API: a demo of minutes, not hours
    assert rows_per_minute_of(importing) == pace  # the client left at 1,200 would be 50x slower


def test_the_sample_holds_exactly_the_planted_invalid_records(tmp_path: Path) -> None:
    path = tmp_path / "sample.ndjson"
    planted = write_sample(path, 1_000)
    assert planted == len(planted_positions(1_000)) == 6
    display = PlainImportDisplay(ImportWatch(1_200), lambda: Console(stderr=True).file)
    report = anyio.run(partial(validate_only, ImportRequest("user", path, "sample"), display))
    assert report.rows_read == 1_000
    assert sorted(r.position for r in report.rejected) == sorted(planted_positions(1_000))
    assert len({r.reason.split(":")[0] for r in report.rejected}) >= 5  # different mistakes
