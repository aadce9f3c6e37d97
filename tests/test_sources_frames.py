"""DataFrames and Arrow tables as sources: pandas, polars and pyarrow, each under every rule.

The rules are the contract's ("More sources" in sdk.md): the id column, a user's company, a
``metadata`` struct and every other column as metadata keys; nulls of each kind left out;
timestamps, dates, times and decimals as strings; numpy scalars as Python's; a cell the API
cannot take makes its row a rejection naming the column, at its zero-based position.
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from analytex_async import ValidationError
from analytex_async._bulk import _cells, _frames
from analytex_async._bulk._sources import SourceRecord

from ._reading import collect
from ._tables import EXPECTED, TABLES, one_column, pandas_users

pytestmark = pytest.mark.anyio

LIBRARIES = sorted(TABLES)


def records(items: list[SourceRecord]) -> list[Any]:
    assert [item.error for item in items] == [None] * len(items)
    return [item.record for item in items]


@pytest.mark.parametrize("library", LIBRARIES)
async def test_every_kind_of_cell_becomes_what_the_api_takes(library: str) -> None:
    items = await collect(TABLES[library]())
    assert records(items) == EXPECTED
    assert [(item.position, item.line) for item in items] == [(0, None), (1, None), (2, None)]


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_metadata_struct_column_adds_its_keys_and_leaves_its_nulls_out(
    library: str,
) -> None:
    items = await collect(TABLES[library]())
    assert items[0].record["metadata"]["tier"] == "gold"
    assert "note" not in items[0].record["metadata"]  # null inside the struct
    assert "tier" not in items[2].record["metadata"]
    assert items[2].record["metadata"]["note"] == "vip"


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_row_of_nulls_keeps_only_its_id(library: str) -> None:
    items = await collect(TABLES[library]())
    assert items[1].record == {"user_id": "2"}


@pytest.mark.parametrize("library", LIBRARIES)
async def test_string_ids_are_kept_as_they_are(library: str) -> None:
    table = one_column(library, "plan", ["pro", "free"])
    assert records(await collect(table)) == [
        {"user_id": "a", "metadata": {"plan": "pro"}},
        {"user_id": "b", "metadata": {"plan": "free"}},
    ]


@pytest.mark.parametrize("library", LIBRARIES)
async def test_companies_take_the_company_id_column_and_a_user_id_is_metadata(
    library: str,
) -> None:
    native = {"company_id": [10, 11], "user_id": ["u1", "u2"], "size": [5, None]}
    table = {
        "pandas": lambda: pd.DataFrame(native).astype({"size": "Int64"}),
        "polars": lambda: pl.DataFrame(native),
        "pyarrow": lambda: pa.table(native),
    }[library]()
    assert records(await collect(table, "company")) == [
        {"company_id": "10", "metadata": {"user_id": "u1", "size": 5}},
        {"company_id": "11", "metadata": {"user_id": "u2"}},
    ]


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_float_id_is_a_rejection_naming_the_row_and_the_column(library: str) -> None:
    table = {
        "pandas": lambda: pd.DataFrame({"user_id": [1.0, None], "plan": ["a", "b"]}),
        "polars": lambda: pl.DataFrame({"user_id": [1.0, None], "plan": ["a", "b"]}),
        "pyarrow": lambda: pa.table({"user_id": [1.0, None], "plan": ["a", "b"]}),
    }[library]()
    items = await collect(table)
    assert [item.position for item in items] == [0, 1]
    assert items[0].error is not None
    assert items[0].error.startswith("column 'user_id': an id must be a string or an integer")
    assert "float (1.0)" in items[0].error
    assert items[0].record == {"user_id": 1.0, "plan": "a"}  # the row as it was read
    assert items[1].error == "column 'user_id': the id is missing (null)"


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_null_company_is_left_out_and_a_float_company_is_refused(library: str) -> None:
    native = {"user_id": ["a", "b", "c"], "company_id": [None, None, None]}
    table = {
        "pandas": lambda: pd.DataFrame(native),
        "polars": lambda: pl.DataFrame(
            native, schema={"user_id": pl.String, "company_id": pl.Int64}
        ),
        "pyarrow": lambda: pa.table(native),
    }[library]()
    assert records(await collect(table)) == [{"user_id": "a"}, {"user_id": "b"}, {"user_id": "c"}]
    floats = one_column(library, "company_id", [2.5, None])
    items = await collect(floats)
    assert items[0].error is not None
    assert items[0].error.startswith("column 'company_id': an id must be")
    assert items[1].record == {"user_id": "b"}


BAD_CELLS = {
    "list": {
        "pandas": ([None, ["x"], None], None),
        "polars": ([None, ["x"], None], None),
        "pyarrow": ([None, ["x"], None], None),
    },
    "bytes": {
        "pandas": ([None, b"x", None], None),
        "polars": ([None, b"x", None], pl.Binary),
        "pyarrow": ([None, b"x", None], pa.binary()),
    },
    "timedelta": {
        "pandas": ([None, dt.timedelta(seconds=5), None], "timedelta64[us]"),
        "polars": ([None, dt.timedelta(seconds=5), None], pl.Duration("us")),
        "pyarrow": ([None, dt.timedelta(seconds=5), None], pa.duration("us")),
    },
}


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kind", sorted(BAD_CELLS))
async def test_a_cell_the_api_cannot_take_rejects_its_row_naming_the_column(
    library: str, kind: str
) -> None:
    values, dtype = BAD_CELLS[kind][library]
    items = await collect(one_column(library, "extra", values, dtype))
    assert [item.position for item in items] == [0, 1, 2]
    assert items[0].record == {"user_id": "a"}
    assert items[2].record == {"user_id": "c"}
    error = items[1].error
    assert error is not None
    assert error.startswith("column 'extra': a ")
    assert "is not a metadata value" in error
    assert items[1].record["user_id"] == "b"


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_nested_value_inside_the_metadata_struct_names_its_key(library: str) -> None:
    values = [{"plan": "pro", "tags": None}, {"plan": "pro", "tags": ["x"]}]
    table = {
        "pandas": lambda: pd.DataFrame({"user_id": ["a", "b"], "metadata": values}),
        "polars": lambda: pl.DataFrame({"user_id": ["a", "b"], "metadata": values}),
        "pyarrow": lambda: pa.table({"user_id": ["a", "b"], "metadata": values}),
    }[library]()
    items = await collect(table)
    assert items[0].record == {"user_id": "a", "metadata": {"plan": "pro"}}
    assert items[1].error is not None
    assert items[1].error.startswith("column 'metadata.tags': a list is not a metadata value")


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_column_wins_over_a_metadata_key_of_the_same_name(library: str) -> None:
    native = {"user_id": ["a"], "plan": ["column"], "metadata": [{"plan": "struct", "n": 1}]}
    table = {
        "pandas": pd.DataFrame,
        "polars": pl.DataFrame,
        "pyarrow": pa.table,
    }[library](native)
    assert records(await collect(table)) == [
        {"user_id": "a", "metadata": {"plan": "column", "n": 1}}
    ]


async def test_numpy_scalars_in_a_pandas_object_column_become_python_values() -> None:
    values = [np.int16(7), np.float32(2.5), np.bool_(True), np.float64("nan"), np.str_("s")]
    frame = pd.DataFrame({"user_id": list("abcde"), "value": pd.Series(values, dtype=object)})
    got = records(await collect(frame))
    assert [item.get("metadata") for item in got] == [
        {"value": 7},
        {"value": 2.5},
        {"value": True},
        None,
        {"value": "s"},
    ]
    assert [type(item["metadata"]["value"]) for item in got if "metadata" in item] == [
        int,
        float,
        bool,
        str,
    ]


async def test_numpy_integer_ids_become_decimal_strings() -> None:
    frame = pd.DataFrame({"user_id": np.array([7, 2**40], dtype="uint64")})
    assert records(await collect(frame)) == [{"user_id": "7"}, {"user_id": str(2**40)}]


async def test_pandas_nullable_integers_with_a_missing_id_reject_only_that_row() -> None:
    frame = pd.DataFrame({"user_id": pd.array([5, None], dtype="Int64")})
    items = await collect(frame)
    assert items[0].record == {"user_id": "5"}
    assert items[1].error == "column 'user_id': the id is missing (null)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.datetime64("2024-01-02T03:04:05.123456789", "ns"), "2024-01-02T03:04:05.123456+00:00"),
        (np.datetime64("2024-01-02", "D"), "2024-01-02"),
        (np.datetime64("NaT"), None),
        (pd.Timestamp("2024-01-02 03:04:05.123456789"), "2024-01-02T03:04:05.123456+00:00"),
        (pd.NaT, None),
        (pd.NA, None),
        (Decimal("NaN"), None),
        (np.uint8(255), 255),
    ],
)
def test_scalars_of_every_library_convert_to_the_wire_form(value: Any, expected: Any) -> None:
    converted = _cells.metadata_value(value, "x")
    assert (None if converted is _cells._NULL else converted) == expected


@pytest.mark.parametrize(
    "value", [np.timedelta64(5, "s"), pd.Timedelta(seconds=5), object(), {"a": 1}, (1, 2)]
)
def test_other_scalars_are_bad_cells_naming_the_column(value: Any) -> None:
    with pytest.raises(_cells.BadCell, match=r"^column 'x': a .* is not a metadata value"):
        _cells.metadata_value(value, "x")


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_table_without_its_id_column_is_refused_at_once_naming_its_columns(
    library: str,
) -> None:
    table = {
        "pandas": lambda: pd.DataFrame({"id": [1], "plan": ["pro"]}),
        "polars": lambda: pl.DataFrame({"id": [1], "plan": ["pro"]}),
        "pyarrow": lambda: pa.table({"id": [1], "plan": ["pro"]}),
    }[library]()
    with pytest.raises(ValidationError) as caught:
        _frames.read_table(table, "user")
    assert str(caught.value) == (
        f"field 'source': {library} {type(table).__name__}: the table has no 'user_id' "
        "column, which user records need (columns: 'id', 'plan')"
    )


@pytest.mark.parametrize("library", LIBRARIES)
async def test_an_empty_table_has_no_records(library: str) -> None:
    table = TABLES[library]()
    assert await collect(table[0:0] if library != "pandas" else table.iloc[0:0]) == []


@pytest.mark.parametrize("library", LIBRARIES)
async def test_large_tables_are_read_in_slices_with_continuous_positions(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_frames, "_CHUNK_ROWS", 7)
    monkeypatch.setattr(_frames, "_BLOCK_ROWS", 3)
    count = 50
    native = {"user_id": list(range(count)), "n": list(range(count))}
    table = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "pyarrow": pa.table}[library](native)
    items = await collect(table)
    assert [item.position for item in items] == list(range(count))
    assert [item.record for item in items] == [
        {"user_id": str(i), "metadata": {"n": i}} for i in range(count)
    ]


async def test_a_pyarrow_record_batch_is_a_table_too() -> None:
    batch = pa.RecordBatch.from_pydict({"user_id": ["a", "b"], "n": [1, None]})
    assert records(await collect(batch)) == [
        {"user_id": "a", "metadata": {"n": 1}},
        {"user_id": "b"},
    ]


async def test_rows_are_converted_off_the_event_loop_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made_on: set[int] = set()
    make = _cells.RowMaker.make

    def spy(self: _cells.RowMaker, position: int, row: Any) -> SourceRecord:
        made_on.add(threading.get_ident())
        return make(self, position, row)

    monkeypatch.setattr(_cells.RowMaker, "make", spy)
    assert len(await collect(pandas_users())) == 3
    assert made_on
    assert threading.get_ident() not in made_on


@pytest.mark.parametrize("library", LIBRARIES)
def test_tables_are_told_from_iterables_of_records(library: str) -> None:
    # Iterating a pandas frame yields its column names, a polars one its columns: a table must
    # be read as a table, never iterated.
    assert _frames.is_table(TABLES[library]())
    assert not _frames.is_table([{"user_id": "a"}])
    assert not _frames.is_table(iter([{"user_id": "a"}]))


def test_dataframes_need_the_dataframe_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        if name == "narwhals":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return importlib.import_module(name)

    monkeypatch.setattr(_frames.importlib, "import_module", missing)
    with pytest.raises(ValidationError) as caught:
        _frames.read_table(pandas_users(), "user")
    assert str(caught.value) == (
        "field 'source': reading a pandas DataFrame needs narwhals, which is not installed: "
        'pip install "analytex-async[dataframe]"'
    )


def test_a_lazy_frame_or_a_series_is_refused_with_what_to_pass() -> None:
    with pytest.raises(ValidationError, match=r"collect a lazy frame first"):
        _frames.read_table(pl.DataFrame({"user_id": ["a"]}).lazy(), "user")
    with pytest.raises(ValidationError, match=r"cannot read a pandas Series"):
        _frames.read_table(pd.Series(["a"]), "user")


def test_tables_hold_users_companies_or_events_only() -> None:
    with pytest.raises(ValidationError, match=r"users, companies and events, not 'order'"):
        _frames.read_table(pandas_users(), "order")  # type: ignore[arg-type]


def test_a_table_of_events_needs_an_event_type_column() -> None:
    with pytest.raises(ValidationError, match=r"no 'event_type' column.*'user_id'"):
        _frames.read_table(pandas_users(), "event")
