"""CSV imports with a stray quote, end to end against the emulator.

The two files a new user met: a stray quote must cost its own row (a ``Rejection`` naming the
line, "unclosed quote") and nothing else, whether the file has 10 rows or 30,000. Read as one
CSV stream, the first silently merged rows 3 to 7 and the second stopped at "field larger than
field limit" with nothing rejected. In process on trio with a mock clock: the emulator's jobs
take their real duration at no cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analytex_async import Rejection
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from ..conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

HEADER = "user_id,email,name\n"


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def user_rows(count: int) -> list[str]:
    return [f"u{i},u{i}@example.com,User {i}" for i in range(1, count + 1)]


def write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


async def test_an_unclosed_quote_on_row_3_rejects_row_3_and_imports_every_other_row(
    tmp_path: Path,
) -> None:
    rows = user_rows(10)
    rows[2] = 'u3,"u3@example.com,User 3'
    rows[6] = 'u7,u7@example.com,"Smith, Jane"'
    path = write(tmp_path / "users.csv", rows)
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        result = await analytex.client.import_users(path)
    assert (result.rows_read, result.rows_sent, result.rows_rejected) == (10, 9, 1)
    [rejection] = result.rejected
    assert isinstance(rejection, Rejection)
    assert (rejection.position, rejection.line) == (2, 4)
    assert rejection.record == 'u3,"u3@example.com,User 3'
    assert "unclosed quote" in rejection.reason
    assert sorted(emulator.users) == sorted(f"u{i}" for i in range(1, 11) if i != 3)
    assert emulator.users["u4"].metadata == {"email": "u4@example.com", "name": "User 4"}
    assert emulator.users["u7"].metadata == {"email": "u7@example.com", "name": "Smith, Jane"}


@pytest.mark.parametrize("csv_multiline", [False, True])
# No mock clock (the server and the client are fast enough): trio's MockClock spins while a
# worker thread reads the file, and this file keeps the threads busy.
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_an_unclosed_quote_at_line_6507_of_30000_rows_costs_that_row_only(
    tmp_path: Path, csv_multiline: bool
) -> None:
    rows = user_rows(30_000)
    rows[6507 - 2] = 'u6506,"u6506@example.com,User 6506'  # line 6,507: the header is line 1
    path = write(tmp_path / "users.csv", rows)
    # The server and the client at 10^7 rows a minute: this is about reading the file.
    emulator = Emulator(rows_per_minute=10**7)
    seen: list[Rejection] = []
    async with EmulatedAnalytex(emulator, rows_per_minute=10**7) as analytex:
        # The default without the keyword: what the CLI and most callers do.
        options = {"csv_multiline": True} if csv_multiline else {}
        result = await analytex.client.import_users(path, on_invalid=seen.append, **options)
    assert (result.rows_read, result.rows_sent, result.rows_rejected) == (30_000, 29_999, 1)
    assert [(r.position, r.line) for r in seen] == [(6505, 6507)]
    assert "unclosed quote" in seen[0].reason
    assert "field larger than field limit" not in seen[0].reason
    if csv_multiline:
        assert "opened on line 6507 runs past 100 lines" in seen[0].reason
    assert len(emulator.users) == 29_999
    assert "u6506" not in emulator.users
    assert emulator.users["u6507"].metadata == {"email": "u6507@example.com", "name": "User 6507"}
    assert emulator.users["u30000"].metadata["name"] == "User 30000"


async def test_csv_multiline_reads_a_quoted_cell_that_spans_lines(tmp_path: Path) -> None:
    path = tmp_path / "companies.csv"
    path.write_text(
        'company_id,address\nc1,"1 Main St\nSpringfield"\nc2,2 High St\n', encoding="utf-8"
    )
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        one_line = await analytex.client.import_companies(path)
        spanning = await analytex.client.import_companies(path, csv_multiline=True)
    # One line per record: the opening line and the closing line (a bare quote) are rejected,
    # each naming its line, and the next row goes in.
    assert [(r.line, r.reason.split(":")[0]) for r in one_line.rejected] == [
        (2, "unclosed quote on line 2"),
        (3, "unclosed quote on line 3"),
    ]
    assert one_line.rows_sent == 1
    assert (spanning.rows_sent, spanning.rejected) == (2, [])
    assert emulator.companies["c1"].metadata == {"address": "1 Main St\nSpringfield"}
