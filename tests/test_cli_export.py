"""``export``, ``exports`` and ``lookup`` against an emulator served on a loopback port."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result

from analytex_async import AsyncAnalytex, Event, RetryPolicy
from analytex_async.cli._app import Settings
from analytex_async.cli._commands import cli
from analytex_async.emulator import Emulator, serve

TERMINAL_HINTS = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
NOV = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    emulator = Emulator(rows_per_minute=6_000_000, export_duration=0.3, export_chunk_rows=2)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(serve(emulator)) as url,
    ):
        yield url


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's clients retry as usual (5 attempts), milliseconds apart."""
    make_client = Settings.client
    quick = RetryPolicy(max_retries=4, initial_delay=0.01, max_delay=0.02)

    def client(self: Settings, **options: Any) -> AsyncAnalytex:
        return make_client(self, retry_policy=quick, **options)

    monkeypatch.setattr(Settings, "client", client)


@pytest.fixture
def run(served: str) -> Callable[..., Result]:
    key = f"sk_test_export_{uuid.uuid4().hex}"

    async def load() -> None:
        async with AsyncAnalytex(key, base_url=served) as client:
            events = [
                Event.track(f"u{i}", "opened", NOV + dt.timedelta(minutes=i)) for i in range(5)
            ]
            assert (await client.import_events(events)).ok
            await client.identify("u9", metadata={"plan": "pro"})

    anyio.run(load)

    def invoke(*args: str) -> Result:
        env: dict[str, str | None] = {
            "ANALYTEX_API_KEY": key,
            "ANALYTEX_BASE_URL": served,
            "ANALYTEX_APPEX_URL": None,
            "ANALYTEX_REGION": None,
            **dict.fromkeys(TERMINAL_HINTS),
        }
        result = CliRunner().invoke(cli, list(args), env=env)
        assert "Traceback" not in result.output
        assert key not in result.output
        return result

    return invoke


def test_export_writes_the_files_with_progress_and_a_summary(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    out = tmp_path / "nov"
    result = run("export", "--start", "2026-11-01", "--end", "2026-12-01", "--event-type", "track",
                 "--format", "csv", "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.suffix for f in files] == [".csv"] * 3  # 5 tracks, 2 a file
    listed = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(Path(p).name, int(size)) for p, size in listed] == [
        (f.name, f.stat().st_size) for f in files
    ]
    assert "export " in result.stderr
    assert "downloaded" in result.stderr
    assert "3 files" in result.stderr
    rows = sum(len(f.read_text().splitlines()) - 1 for f in files)
    assert rows == 5
    again = run("export", "--start", "2026-11-01", "--end", "2026-12-01", "--format", "csv",
                "--event-type", "track", "--output", str(out))  # fmt: skip
    assert again.exit_code == 0  # another export: its files are named by its own id
    assert len(list(out.iterdir())) == 6


def test_exports_lists_them(run: Callable[..., Result], tmp_path: Path) -> None:
    assert run("exports").stdout.strip() == "no exports"
    run("export", "--start", "2026-11-01", "--end", "2026-12-01", "-o", str(tmp_path))
    table = run("exports")
    assert table.exit_code == 0
    assert "completed" in table.stdout
    listed = json.loads(run("exports", "--json").stdout)
    assert [item["status"] for item in listed] == ["completed"]
    assert listed[0]["progress"] == 100


def test_lookup_writes_ndjson_following_pages(run: Callable[..., Result]) -> None:
    result = run("lookup", "segments")
    assert result.exit_code == 0
    items = [json.loads(line) for line in result.stdout.splitlines()]
    assert [item["id"] for item in items] == ["all_users", "with_company", "without_company"]
    assert "3 segments items" in result.stderr
    properties = run("lookup", "user_properties")
    assert [json.loads(line)["name"] for line in properties.stdout.splitlines()] == ["plan"]


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["lookup", "nope"], 2),
        (["export", "--start", "2026-12-01", "--end", "2026-11-01", "-o", "x"], 2),
        (
            [
                "export",
                "--start",
                "2026-11-01",
                "--end",
                "2026-12-01",
                "-o",
                "x",
                "--segment",
                "no",
            ],
            1,
        ),
        (["exports", "--appex-url", "http://appex.example"], 2),
    ],
)
def test_errors_exit_with_their_status_on_one_line(
    run: Callable[..., Result], args: list[str], status: int
) -> None:
    result = run(*args)
    assert result.exit_code == status
    assert result.stderr.startswith("analytex-async: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_export_host_that_cannot_be_reached_exits_3(run: Callable[..., Result]) -> None:
    result = run("exports", "--appex-url", "http://127.0.0.1:9")
    assert result.exit_code == 3
    assert "127.0.0.1:9" in result.stderr
