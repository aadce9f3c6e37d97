"""Files: paths and file objects are opened, gzip is recognised, and files are closed."""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from analytex_async._bulk import _files, _parsers
from analytex_async._bulk._sources import SourceRecord, read_source

from ._reading import (
    OBJECTS,
    collect,
    collect_until_error,
    ndjson,
    numbered_lines,
    spy_on_opens,
    truncated,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every file the sources open, to check that each one is closed."""
    return spy_on_opens(monkeypatch)


async def test_a_missing_file_is_a_validation_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.ndjson"
    _, error = await collect_until_error(path)
    assert f"{path}: no such file" in str(error)
    assert error.field == "source"
    assert isinstance(error.__cause__, FileNotFoundError)


async def test_a_directory_is_a_validation_error(tmp_path: Path) -> None:
    (tmp_path / "dir.ndjson").mkdir()
    _, error = await collect_until_error(tmp_path / "dir.ndjson")
    assert "cannot open" in str(error)
    assert isinstance(error.__cause__, OSError)


@pytest.mark.parametrize(
    "name", ["users.ndjson", "users.jsonl", "users.ndjson.gz", "users.jsonl.gz", "USERS.JSONL.GZ"]
)
async def test_each_ndjson_file_kind_is_read_with_positions_and_lines(
    tmp_path: Path, name: str, opened: list[Any]
) -> None:
    data = ndjson(*OBJECTS)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.lower().endswith(".gz") else data)
    records = await collect(path)
    assert records == [SourceRecord(i, i + 1, obj) for i, obj in enumerate(OBJECTS)]
    assert len(opened) == 1
    assert opened[0].closed


async def test_lines_are_decoded_off_the_event_loop_thread(tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(ndjson(*OBJECTS))
    decoded_on: set[int] = set()
    decode = _parsers._decode_json

    def spy(text: str) -> Any:
        decoded_on.add(threading.get_ident())
        return decode(text)

    with mock.patch.object(_parsers, "_decode_json", spy):
        assert [r.record for r in await collect(path)] == OBJECTS
    assert decoded_on
    assert threading.get_ident() not in decoded_on


# --- gzip -------------------------------------------------------------------------------------


def _corrupt_crc(data: bytes) -> bytes:
    return data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:]


def _garbage_in_the_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + b"\xff" * 64 + data[middle + 64 :]


def _garbage_after_the_end(data: bytes) -> bytes:
    return data + b"this is not gzip"


@pytest.mark.parametrize(
    "damage", [_corrupt_crc, truncated, _garbage_in_the_middle, _garbage_after_the_end]
)
async def test_a_corrupt_gzip_file_raises_naming_the_line_after_the_good_records(
    tmp_path: Path, damage: Any, opened: list[Any]
) -> None:
    count = 6_000
    data = numbered_lines(count)
    path = tmp_path / "users.ndjson.gz"
    path.write_bytes(damage(gzip.compress(data)))
    seen, error = await collect_until_error(path)
    assert error.field == "source"
    assert error.line is not None
    assert f"gzip stream is corrupt after line {error.line - 1}: " in str(error)
    assert str(path) in str(error)
    assert error.__cause__ is not None
    assert not seen or error.line > (seen[-1].line or 0)
    # Every good record before the damage came out, in order.
    good = list(itertools.takewhile(lambda r: r.error is None, seen))
    assert [r.line for r in good] == list(range(1, len(good) + 1))
    assert [r.record for r in good] == [json.loads(line) for line in data.splitlines()[: len(good)]]
    if damage is _corrupt_crc or damage is _garbage_after_the_end:
        assert good == seen
        assert len(seen) == count  # the damage is after the last record
        assert error.line == count + 1
    elif damage is truncated:
        assert good == seen
        assert 0 < len(seen) < count
        assert error.line == len(seen) + 1
    else:
        # Garbage in the middle may inflate into junk lines (yielded as bad lines) before the
        # decompressor or the checksum notices.
        assert 0 < len(good) < count
    assert opened[0].closed


async def test_a_gz_file_that_is_not_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson.gz"
    path.write_bytes(ndjson({"user_id": "u1"}))
    seen, error = await collect_until_error(path)
    assert seen == []
    assert "not a gzip file" in str(error)
    assert error.line == 1


class _FailingStream(io.RawIOBase):
    """Hands out some data, then fails like a disk or a network mount can."""

    name = "flaky.ndjson"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.data:
            raise OSError(5, "Input/output error")
        size = min(len(buffer), len(self.data), 10)
        buffer[:size] = self.data[:size]
        self.data = self.data[size:]
        return size


async def test_an_io_error_while_reading_raises_naming_the_file_after_the_good_records() -> None:
    seen, error = await collect_until_error(_FailingStream(ndjson({"user_id": "u1"}) + b'{"us'))
    assert [r.record for r in seen] == [{"user_id": "u1"}]
    assert "flaky.ndjson: cannot read after line 1" in str(error)
    assert error.line == 2
    assert isinstance(error.__cause__, OSError)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (gzip.compress(b"{}"), True),
        (b"\x1f\x8b", True),
        (b"\x1f", False),
        (b"", False),
        (b'{"user_id": "u1"}', False),
        (b"\xef\xbb\xbf\x1f\x8b", False),
    ],
)
def test_gzip_data_is_told_by_its_magic_bytes(head: bytes, expected: bool) -> None:
    assert _files.is_gzip(head) is expected


@pytest.mark.parametrize(
    ("name", "compress"),
    [("users.ndjson", False), ("users.ndjson.gz", True), ("mislabelled.ndjson.gz", False)],
)
def test_open_decompressed_reads_the_content_whatever_the_name_and_closes_the_file(
    tmp_path: Path, name: str, compress: bool, opened: list[Any]
) -> None:
    data = numbered_lines(1_000)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    with _files.open_decompressed(path) as stream:
        assert stream.read() == data
    assert len(opened) == 1
    assert opened[0].closed


def test_open_decompressed_lets_a_damaged_gzip_stream_fail_as_it_is_read(
    tmp_path: Path, opened: list[Any]
) -> None:
    path = tmp_path / "users.ndjson.gz"
    path.write_bytes(truncated(gzip.compress(numbered_lines(1_000))))
    with pytest.raises(EOFError), _files.open_decompressed(path) as stream:
        stream.read()
    assert opened[0].closed
    with pytest.raises(FileNotFoundError), _files.open_decompressed(tmp_path / "nowhere.gz"):
        pass


# --- file objects -----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
async def test_binary_streams_are_read_and_left_open(compress: bool) -> None:
    data = b"\xef\xbb\xbf" + ndjson(*OBJECTS)
    stream = io.BytesIO(gzip.compress(data) if compress else data)
    records = await collect(stream)
    assert [(r.line, r.record) for r in records] == [
        (1, OBJECTS[0]),
        (2, OBJECTS[1]),
        (3, OBJECTS[2]),
    ]
    assert not stream.closed


async def test_text_streams_are_read_and_left_open() -> None:
    stream = io.StringIO('\ufeff{"user_id": "u1"}\r\n\n{"user_id": "u2"}\n', newline="")
    records = await collect(stream)
    assert [(r.line, r.record) for r in records] == [(1, {"user_id": "u1"}), (3, {"user_id": "u2"})]
    assert not stream.closed


async def test_a_text_stream_with_escaped_bad_bytes_reports_them_as_invalid_utf8(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(b'{"user_id": "\xff"}\n{"user_id": "u2"}\n')
    with open(path, encoding="utf-8", errors="surrogateescape") as text:  # noqa: ASYNC230
        records = await collect(text)
        assert not text.closed
    assert records[0].error == "line 1 is not valid UTF-8 (byte 0xff at offset 13)"
    assert records[1].record == {"user_id": "u2"}


async def test_files_opened_by_the_caller_are_not_closed(tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(ndjson(*OBJECTS))
    with (
        open(path, "rb") as binary,  # noqa: ASYNC230  # the caller's own handles are the point
        open(path, encoding="utf-8") as text,  # noqa: ASYNC230
    ):
        assert [r.record for r in await collect(binary)] == OBJECTS
        assert [r.record for r in await collect(text)] == OBJECTS
        assert not binary.closed
        assert not text.closed


async def test_an_unseekable_gzip_pipe_is_sniffed_and_read() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, gzip.compress(ndjson(*OBJECTS)))
    os.close(write_end)
    with open(read_end, "rb") as pipe:  # noqa: ASYNC230
        assert [r.record for r in await collect(pipe)] == OBJECTS


async def test_a_stream_is_read_as_csv_when_asked() -> None:
    data = gzip.compress(b"company_id,name\r\nc1,Acme\r\n")
    records = await collect(io.BytesIO(data), "company", format="csv")
    assert [r.record for r in records] == [{"company_id": "c1", "metadata": {"name": "Acme"}}]


@pytest.mark.parametrize("name", ["users.ndjson", "users.csv.gz"])
async def test_a_file_is_closed_when_the_reader_stops_early(
    tmp_path: Path, name: str, opened: list[Any]
) -> None:
    path = tmp_path / name
    data = b"user_id\n" + b"u\n" * 10_000 if ".csv" in name else ndjson(*OBJECTS * 3_000)
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    async with contextlib.aclosing(read_source(path, "user")) as records:
        async for _record in records:
            break
        assert not opened[0].closed
    assert opened[0].closed


async def test_a_file_is_closed_when_the_reader_is_cancelled(
    tmp_path: Path, opened: list[Any]
) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(ndjson(*OBJECTS * 3_000))
    with anyio.CancelScope() as scope:
        async with contextlib.aclosing(read_source(path, "user")) as records:
            async for _record in records:
                scope.cancel()
                await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert opened[0].closed
