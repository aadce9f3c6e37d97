"""Events from DataFrames, Arrow tables and Parquet files, imported end to end.

Each source goes through the real client and the in-process emulator's ``POST /v1/imports``
(its event schema, its one-import-at-a-time slot) on asyncio and on trio; the test checks the
events the emulator stored, and that the rows it must not take became rejections naming their
row and field while the rest went in, each once.
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

from analytex_async import ImportResult, JobStatus
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

pytestmark = pytest.mark.anyio

SOURCES = ["pandas", "polars", "pyarrow", "parquet"]
ROWS = 2_500
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
NAMELESS = 1_234  # the row the import must refuse: a track whose name is null


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


FAST = 6_000_000  # rows a minute: a job completes as soon as it is read


def fast_emulator() -> Emulator:
    return Emulator(rows_per_minute=FAST)


def wired(emulator: Emulator) -> EmulatedAnalytex:
    """A client that knows the emulator's rate, so that it polls a job when it is done."""
    return EmulatedAnalytex(emulator, rows_per_minute=FAST)


def events_table() -> pa.Table:
    """``ROWS`` track events of ``ROWS`` users, one of them (``NAMELESS``) without its name."""
    names: list[str | None] = [f"Step {i % 7}" for i in range(ROWS)]
    names[NAMELESS] = None
    return pa.table(
        {
            "event_type": ["track"] * ROWS,
            "user_id": pa.array(range(ROWS), pa.int64()),  # sent as "0", "1", ...
            "event_name": names,
            "inserted_at": pa.array(
                [START + dt.timedelta(minutes=i) for i in range(ROWS)], pa.timestamp("us", "UTC")
            ),
            "plan": ["pro" if i % 2 else None for i in range(ROWS)],
            "metadata": pa.array(
                [{"step": i} for i in range(ROWS)], pa.struct([("step", pa.int64())])
            ),
        }
    )


def source_of(kind: str, tmp_path: Path) -> Any:
    table = events_table()
    if kind == "pyarrow":
        return table
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        return pl.from_arrow(table)
    path = tmp_path / "events.parquet"
    pq.write_table(table, path, row_group_size=1_000)
    return path


@pytest.mark.parametrize("kind", SOURCES)
async def test_each_table_source_is_stored_as_its_events_less_the_rejected_row(
    kind: str, tmp_path: Path
) -> None:
    emulator = fast_emulator()
    async with wired(emulator) as analytex:
        result = await analytex.client.import_events(source_of(kind, tmp_path))
    assert [job.status for job in result.jobs] == [JobStatus.COMPLETED]
    check_stored(result, emulator)


async def test_a_parquet_file_goes_out_in_files_one_import_at_a_time(tmp_path: Path) -> None:
    emulator = fast_emulator()
    async with wired(emulator) as analytex:
        result = await analytex.client.import_events(
            source_of("parquet", tmp_path), batch_size=1_000
        )
    assert [job.status for job in result.jobs] == [JobStatus.COMPLETED] * 3
    assert [job.total_rows for job in result.jobs] == [1_000, 1_000, 499]
    check_stored(result, emulator)


def check_stored(result: ImportResult, emulator: Emulator) -> None:
    """The import sent every row but ``NAMELESS`` once, in order, and rejected that one."""
    assert (result.rows_read, result.rows_sent, result.rows_rejected) == (ROWS, ROWS - 1, 1)
    [rejection] = result.rejected
    assert (rejection.position, rejection.line) == (NAMELESS, None)
    assert "field 'event_name'" in rejection.reason
    stored = emulator.imported_events
    assert [event.user_id for event in stored] == [
        str(i) for i in range(ROWS) if i != NAMELESS
    ]  # each valid row once, in order
    first, second = stored[0], stored[1]
    assert (first.event_name, first.inserted_at, first.metadata) == ("Step 0", START, {"step": 0})
    assert second.metadata == {"step": 1, "plan": "pro"}
    assert second.inserted_at == START + dt.timedelta(minutes=1)


async def test_a_table_whose_times_have_no_zone_is_rejected_row_by_row() -> None:
    frame = pd.DataFrame(
        {
            "event_type": ["identify_user", "identify_user"],
            "user_id": ["u1", "u2"],
            "inserted_at": pd.to_datetime(["2024-07-28 08:55", "2024-07-28 08:56"]),
        }
    )
    emulator = fast_emulator()
    async with wired(emulator) as analytex:
        result = await analytex.client.import_events(frame)
        localized = frame.assign(inserted_at=frame["inserted_at"].dt.tz_localize("UTC"))
        fixed = await analytex.client.import_events(localized)
    assert [(r.position, "field 'inserted_at'" in r.reason) for r in result.rejected] == [
        (0, True),
        (1, True),
    ]
    assert result.jobs == []  # nothing was sent
    assert (fixed.rows_sent, fixed.rejected) == (2, [])
    assert [event.user_id for event in emulator.imported_events] == ["u1", "u2"]


async def test_a_converter_yielding_none_for_a_required_field_loses_only_that_event() -> None:
    # row.get("name") gives None: the event is a rejection, not a line the server refuses
    # (which would fail the whole file).
    legacy = [
        {"user": "u1", "name": "Invoice Paid"},
        {"user": "u2"},
        {"user": "u3", "name": "Cart Updated"},
    ]
    events = (
        {
            "event_type": "track",
            "user_id": row["user"],
            "event_name": row.get("name"),
            "inserted_at": "2024-07-28T08:57:00Z",
        }
        for row in legacy
    )
    emulator = fast_emulator()
    async with wired(emulator) as analytex:
        result = await analytex.client.import_events(events)
    assert (result.rows_sent, [r.position for r in result.rejected]) == (2, [1])
    assert [job.status for job in result.jobs] == [JobStatus.COMPLETED]
    assert [event.user_id for event in emulator.imported_events] == ["u1", "u3"]
