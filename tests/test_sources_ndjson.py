"""NDJSON: every non-blank line is one record, with its position and line."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytex_async._bulk import _files, _parsers
from analytex_async._bulk._sources import SourceRecord

from ._reading import (
    collect,
    collect_until_error,
    ndjson,
)

pytestmark = pytest.mark.anyio


# --- NDJSON files -----------------------------------------------------------------------------


async def test_bom_crlf_and_blank_lines_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(
        b'\xef\xbb\xbf{"user_id": "u1"}\r\n'
        b"\r\n"
        b"   \t \n"
        b"\n"
        b'{"user_id": "u2"}\r\n'
        b'  {"user_id": "u3"}  \n'
        b"\n"
    )
    records = await collect(path)
    assert [(r.position, r.line, r.record) for r in records] == [
        (0, 1, {"user_id": "u1"}),
        (1, 5, {"user_id": "u2"}),
        (2, 6, {"user_id": "u3"}),
    ]


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n\t\n", b"\xef\xbb\xbf"])
async def test_an_empty_or_blank_file_has_no_records(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "users.jsonl"
    path.write_bytes(content)
    assert await collect(path) == []


async def test_undecodable_lines_are_yielded_as_errors_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(
        b'{"user_id": "u1"}\n'
        b'{"user_id": "caf\xe9"}\n'  # Latin-1, not UTF-8
        b"{user_id: u3}\r\n"
        b"\n"
        b'[1, 2]\n"text"\nnull\n'
        b'{"user_id": "u7", "metadata": {"x": NaN, "big": 123456789012345678901234567890}}\n'
        b'{"user_id": "trunc'
    )
    records = await collect(path)
    assert [r.position for r in records] == list(range(8))
    assert [r.line for r in records] == [1, 2, 3, 5, 6, 7, 8, 9]
    assert records[1].error == "line 2 is not valid UTF-8 (byte 0xe9 at offset 16)"
    assert records[1].record == '{"user_id": "caf\ufffd"}'
    assert records[2].error is not None
    assert records[2].error.startswith("not valid JSON: Expecting property name")
    assert records[2].record == "{user_id: u3}"
    # Values that are not objects are still records: validation rejects them, with its reason.
    assert [r.record for r in records[3:6]] == [[1, 2], "text", None]
    assert all(r.error is None for r in records[3:7])
    metadata = records[6].record["metadata"]
    assert metadata["x"] != metadata["x"]  # NaN, left for validation to refuse
    assert metadata["big"] == 123456789012345678901234567890
    assert records[7].error is not None
    assert records[7].error.startswith("not valid JSON: Unterminated string")
    assert records[7].record == '{"user_id": "trunc'


async def test_raw_text_of_a_bad_line_is_cut_to_about_a_thousand_characters() -> None:
    records = await collect(io.BytesIO(b"x" * 50_000 + b"\n" + b"\xff" * 50_000 + b"\n"))
    assert [len(r.record) for r in records] == [1_000, 1_000]
    assert all(r.error for r in records)


async def test_absurd_nesting_is_a_bad_line_not_a_crash() -> None:
    records = await collect(io.BytesIO(b"[" * 200_000 + b"\n" + ndjson({"user_id": "u2"})))
    assert records[0].error == "not valid JSON: nested too deeply"
    assert records[1].record == {"user_id": "u2"}


async def test_a_line_longer_than_the_limit_stops_the_read_after_the_lines_before_it() -> None:
    data = ndjson({"user_id": "u1"}) + b'{"user_id": "' + b"x" * 500
    with (
        mock.patch.object(_parsers, "_MAX_LINE_BYTES", 100),
        mock.patch.object(_files, "_CHUNK_BYTES", 16),
    ):
        seen, error = await collect_until_error(io.BytesIO(data))
    assert [r.record for r in seen] == [{"user_id": "u1"}]
    assert error.line == 2
    assert "longer than" in str(error)


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=4,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
blank_lines = st.lists(st.sampled_from(["", " ", "\t", " \t  "]), max_size=2)


@st.composite
def ndjson_documents(draw: st.DrawFn) -> tuple[str, list[tuple[int, int, Any]]]:
    """NDJSON text with random blank lines, LF / CRLF, BOM and final newline, and what it holds."""
    text = "\ufeff" if draw(st.booleans()) else ""
    expected: list[tuple[int, int, Any]] = []
    line = 0
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        newline = draw(st.sampled_from(["\n", "\r\n"]))
        for blank in draw(blank_lines):
            text += blank + newline
            line += 1
        obj = draw(json_objects)
        line += 1
        expected.append((len(expected), line, obj))
        text += json.dumps(obj, ensure_ascii=draw(st.booleans())) + newline
    if expected and not draw(st.booleans()):
        text = text.removesuffix("\n").removesuffix("\r")  # no newline after the last record
    return text, expected


def as_source(text: str, container: str) -> Any:
    data = text.encode("utf-8")
    if container == "gzip":
        return io.BytesIO(gzip.compress(data))
    if container == "text":
        return io.StringIO(text, newline="")
    return io.BytesIO(data)


@settings(max_examples=25, deadline=None)
@given(
    document=ndjson_documents(),
    container=st.sampled_from(["bytes", "gzip", "text"]),
    chunk=st.sampled_from([5, 64, _files._CHUNK_BYTES]),
    block=st.sampled_from([1, 3, _parsers._BLOCK_LINES]),
)
async def test_any_ndjson_layout_yields_exactly_its_objects_with_positions_and_lines(
    document: tuple[str, list[tuple[int, int, Any]]], container: str, chunk: int, block: int
) -> None:
    text, expected = document
    with (
        mock.patch.object(_files, "_CHUNK_BYTES", chunk),
        mock.patch.object(_parsers, "_BLOCK_LINES", block),
    ):
        records = await collect(as_source(text, container))
    assert all(r.error is None for r in records)
    assert [(r.position, r.line, r.record) for r in records] == expected


@settings(max_examples=60, deadline=None)
@given(
    document=ndjson_documents(),
    container=st.sampled_from(["bytes", "gzip", "text"]),
    chunk=st.integers(min_value=1, max_value=16),
    block=st.integers(min_value=1, max_value=4),
)
def test_any_chunking_of_any_ndjson_layout_splits_the_same_lines(
    document: tuple[str, list[tuple[int, int, Any]]], container: str, chunk: int, block: int
) -> None:
    # The blocking half on its own, without hops to a thread, so that many tiny reads are cheap.
    text, expected = document
    with (
        mock.patch.object(_files, "_CHUNK_BYTES", chunk),
        mock.patch.object(_parsers, "_BLOCK_LINES", block),
    ):
        reader = _files.FileSource("doc", "ndjson", "user", stream=as_source(text, container))
        reader.open()
        records: list[SourceRecord] = []
        while (got := reader.next_block()) is not None:
            assert len(got) <= block
            records.extend(got)
    assert [(r.position, r.line, r.record) for r in records] == expected
