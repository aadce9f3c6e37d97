"""Parquet files as sources: the table rules, record batches, file errors, and the extra."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import threading
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytex_async import ValidationError
from analytex_async._bulk import _cells, _frames
from analytex_async._bulk._sources import SourceRecord, read_source

from ._reading import collect, collect_until_error
from ._tables import EXPECTED, arrow_users, one_column, pandas_users

pytestmark = pytest.mark.anyio


def write(path: Path, table: pa.Table, **options: Any) -> Path:
    pq.write_table(table, path, **options)
    return path


@pytest.mark.parametrize("name", ["users.parquet", "USERS.PARQUET"])
async def test_every_kind_of_cell_becomes_what_the_api_takes(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, arrow_users())
    items = await collect(path)
    assert [item.error for item in items] == [None, None, None]
    assert [item.record for item in items] == EXPECTED
    assert [(item.position, item.line) for item in items] == [(0, None), (1, None), (2, None)]


async def test_a_str_path_reads_the_same(tmp_path: Path) -> None:
    path = write(tmp_path / "users.parquet", arrow_users())
    assert [item.record for item in await collect(str(path))] == EXPECTED


async def test_pandas_written_files_read_like_the_table(tmp_path: Path) -> None:
    path = tmp_path / "users.parquet"
    pandas_users().to_parquet(path)
    assert [item.record for item in await collect(path)] == EXPECTED


async def test_nanosecond_timestamps_are_written_to_the_microsecond(tmp_path: Path) -> None:
    stamps = pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns"))
    path = write(tmp_path / "ns.parquet", pa.table({"user_id": ["a", "b"], "at": stamps}))
    assert [item.record for item in await collect(path)] == [
        {"user_id": "a", "metadata": {"at": "2023-11-14T22:13:20.123456+00:00"}},
        {"user_id": "b"},
    ]


async def test_a_map_column_named_metadata_adds_its_keys(tmp_path: Path) -> None:
    maps = pa.array([[("plan", "pro"), ("seats", None)], None], pa.map_(pa.string(), pa.string()))
    path = write(tmp_path / "m.parquet", pa.table({"user_id": ["a", "b"], "metadata": maps}))
    assert [item.record for item in await collect(path)] == [
        {"user_id": "a", "metadata": {"plan": "pro"}},
        {"user_id": "b"},
    ]


@pytest.mark.parametrize(
    ("values", "dtype", "what"),
    [
        ([None, ["x"], None], pa.list_(pa.string()), "list"),
        ([None, b"x", None], pa.binary(), "bytes"),
        ([None, dt.timedelta(seconds=5), None], pa.duration("us"), "timedelta"),
        ([None, {"a": 1}, None], pa.struct([("a", pa.int64())]), "dict"),
    ],
)
async def test_a_cell_the_api_cannot_take_rejects_its_row_naming_the_column(
    tmp_path: Path, values: list[Any], dtype: Any, what: str
) -> None:
    path = write(tmp_path / "bad.parquet", one_column("pyarrow", "extra", values, dtype))
    items = await collect(path)
    assert [item.record for item in items if item.error is None] == [
        {"user_id": "a"},
        {"user_id": "c"},
    ]
    assert items[1].position == 1
    assert items[1].error is not None
    assert items[1].error.startswith(f"column 'extra': a {what} is not a metadata value")


async def test_a_float_id_is_a_rejection_naming_the_column(tmp_path: Path) -> None:
    path = write(tmp_path / "f.parquet", pa.table({"user_id": [1.5, 2.0]}))
    items = await collect(path)
    assert [item.position for item in items] == [0, 1]
    assert all(
        item.error is not None and item.error.startswith("column 'user_id': an id must be")
        for item in items
    )


async def test_a_file_without_its_id_column_is_an_error_naming_its_columns(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "c.parquet", pa.table({"company_id": ["x"], "size": [3]}))
    seen, error = await collect_until_error(path, "user")
    assert seen == []
    assert str(error) == (
        f"field 'source': {path}: the table has no 'user_id' column, which user records need "
        "(columns: 'company_id', 'size')"
    )
    companies = await collect(path, "company")
    assert [item.record for item in companies] == [{"company_id": "x", "metadata": {"size": 3}}]


async def test_a_missing_file_is_a_validation_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.parquet"
    _, error = await collect_until_error(path)
    assert str(error) == f"field 'source': {path}: no such file"
    assert isinstance(error.__cause__, FileNotFoundError)


async def test_a_file_that_is_not_parquet_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "users.parquet"
    path.write_text('{"user_id": "a"}\n')
    _, error = await collect_until_error(path)
    assert str(error).startswith(f"field 'source': {path}: not a readable Parquet file: ")


async def test_a_parquet_path_takes_no_format(tmp_path: Path) -> None:
    path = write(tmp_path / "users.parquet", arrow_users())
    with pytest.raises(ValidationError, match=r"a \.parquet file is read as Parquet"):
        read_source(path, "user", format="csv")


async def test_large_files_are_read_batch_by_batch_with_continuous_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 1_000
    table = pa.table({"user_id": [f"u{i}" for i in range(count)], "n": list(range(count))})
    path = write(tmp_path / "big.parquet", table, row_group_size=300)
    monkeypatch.setattr(_frames, "_CHUNK_ROWS", 128)
    monkeypatch.setattr(_frames, "_BLOCK_ROWS", 50)
    batches: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, **options: Any) -> Any:
        for batch in iter_batches(self, **options):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    items = await collect(path)
    assert [item.position for item in items] == list(range(count))
    assert items[-1].record == {"user_id": "u999", "metadata": {"n": 999}}
    assert max(batches) <= 128
    assert sum(batches) == count


async def test_rows_are_read_off_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_on: set[int] = set()
    make = _cells.RowMaker.make

    def spy(self: _cells.RowMaker, position: int, row: Any) -> SourceRecord:
        made_on.add(threading.get_ident())
        return make(self, position, row)

    monkeypatch.setattr(_cells.RowMaker, "make", spy)
    path = write(tmp_path / "users.parquet", arrow_users())
    assert len(await collect(path)) == 3
    assert made_on
    assert threading.get_ident() not in made_on


class _ClosingSpy:
    """Every ParquetFile the source opens, to check that each one is closed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[Any] = []
        self.closed: list[Any] = []
        original = pq.ParquetFile
        spy = self

        class Spied(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                spy.opened.append(self)

            def close(self, *args: Any, **kwargs: Any) -> None:
                spy.closed.append(self)
                super().close(*args, **kwargs)

        monkeypatch.setattr(pq, "ParquetFile", Spied)


async def test_the_file_is_closed_when_reading_stops_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _ClosingSpy(monkeypatch)
    path = write(tmp_path / "users.parquet", arrow_users())
    async with contextlib.aclosing(read_source(path, "user")) as records:
        async for _ in records:
            break
    assert len(spy.opened) == 1
    assert spy.closed == spy.opened


async def test_the_file_is_closed_when_reading_is_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _ClosingSpy(monkeypatch)
    path = write(tmp_path / "users.parquet", arrow_users())
    with anyio.CancelScope() as scope:
        async with contextlib.aclosing(read_source(path, "user")) as records:
            async for _ in records:
                scope.cancel()
                await anyio.sleep(1)
    assert scope.cancelled_caught
    assert spy.closed == spy.opened
    assert len(spy.opened) == 1


async def test_the_file_is_closed_after_the_last_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _ClosingSpy(monkeypatch)
    path = write(tmp_path / "users.parquet", arrow_users())
    assert len(await collect(path)) == 3
    assert spy.closed == spy.opened


def test_parquet_files_need_the_parquet_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> Any:
        if name.startswith("pyarrow"):
            raise ModuleNotFoundError(f"No module named {name!r}", name="pyarrow")
        return importlib.import_module(name)

    monkeypatch.setattr(_frames.importlib, "import_module", missing)
    with pytest.raises(ValidationError) as caught:
        read_source(tmp_path / "users.parquet", "user")
    assert str(caught.value) == (
        f"field 'source': reading {tmp_path / 'users.parquet'} needs pyarrow, which is not "
        'installed: pip install "analytex-async[parquet]"'
    )


def test_the_row_count_comes_from_the_footer(tmp_path: Path) -> None:
    path = write(tmp_path / "users.parquet", arrow_users())
    assert _frames.parquet_row_count(path) == 3
    (tmp_path / "not.parquet").write_text("nope")
    assert _frames.parquet_row_count(tmp_path / "not.parquet") is None
    assert _frames.parquet_row_count(tmp_path / "missing.parquet") is None
