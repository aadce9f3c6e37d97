"""The export readers: any event per the schema survives every format, however its bytes arrive.

The files are written by the emulator's writers (built from the spec, not from the readers) and
read back by the client's; hypothesis makes the events and the network's chunking.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async._exports._columnar import TableBuilder, parquet_pieces, read_avro, read_parquet
from analytex_async._exports._formats import (
    EVENT_FIELDS,
    ExportFileError,
    read_text,
    sniff_raw,
)
from analytex_async.emulator._export_files import render

TYPES = ["identify_user", "identify_company", "interaction", "track", "track_feature", "page_view",
         "session_start"]  # fmt: skip
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
)
primitive = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
moments = st.datetimes(
    min_value=dt.datetime(1971, 1, 1),
    max_value=dt.datetime(2100, 1, 1),
    timezones=st.just(dt.timezone.utc),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = dict.fromkeys(EVENT_FIELDS)
    for name in EVENT_FIELDS:
        if name in ("screen_width", "screen_height"):
            event[name] = draw(st.none() | st.integers(0, 2**31))
        elif name not in ("inserted_at", "metadata", "event_type"):
            event[name] = draw(st.none() | text)
    event["event_type"] = draw(st.sampled_from(TYPES))
    event["inserted_at"] = draw(moments)
    event["metadata"] = draw(st.dictionaries(text, primitive, max_size=4))
    return event


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_back(data: bytes, size: int) -> list[dict[str, Any]]:
    kind = sniff_raw(data[:64])
    out: list[dict[str, Any]] = []
    if kind in ("ndjson", "csv"):
        async for batch in read_text(chunked(data, size), kind, "f"):
            out.extend(batch)
        return out
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f"
        path.write_bytes(data)
        reader = read_parquet if kind == "parquet" else read_avro
        async for batch in reader(path, "f"):
            out.extend(batch)
    return out


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "parquet", "avro"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(events(), max_size=12), size=st.integers(1, 4096))
def test_any_event_survives_each_format(fmt: str, rows: list[dict[str, Any]], size: int) -> None:
    data = render(rows, fmt)
    assert sniff_raw(data[:64]) == fmt
    assert anyio.run(read_back, data, size) == rows


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(events(), min_size=1, max_size=8))
def test_a_parquet_export_becomes_the_same_table_as_its_events(rows: list[dict[str, Any]]) -> None:
    data = render(rows, "parquet")

    async def build() -> tuple[Any, Any]:
        from_parquet, from_events = TableBuilder(), TableBuilder()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "f"
            path.write_bytes(data)
            await parquet_pieces(path, "f", from_parquet)
        from_events.add_events(await read_back(render(rows, "ndjson"), 4096))
        return from_parquet.table(), from_events.table()

    parquet_table, events_table = anyio.run(build)
    assert parquet_table.schema == events_table.schema
    assert parquet_table.column("inserted_at").to_pylist() == [r["inserted_at"] for r in rows]
    assert [json.loads(m) for m in parquet_table.column("metadata").to_pylist()] == [
        r["metadata"] for r in rows
    ]
    assert parquet_table.drop_columns(["metadata"]).equals(events_table.drop_columns(["metadata"]))


def test_metadata_as_a_json_string_unknown_columns_and_odd_cells_are_read_the_same() -> None:
    line = {
        "event_type": "track",
        "user_id": "u1",
        "inserted_at": "2026-11-02T10:00:00+01:00",
        "metadata": '{"plan": "pro"}',
        "screen_width": 1920.0,
        "screen_height": "",
        "a_new_column": "ignored",
    }
    members = gzip.compress(json.dumps(line).encode() + b"\n") + gzip.compress(
        b"\n" + json.dumps({**line, "user_id": "u2", "metadata": None}).encode()
    )
    events = anyio.run(read_back, members, 7)
    assert [e["user_id"] for e in events] == ["u1", "u2"]
    first = events[0]
    assert first["metadata"] == {"plan": "pro"}
    assert events[1]["metadata"] == {}
    assert first["inserted_at"] == dt.datetime(2026, 11, 2, 9, tzinfo=dt.timezone.utc)
    assert first["screen_width"] == 1920
    assert first["screen_height"] is None
    assert "a_new_column" not in first
    assert list(first) == list(EVENT_FIELDS)


def test_a_csv_with_extra_columns_and_a_cell_spanning_lines() -> None:
    data = (
        b"extra,event_type,user_id,inserted_at,user_agent,metadata\r\n"
        b'x,track,u1,2026-11-02 10:00:00,"two\nlines","{""note"": ""a, b""}"\r\n'
        b"y,page_view,u2,2026-11-02T10:00:01.5Z,,\r\n"
    )
    events = anyio.run(read_back, data, 3)
    assert [e["user_id"] for e in events] == ["u1", "u2"]
    assert events[0]["metadata"] == {"note": "a, b"}
    assert events[0]["user_agent"] == "two\nlines"
    assert events[0]["inserted_at"] == dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc)
    assert events[1]["inserted_at"].microsecond == 500_000
    assert events[1]["metadata"] == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"event_type": "track", "inserted_at": "2026-01-01T00:00:00Z"}\n[1]\n', "record 1"),
        (b'{"inserted_at": "2026-01-01T00:00:00Z", "metadata": "not json"}\n', "metadata"),
        (b'{"inserted_at": "2026-01-01T00:00:00Z", "screen_width": 1.5}\n', "screen_width"),
        (b'{"inserted_at": "noon"}\n', "inserted_at"),
        (gzip.compress(b'{"a": 1}\n' * 100)[:-12], "truncated"),
    ],
)
def test_a_file_that_is_not_events_names_the_record(data: bytes, message: str) -> None:
    with pytest.raises(ExportFileError, match=message):
        anyio.run(read_back, data, 16)
