"""CSV: a header row names the columns; every other row becomes a record dict."""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analytex_async._bulk._sources import SourceRecord

from ._reading import (
    collect,
    collect_until_error,
    spy_on_opens,
    truncated,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every file the sources open, to check that each one is closed."""
    return spy_on_opens(monkeypatch)


async def test_a_corrupt_gzip_csv_raises_with_the_line_too(tmp_path: Path) -> None:
    path = tmp_path / "users.csv.gz"
    rows = "user_id,n\n" + "".join(f"u{i},{(i * 2654435761) % 2**32}\n" for i in range(6_000))
    path.write_bytes(truncated(gzip.compress(rows.encode())))
    seen, error = await collect_until_error(path)
    assert seen
    assert [r.line for r in seen] == list(range(2, len(seen) + 2))
    assert f"gzip stream is corrupt after line {len(seen) + 1}" in str(error)
    assert error.line == len(seen) + 2


# --- CSV --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["users.csv", "users.csv.gz"])
async def test_csv_users_map_columns_to_id_company_and_metadata(tmp_path: Path, name: str) -> None:
    text = (
        "\ufeffuser_id,company_id,name,plan\r\n"
        "u1,c1,Jane,pro\r\n"
        "u2,,Bob,\r\n"
        "\r\n"
        ",,,\r\n"
        'u3,c3,"Doe, John",""\r\n'
        "u4\r\n"
        ",c5,Nobody,free\r\n"
    )
    data = text.encode("utf-8")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    records = await collect(path)
    assert [(r.position, r.line, r.record) for r in records] == [
        (0, 2, {"user_id": "u1", "company_id": "c1", "metadata": {"name": "Jane", "plan": "pro"}}),
        (1, 3, {"user_id": "u2", "metadata": {"name": "Bob"}}),
        (2, 6, {"user_id": "u3", "company_id": "c3", "metadata": {"name": "Doe, John"}}),
        (3, 7, {"user_id": "u4", "metadata": {}}),
        (4, 8, {"user_id": "", "company_id": "c5", "metadata": {"name": "Nobody", "plan": "free"}}),
    ]


async def test_csv_companies_keep_every_other_column_as_metadata(tmp_path: Path) -> None:
    path = tmp_path / "companies.csv"
    path.write_text("name,company_id,user_id\nAcme,c1,u1\n", encoding="utf-8")
    records = await collect(path, "company")
    assert [r.record for r in records] == [
        {"company_id": "c1", "metadata": {"name": "Acme", "user_id": "u1"}}
    ]


async def test_with_csv_multiline_quoted_newlines_span_lines_and_line_numbers_follow(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(
        b'user_id,bio\r\nu1,"line one\r\nline two\r\nline three"\r\nu2,plain\r\nu3,"a\nb"\nu4,x\n'
    )
    records = await collect(path, csv_multiline=True)
    assert [(r.line, r.record["user_id"]) for r in records] == [
        (2, "u1"),
        (5, "u2"),
        (6, "u3"),
        (8, "u4"),
    ]
    assert records[0].record["metadata"]["bio"] == "line one\r\nline two\r\nline three"


async def test_csv_rows_with_extra_cells_or_bad_bytes_are_errors_and_short_rows_are_padded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"user_id,a,b\nu1,1,2,3\nu2,caf\xe9,x\nu3\nu4,1,2\n")
    records = await collect(path)
    assert [(r.position, r.line) for r in records] == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert records[0].error == "row has 4 fields, header has 3"
    assert records[0].record == "u1,1,2,3"
    assert records[1].error == "line 3 is not valid UTF-8 (in column 'a')"
    assert records[1].record == "u2,caf\ufffd,x"
    assert records[2] == SourceRecord(2, 4, {"user_id": "u3", "metadata": {}})
    assert records[3].record == {"user_id": "u4", "metadata": {"a": "1", "b": "2"}}


@pytest.mark.parametrize(
    ("header", "kind", "message"),
    [
        ("id,name", "user", "no 'user_id' column, which user records need (columns: 'id', 'name')"),
        ("user_id,name", "company", "no 'company_id' column"),
        ("user_id,name,name", "user", "duplicate header column(s) 'name'"),
        ("user_id,,name", "user", "header column 2 has no name"),
    ],
)
async def test_an_unusable_csv_header_raises_naming_file_line_and_columns(
    tmp_path: Path, header: str, kind: str, message: str, opened: list[Any]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"{header}\nu1,x,y\n", encoding="utf-8")
    seen, error = await collect_until_error(path, kind)
    assert seen == []
    assert message in str(error)
    assert str(path) in str(error)
    assert error.line == 1
    assert str(error).startswith("line 1, field 'source': ")
    assert opened[0].closed


async def test_an_empty_csv_file_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"")
    _, error = await collect_until_error(path)
    assert "header" in str(error)


async def test_a_csv_text_stream_may_carry_a_bom() -> None:
    records = await collect(io.StringIO("\ufeff user_id ,plan\nu1,pro\n"), format="csv")
    assert [r.record for r in records] == [{"user_id": "u1", "metadata": {"plan": "pro"}}]


@pytest.mark.parametrize("multiline", [False, True])
async def test_a_csv_field_over_the_csv_limit_is_a_rejection_and_the_read_goes_on(
    multiline: bool,
) -> None:
    data = "user_id,bio\nu1,short\nu2," + "x" * 200_000 + "\nu3,after\n"
    records = await collect(io.StringIO(data), format="csv", csv_multiline=multiline)
    assert [(r.line, r.error is None) for r in records] == [(2, True), (3, False), (4, True)]
    assert records[0].record["user_id"] == "u1"
    assert records[1].error == "not valid CSV: field larger than field limit (131072)"
    assert records[1].record.startswith("u2,xxx")
    assert len(records[1].record) <= 1_000
    assert records[2].record["user_id"] == "u3"


csv_cells = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.tuples(csv_cells.filter(str.strip), csv_cells, csv_cells), max_size=8),
    newline=st.sampled_from(["\n", "\r\n"]),
)
async def test_any_csv_written_by_the_csv_module_reads_back_with_its_line_numbers(
    rows: list[tuple[str, str, str]], newline: str
) -> None:
    if newline == "\n":
        # With a bare-LF terminator the csv writer leaves a lone CR unquoted, which no reader
        # can tell from a line end: not a case a real file can contain.
        assume(not any("\r" in cell for row in rows for cell in row))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(["user_id", "company_id", "note"])
    expected = []
    for user_id, company_id, note in rows:
        line = len(re.findall(r"\r\n|\r|\n", buffer.getvalue())) + 1
        writer.writerow([user_id, company_id, note])
        record: dict[str, Any] = {"user_id": user_id}
        if company_id:
            record["company_id"] = company_id
        record["metadata"] = {"note": note} if note else {}
        expected.append((line, record))
    data = buffer.getvalue().encode("utf-8")
    records = await collect(io.BytesIO(data), format="csv", csv_multiline=True)
    assert [(r.line, r.record) for r in records] == expected
    if not re.search(r"[\r\n]", "".join(cell for row in rows for cell in row)):
        # No cell spans lines: one line per record reads the same.
        records = await collect(io.BytesIO(data), format="csv")
        assert [(r.line, r.record) for r in records] == expected
