"""CSV with random quotes and line breaks: every physical line is accounted for.

Whatever the quotes do, each line of the file ends up in exactly one record that was read or
rejected (with ``csv_multiline=True``, maybe inside a record that spans lines), or holds no data
at all. By default no record spans lines. The parser is driven directly, block by block, as the
worker thread drives it.
"""

from __future__ import annotations

import io
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from analytex_async._bulk import _csv_parser, _parsers
from analytex_async._bulk._files import FileSource
from analytex_async._bulk._parsers import SourceRecord

# Pieces of CSV text, quotes and line breaks over-represented so that cells open, close,
# double their quotes, and span lines in every order. No lone CR: a reader cannot tell one
# from a line end, and no real file holds one.
PIECES = st.sampled_from(["a", "b", " ", ",", ",", '"', '"', '""', "\n", "\n", "\r\n", "é"])
BODIES = st.lists(PIECES, max_size=120).map("".join)


def parse(text: str, *, multiline: bool) -> list[SourceRecord]:
    """Every record of CSV ``text``, read as the import reads a file."""
    source = FileSource(
        "t.csv", "csv", "user", stream=io.BytesIO(text.encode()), csv_multiline=multiline
    )
    source.open()
    records: list[SourceRecord] = []
    while (block := source.next_block()) is not None:
        records.extend(block)
    return records


def line_breaks(value: Any) -> int:
    """How many line breaks the strings of a record hold (CRLF counts once)."""
    if isinstance(value, str):
        return value.count("\n")
    if isinstance(value, dict):
        return sum(line_breaks(item) for item in value.values())
    return 0


def check_every_line_is_accounted_for(text: str, records: list[SourceRecord]) -> list[int]:
    """Assert the accounting; return how many lines each record spans."""
    lines = io.StringIO(text, newline="").readlines()
    assert [r.position for r in records] == list(range(len(records)))
    owner: dict[int, int] = {}
    spans = []
    for record in records:
        assert record.line is not None
        # A record read spans as many lines as its cells hold line breaks, plus one; a
        # rejection's text is its first line, or the row its cells made (too many cells).
        span = 1 + line_breaks(record.record)
        spans.append(span)
        for number in range(record.line, record.line + span):
            assert 2 <= number <= len(lines), (record, number)
            assert number not in owner, (record, number)  # no line in two records
            owner[number] = record.position
    for number, line in enumerate(lines[1:], start=2):
        if number not in owner:
            # Lines no record holds carry no data: blank, or empty cells only.
            assert not any(ch.isalpha() for ch in line), (number, line)
    return spans


@settings(max_examples=300, deadline=None)
@given(body=BODIES, block=st.sampled_from([1, 3, 100]))
def test_by_default_every_line_is_one_record_a_rejection_or_no_data(body: str, block: int) -> None:
    text = "user_id,note\n" + body
    with mock.patch.object(_parsers, "_BLOCK_LINES", block):
        records = parse(text, multiline=False)
    spans = check_every_line_is_accounted_for(text, records)
    assert set(spans) <= {1}  # never a record made of two lines
    for record in records:
        if record.error and "quote" in record.error:
            assert record.error.startswith(f"unclosed quote on line {record.line}: ")
            assert '"' in record.record


@settings(max_examples=300, deadline=None)
@given(
    body=BODIES,
    block=st.sampled_from([1, 3, 100]),
    max_lines=st.sampled_from([1, 2, 4, 100]),
    max_chars=st.sampled_from([8, 30, 1 << 20]),
)
def test_with_csv_multiline_every_line_is_in_one_record_a_rejection_or_no_data(
    body: str, block: int, max_lines: int, max_chars: int
) -> None:
    text = "user_id,note\n" + body
    with (
        mock.patch.object(_parsers, "_BLOCK_LINES", block),
        mock.patch.object(_csv_parser, "CSV_MULTILINE_MAX_LINES", max_lines),
        mock.patch.object(_csv_parser, "CSV_MULTILINE_MAX_CHARS", max_chars),
    ):
        records = parse(text, multiline=True)
    spans = check_every_line_is_accounted_for(text, records)
    assert max(spans, default=1) <= max_lines
    for record in records:
        if record.error and record.error.startswith("unclosed quote"):
            assert f"line {record.line} " in record.error
