"""CSV quotes: one physical line is one record unless cells that span lines are asked for.

A line whose quotes do not pair up is a rejection naming it, and the next line is read as usual;
with ``csv_multiline=True`` a quoted cell may span lines, up to a bound, past which the record is
a rejection naming the line where it opened and the lines it took are read again.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from analytex_async import ValidationError
from analytex_async._bulk import _csv_parser

from ._reading import collect, collect_until_error

pytestmark = pytest.mark.anyio

HEADER = "user_id,email,name\n"


def summary(records: list[Any]) -> list[tuple[int, str]]:
    """Each record as (line, user_id), or (line, "!" + reason) for a rejection."""
    return [(r.line, "!" + r.error if r.error else r.record["user_id"]) for r in records]


async def test_an_unclosed_quote_rejects_its_line_and_the_next_lines_are_read_as_usual(
    tmp_path: Path,
) -> None:
    # The file: an unclosed quote on row 3 and an ordinary quoted cell on row 7. Read
    # as one CSV stream, rows 4 to 7 became part of row 3's email and nothing was rejected.
    rows = [f"u{i},u{i}@example.com,User {i}" for i in range(1, 11)]
    rows[2] = 'u3,"u3@example.com,User 3'
    rows[6] = 'u7,u7@example.com,"Smith, Jane"'
    path = tmp_path / "users.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    records = await collect(path)
    assert [(r.position, r.line) for r in records] == [(i, i + 2) for i in range(10)]
    rejected = [r for r in records if r.error]
    assert [(r.line, r.record) for r in rejected] == [(4, 'u3,"u3@example.com,User 3')]
    assert rejected[0].error is not None
    assert rejected[0].error.startswith("unclosed quote on line 4: ")
    assert "csv_multiline=True" in rejected[0].error
    assert "--csv-multiline" in rejected[0].error
    read = [r.record for r in records if not r.error]
    assert [record["user_id"] for record in read] == [f"u{i}" for i in (1, 2, 4, 5, 6, 7, 8, 9, 10)]
    assert read[5]["metadata"] == {"email": "u7@example.com", "name": "Smith, Jane"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # A doubled quote inside a quoted cell is a quote.
        ('u1,"b""c",d', ("u1", 'b"c', "d")),
        ('u1,"",""', ("u1", "", "")),
        ('u1,"a,b","x\r"', ("u1", "a,b", "x\r")),
        # Quotes inside an unquoted cell that pair up are read as they are (the csv module's
        # reading, as before).
        ('u1,say "hi",x', ("u1", 'say "hi"', "x")),
        # A quoted cell followed by more text: the csv module's lenient reading, as before.
        ('u1,"ab"cd,x', ("u1", "abcd", "x")),
    ],
)
async def test_lines_whose_quotes_pair_up_are_read_by_the_csv_rules(
    line: str, expected: tuple[str, str, str]
) -> None:
    records = await collect(io.StringIO(f"{HEADER}{line}\nu9,a,b\n"), format="csv")
    assert [r.error for r in records] == [None, None]
    user_id, email, name = expected
    metadata = {key: value for key, value in (("email", email), ("name", name)) if value}
    assert records[0].record == {"user_id": user_id, "metadata": metadata}


@pytest.mark.parametrize(
    "line",
    [
        'u1,"never closed',
        'u1,"a""b',  # the doubled quote is a quote; the cell stays open
        "u1,5'10\",x",  # an odd count: a bare quote, the shape of a cell's closing line
        'u1,a"b,"c',  # an even count, but the last cell opens and never closes
        '"',
    ],
)
@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
async def test_a_line_whose_quotes_do_not_pair_up_is_rejected_alone(line: str, ending: str) -> None:
    text = f"{HEADER}u0,x,y{ending or chr(10)}{line}{ending}"
    if ending:
        text += f"u2,x,y{ending}"
    records = await collect(io.StringIO(text, newline=""), format="csv")
    assert [(r.line, r.error is None) for r in records] == [(2, True), (3, False)] + (
        [(4, True)] if ending else []
    )
    assert records[1].record == line
    assert records[1].error is not None
    assert records[1].error.startswith("unclosed quote on line 3: ")


async def test_an_unclosed_quote_in_the_header_makes_the_file_unusable() -> None:
    seen, error = await collect_until_error(io.StringIO('user_id,"name\nu1,x\n'), format="csv")
    assert seen == []
    assert error.line == 1
    assert "the header row is not usable: unclosed quote on line 1" in str(error)


async def test_a_row_with_bad_quotes_does_not_hide_a_row_with_too_many_cells() -> None:
    text = f'{HEADER}u1,"x\nu2,a,b,c\nu3,a,b\n'
    records = await collect(io.StringIO(text), format="csv")
    assert [(r.line, r.error) for r in records][1:] == [
        (3, "row has 4 fields, header has 3"),
        (4, None),
    ]


# --- csv_multiline=True ---------------------------------------------------------------------


async def test_with_csv_multiline_a_quoted_cell_spans_lines() -> None:
    text = f'{HEADER}u1,"a\r\nb\nc",x\nu2,y,z\n'
    records = await collect(io.StringIO(text, newline=""), format="csv", csv_multiline=True)
    assert summary(records) == [(2, "u1"), (5, "u2")]
    assert records[0].record["metadata"] == {"email": "a\r\nb\nc", "name": "x"}


async def test_with_csv_multiline_a_cell_running_past_100_lines_is_rejected_and_the_rest_read() -> (
    None
):
    assert _csv_parser.CSV_MULTILINE_MAX_LINES == 100
    rows = ['u0,"opens and never closes'] + [f"u{i},x,y" for i in range(1, 151)]
    text = HEADER + "\n".join(rows) + "\n"
    records = await collect(io.StringIO(text), format="csv", csv_multiline=True)
    assert records[0].line == 2
    assert records[0].record == 'u0,"opens and never closes'
    assert records[0].error == (
        "unclosed quote: the quoted cell opened on line 2 runs past 100 lines"
    )
    # Parsing resumes at the line after the one that opened the cell: nothing it swallowed
    # is lost.
    assert summary(records[1:]) == [(i + 2, f"u{i}") for i in range(1, 151)]


async def test_with_csv_multiline_a_cell_still_open_at_the_end_is_rejected_and_its_lines_read() -> (
    None
):
    text = f'{HEADER}u1,x,y\nu2,"a\nu3,b,c\nu4,d,e'
    records = await collect(io.StringIO(text), format="csv", csv_multiline=True)
    assert summary(records) == [
        (2, "u1"),
        (
            3,
            "!unclosed quote: the quoted cell opened on line 3 is still open at the end of the "
            "file",
        ),
        (4, "u3"),
        (5, "u4"),
    ]


async def test_with_csv_multiline_a_record_over_the_size_bound_is_rejected() -> None:
    text = f'{HEADER}u1,"{"x" * 40}\n{"y" * 40}\n{"z" * 40}",w\nu2,a,b\n'
    with mock.patch.object(_csv_parser, "CSV_MULTILINE_MAX_CHARS", 100):
        records = await collect(io.StringIO(text), format="csv", csv_multiline=True)
    assert summary(records) == [
        (2, "!unclosed quote: the record opened on line 2 runs past 100 characters"),
        # Read again on their own: the csv rules take the quote in an unquoted cell as text.
        (3, "y" * 40),
        (4, "z" * 40 + '"'),
        (5, "u2"),
    ]


async def test_with_csv_multiline_a_cell_over_the_field_limit_is_rejected_at_its_opening() -> None:
    chunk = "x" * 60_000
    text = f'{HEADER}u1,"{chunk}\n{chunk}\n{chunk}",w\nu2,a,b\n'
    records = await collect(io.StringIO(text), format="csv", csv_multiline=True)
    assert records[0].line == 2
    assert records[0].error == "not valid CSV: field larger than field limit (131072)"
    assert [r.line for r in records] == [2, 3, 4, 5]
    assert records[-1].record["user_id"] == "u2"


@pytest.mark.parametrize("value", ["yes", 1, None])
async def test_csv_multiline_must_be_a_bool(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        await collect(io.StringIO(HEADER), format="csv", csv_multiline=value)
    assert caught.value.field == "csv_multiline"


async def test_csv_multiline_is_ignored_for_ndjson() -> None:
    data = b'{"user_id": "u1", "metadata": {"note": "a \\"quote"}}\n'
    records = await collect(io.BytesIO(data), csv_multiline=True)
    assert [r.record for r in records] == [{"user_id": "u1", "metadata": {"note": 'a "quote'}}]
