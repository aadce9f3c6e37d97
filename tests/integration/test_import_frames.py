"""DataFrames, Arrow tables and Parquet files imported end to end through ``import_users``.

Each source type goes through the real client and the in-process emulator on trio's mock
clock; the test checks what the emulator stored, and that a bad cell became a ``Rejection``
naming its row and column while the rest of the table went in.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytex_async import JobStatus
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from .._tables import EXPECTED, TABLES
from ..conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

SOURCES = ["pandas", "polars", "pyarrow", "parquet"]


@pytest.fixture
def anyio_backend() -> Any:
    return trio_mock_clock()


def source_of(kind: str, tmp_path: Path) -> Any:
    """The test users as ``kind``: a table, or a Parquet file written from the Arrow table."""
    if kind != "parquet":
        return TABLES[kind]()
    path = tmp_path / "users.parquet"
    pq.write_table(TABLES["pyarrow"](), path)
    return path


@pytest.mark.parametrize("kind", SOURCES)
async def test_each_source_type_is_stored_as_its_records(kind: str, tmp_path: Path) -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        result = await analytex.client.import_users(source_of(kind, tmp_path))
    assert (result.rows_read, result.rows_sent, result.rejected) == (3, 3, [])
    assert [job.status for job in result.jobs] == [JobStatus.COMPLETED]
    stored = {user_id: (user.company_id, user.metadata) for user_id, user in emulator.users.items()}
    assert stored == {
        record["user_id"]: (record.get("company_id"), record.get("metadata", {}))
        for record in EXPECTED
    }


def _with_a_bad_cell(kind: str, tmp_path: Path) -> Any:
    ids = [f"u{i}" for i in range(2_500)]
    waits: list[Any] = [None] * len(ids)
    waits[1_234] = dt.timedelta(minutes=5)
    if kind == "pandas":
        return pd.DataFrame({"user_id": ids, "wait": pd.Series(waits, dtype="timedelta64[us]")})
    if kind == "polars":
        return pl.DataFrame(
            {"user_id": ids, "wait": waits}, schema_overrides={"wait": pl.Duration("us")}
        )
    table = pa.table({"user_id": ids, "wait": pa.array(waits, pa.duration("us"))})
    if kind == "pyarrow":
        return table
    path = tmp_path / "users.parquet"
    pq.write_table(table, path, row_group_size=1_000)
    return path


@pytest.mark.parametrize("kind", SOURCES)
async def test_a_bad_cell_is_a_rejection_naming_its_row_and_column(
    kind: str, tmp_path: Path
) -> None:
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        result = await analytex.client.import_users(
            _with_a_bad_cell(kind, tmp_path), batch_size=1_000
        )
    assert (result.rows_read, result.rows_sent, result.rows_rejected) == (2_500, 2_499, 1)
    [rejection] = result.rejected
    assert (rejection.position, rejection.line) == (1_234, None)
    assert rejection.reason.startswith("column 'wait': a ")
    assert rejection.record["user_id"] == "u1234"
    assert len(emulator.users) == 2_499
    assert "u1234" not in emulator.users
    assert emulator.users["u2499"].metadata == {}


async def test_companies_import_from_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "companies.parquet"
    pq.write_table(pa.table({"company_id": [7, 8], "plan": ["pro", None]}), path)
    emulator = Emulator()
    async with EmulatedAnalytex(emulator) as analytex:
        result = await analytex.client.import_companies(path)
    assert (result.rows_sent, result.rejected) == (2, [])
    assert {cid: c.metadata for cid, c in emulator.companies.items()} == {
        "7": {"plan": "pro"},
        "8": {},
    }
