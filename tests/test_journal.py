"""The journal: accepted batches are recorded durably and skipped on a re-run, so nothing is
lost or sent twice beyond the batch in flight; a journal that does not fit is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from analytex_async import ImportProgress, ValidationError
from analytex_async._bulk._journal import Journal, digest
from analytex_async._bulk._options import ImportOptions
from analytex_async._bulk._pipeline import ImportRun
from analytex_async.emulator import Emulator
from analytex_async.governors._local import RowGovernor
from analytex_async.testing import EmulatedAnalytex

from .conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

FAST = {"rows_per_minute": 1_000_000}
HEADER = '{"journal": "analytex-async", "version": 1, "kind": "user"}'


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def users(count: int, *, start: int = 0, tag: str = "") -> list[dict[str, Any]]:
    return [
        {"user_id": f"u{i}", "metadata": {"n": i, "t": tag}} for i in range(start, start + count)
    ]


def accepted_rows(emulator: Emulator) -> int:
    return sum(job.total_rows for job in emulator.jobs.values())


async def test_accepted_batches_are_recorded_in_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        result = await analytex.client.import_users(
            [*users(5), {"user_id": ""}, *users(4, start=5)], batch_size=4, journal=path
        )
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"journal": "analytex-async", "version": 1, "kind": "user"}
    assert [(e["first"], e["last"], e["count"]) for e in lines[1:]] == [
        (0, 3, 4),
        (4, 8, 4),
        (9, 9, 1),
    ]
    assert [e["job_id"] for e in lines[1:]] == [j.job_id for j in result.jobs]
    assert all(len(e["sha256"]) == 64 for e in lines[1:])


async def test_a_rerun_skips_everything_already_accepted(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        first = await analytex.client.import_users(users(250), batch_size=100, journal=path)
        posts = len(emulator.requests)
        again = await analytex.client.import_users(users(250), batch_size=100, journal=path)
    assert first.rows_sent == 250
    assert (again.rows_read, again.rows_sent, again.rows_skipped) == (250, 0, 250)
    assert not [r for r in emulator.requests[posts:] if r.method == "POST"]
    assert again.ok


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("cancel_after", [1, 2, 4])
async def test_a_cancelled_import_resumes_where_it_stopped(
    tmp_path: Path, anyio_backend: str, cancel_after: int
) -> None:
    path = tmp_path / "import.journal"
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        with anyio.CancelScope() as scope:

            def cancel_later(progress: ImportProgress) -> None:
                if progress.batches_sent >= cancel_after:
                    scope.cancel()

            await analytex.client.import_users(
                users(5_000), batch_size=1_000, journal=path, on_progress=cancel_later
            )
        assert scope.cancelled_caught
        sent_before = accepted_rows(emulator)
        assert 0 < sent_before < 5_000
        result = await analytex.client.import_users(users(5_000), batch_size=1_000, journal=path)
    assert result.rows_skipped == sent_before
    assert result.rows_sent == 5_000 - sent_before
    assert accepted_rows(emulator) <= 5_000 + 1_000  # at most the batch in flight twice
    assert len(emulator.users) == 5_000


async def test_an_in_flight_batch_that_was_not_recorded_is_sent_again(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        await analytex.client.import_users(users(300), batch_size=100, journal=path)
    # Simulate a crash after the server accepted batch 3 but before it was written down.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        result = await analytex.client.import_users(users(300), batch_size=100, journal=path)
    assert (result.rows_skipped, result.rows_sent) == (200, 100)
    assert accepted_rows(emulator) == 400  # exactly the one batch in flight repeated


async def test_a_torn_last_line_is_tolerated_and_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        await analytex.client.import_users(users(200), batch_size=100, journal=path)
        with path.open("ab") as file:
            file.write(b'{"first":200,"last":29')  # a write cut short by a crash
        result = await analytex.client.import_users(users(300), batch_size=100, journal=path)
    assert (result.rows_skipped, result.rows_sent) == (200, 100)
    assert all(json.loads(line) for line in path.read_text().splitlines())


async def test_a_changed_source_is_refused_not_silently_skipped(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    emulator = Emulator(**FAST)
    async with EmulatedAnalytex(emulator, **FAST) as analytex:
        await analytex.client.import_users(users(200), batch_size=100, journal=path)
        posts = len(emulator.requests)
        with pytest.raises(ValidationError, match="does not match this source") as info:
            await analytex.client.import_users(
                [*users(150), *users(50, start=150, tag="changed")], batch_size=100, journal=path
            )
    assert info.value.field == "journal"
    assert info.value.position == 100
    assert not [r for r in emulator.requests[posts:] if r.method == "POST"]


async def test_a_shorter_source_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    async with EmulatedAnalytex(Emulator(**FAST), **FAST) as analytex:
        await analytex.client.import_users(users(200), batch_size=100, journal=path)
        with pytest.raises(ValidationError, match="does not match"):
            await analytex.client.import_users(users(150), batch_size=100, journal=path)


async def test_rejections_in_an_accepted_range_are_reported_again(tmp_path: Path) -> None:
    path = tmp_path / "import.journal"
    source = [*users(3), {"user_id": ""}, *users(3, start=3)]
    async with EmulatedAnalytex(Emulator(**FAST), **FAST) as analytex:
        await analytex.client.import_users(source, journal=path)
        again = await analytex.client.import_users(source, journal=path)
    assert [r.position for r in again.rejected] == [3]
    assert again.rows_skipped == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"something": "else"}\n', "not an analytex-async journal"),
        ('{"journal": "analytex-async", "version": 1, "kind": "company"}\n', "company import"),
        ('{"journal": "analytex-async", "version": 9, "kind": "user"}\n', "version 9"),
        (f"{HEADER}\nnot json\n{{}}\n", "damaged at line 2"),
        (f'{HEADER}\n{{"first": 1}}\n', "malformed entry"),
    ],
)  # fmt: skip
async def test_files_that_are_not_this_imports_journal_are_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "import.journal"
    path.write_text(content)
    async with EmulatedAnalytex(Emulator(**FAST), **FAST) as analytex:
        with pytest.raises(ValidationError, match=message) as info:
            await analytex.client.import_users(users(1), journal=path)
    assert info.value.field == "journal"


async def test_an_unwritable_journal_is_a_clear_error(tmp_path: Path) -> None:
    async with EmulatedAnalytex(Emulator(**FAST), **FAST) as analytex:
        with pytest.raises(ValidationError, match="cannot open the journal"):
            await analytex.client.import_users(users(1), journal=tmp_path / "no" / "dir" / "j")


async def test_journal_api_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = await Journal.open(path, "company")
    lines = [b'{"company_id":"c1"}\n', b'{"company_id":"c2"}\n']
    await journal.record(0, 1, lines, "job-1", "0")
    await journal.aclose()
    reopened = await Journal.open(path, "company")
    assert reopened.latest_job_id == "job-1"
    assert reopened.entries[0].sha256 == digest(lines)
    assert reopened.covers(0, lines[0])
    assert reopened.covers(1, lines[1])
    assert not reopened.covers(2, b"{}\n")
    reopened.finish()
    await reopened.aclose()
    assert "entries=1" in repr(reopened)


async def test_a_record_too_large_to_send_inside_an_accepted_range_does_not_break_the_resume(
    tmp_path: Path,
) -> None:
    # With a 1,000-byte batch limit the big record is rejected inside the batch's range: the
    # journal must not count it as sent when the import runs again.
    path = tmp_path / "import.journal"
    big = {"user_id": "big", "metadata": {"blob": "x" * 2_000}}
    source = [*users(3), big, *users(3, start=3)]
    async with EmulatedAnalytex(Emulator(**FAST), **FAST) as analytex:
        for expected_skipped in (0, 6):
            result = await ImportRun(
                analytex.client._transport, RowGovernor(10**9), "user", rows_per_minute=10**9,
                options=ImportOptions(max_batch_bytes=1_000, journal=path),
            ).run(source)  # fmt: skip
            assert [r.position for r in result.rejected] == [3]
            assert result.rows_skipped == expected_skipped
