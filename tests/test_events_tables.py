"""Events from tables: pandas, polars, pyarrow and Parquet map their columns as CSV does.

One mapping of a flat row to an event (``_records.EventColumns``) serves CSV files and tables:
the same events, as a CSV file or as any table, become the same lines. Table cells add their
own rules: nulls are missing, an integer id is its decimal string, a ``metadata`` struct holds
metadata keys, and an ``inserted_at`` timestamp keeps its zone, so one without is a rejection
naming the field, as a naive ``datetime`` is everywhere.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import respx
from click.testing import Result

from analytex_async import AsyncAnalytex, ValidationError
from analytex_async._bulk._sources import SourceRecord, read_source
from analytex_async._events import event_record

from ._reading import collect
from .conftest import API_KEY, BASE_URL, NO_WAIT
from .test_cli import QUICK, Served, key, run, served

__all__ = ["key", "run", "served"]  # the CLI fixtures this module shares

pytestmark = pytest.mark.anyio

KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30 all year
AT = [
    dt.datetime(2024, 7, 28, 14, 25, 35, tzinfo=KOLKATA),
    dt.datetime(2024, 7, 28, 8, 55, 36, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 7, 28, 8, 56, 2, 250_000, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 7, 28, 8, 57, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 7, 28, 8, 58, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 7, 28, 9, 1, tzinfo=dt.timezone.utc),
]
# Six events of every type sharing one table; rows 4 and 5 break a rule each.
COLUMNS: dict[str, list[Any]] = {
    "event_type": ["identify_user", "identify_company", "page_view", "track", "track", "page_view"],
    "user_id": ["u1", None, "u2", "u1", "u1", "u3"],
    "company_id": ["acme", "acme", None, "acme", None, None],
    "event_name": [None, None, None, "Invoice Paid", None, None],
    "hostname": [None, None, "app.example.com", None, None, "app.example.com"],
    "pathname": [None, None, "/billing", None, None, "/home"],
    "screen_width": [None, None, 1280, None, None, None],
    "inserted_at": AT,
    "plan": ["pro", "enterprise", None, None, None, "free"],
    "metadata": [None, {"seats": 40, "tier": None}, None, {"seats": None, "tier": "gold"},
                 None, None],
}  # fmt: skip
UTC_AT = [at.astimezone(dt.timezone.utc).isoformat() for at in AT]
SENT = [
    {"event_type": "identify_user", "user_id": "u1", "company_id": "acme",
     "source": "backend-http-import", "inserted_at": UTC_AT[0], "metadata": {"plan": "pro"}},
    {"event_type": "identify_company", "company_id": "acme", "source": "backend-http-import",
     "inserted_at": UTC_AT[1], "metadata": {"seats": 40, "plan": "enterprise"}},
    {"event_type": "page_view", "user_id": "u2", "hostname": "app.example.com",
     "pathname": "/billing", "screen_width": 1280, "source": "backend-http-import",
     "inserted_at": UTC_AT[2]},
    {"event_type": "track", "user_id": "u1", "company_id": "acme", "event_name": "Invoice Paid",
     "source": "backend-http-import", "inserted_at": UTC_AT[3], "metadata": {"tier": "gold"}},
]  # fmt: skip
# (position, field) of each rejection: a track without its name (a null, not a missing
# column), and a page view with a metadata cell, which a page view does not take.
REJECTED = [(4, "event_name"), (5, "plan")]  # a page_view takes no metadata: its column named
STRUCT = pa.struct([("seats", pa.int64()), ("tier", pa.string())])


def pandas_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            **COLUMNS,
            "screen_width": pd.array(COLUMNS["screen_width"], dtype="Int64"),
            "inserted_at": pd.Series(AT).map(lambda at: at.astimezone(dt.timezone.utc)),
        }
    ).astype({"inserted_at": "datetime64[ns, UTC]"})


def polars_events() -> pl.DataFrame:
    return pl.DataFrame(
        COLUMNS,
        schema_overrides={
            "inserted_at": pl.Datetime("us", "UTC"),
            "metadata": pl.Struct({"seats": pl.Int64, "tier": pl.String}),
        },
    )


def arrow_events() -> pa.Table:
    arrays = {name: pa.array(values) for name, values in COLUMNS.items()}
    arrays["inserted_at"] = pa.array(AT, pa.timestamp("ns", tz="UTC"))
    arrays["metadata"] = pa.array(COLUMNS["metadata"], STRUCT)
    return pa.table(arrays)


def csv_events() -> io.StringIO:
    """The same events as a CSV file: text cells, the metadata column a JSON object."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in zip(*COLUMNS.values(), strict=True):
        cells = dict(zip(COLUMNS, row, strict=True))
        cells["inserted_at"] = cells["inserted_at"].isoformat()
        if cells["metadata"] is not None:  # a JSON null is a value: a table's null is none
            kept = {k: v for k, v in cells["metadata"].items() if v is not None}
            cells["metadata"] = json.dumps(kept)
        writer.writerow("" if cell is None else cell for cell in cells.values())
    out.seek(0)
    return out


TABLES: dict[str, Callable[[], Any]] = {
    "pandas": pandas_events,
    "polars": polars_events,
    "pyarrow": arrow_events,
}
SOURCES = [*TABLES, "parquet"]


def source_of(kind: str, tmp_path: Path) -> Any:
    if kind in TABLES:
        return TABLES[kind]()
    path = tmp_path / "events.parquet"
    pq.write_table(arrow_events(), path)
    return path


def wire(items: list[SourceRecord]) -> Iterator[dict[str, Any] | tuple[int, str | None]]:
    """Each record's line, or (position, field) where the event check refuses it."""
    for item in items:
        assert item.error is None, item.error
        try:
            yield event_record(item.record)
        except ValidationError as error:
            yield (item.position, error.field)


# -- the mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
async def test_a_table_of_events_becomes_the_lines_its_csv_file_becomes(
    kind: str, tmp_path: Path
) -> None:
    from_csv = list(wire(await collect(csv_events(), "event", format="csv")))
    from_table = list(wire(await collect(source_of(kind, tmp_path), "event")))
    assert from_table == from_csv == [*SENT, *REJECTED]


@pytest.mark.parametrize("library", sorted(TABLES))
async def test_rows_keep_their_zero_based_positions(library: str) -> None:
    items = await collect(TABLES[library](), "event")
    assert [(item.position, item.line) for item in items] == [(i, None) for i in range(6)]


@pytest.mark.parametrize("library", sorted(TABLES))
async def test_integer_ids_are_sent_as_their_decimal_strings(library: str) -> None:
    native = {
        "event_type": ["track"],
        "user_id": [42],
        "event_name": ["e"],
        "inserted_at": ["2024-07-28 08:55:35"],
    }
    table = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "pyarrow": pa.table}[library](native)
    [line] = wire(await collect(table, "event"))
    assert line == {
        "event_type": "track", "user_id": "42", "event_name": "e",
        "source": "backend-http-import", "inserted_at": "2024-07-28T08:55:35+00:00",
    }  # fmt: skip


async def test_a_pandas_screen_size_column_with_nulls_is_sent_as_whole_numbers() -> None:
    frame = pd.DataFrame(
        {
            "event_type": ["page_view", "track"],
            "user_id": ["u1", "u1"],
            "hostname": ["h", None],
            "pathname": ["/", None],
            "event_name": [None, "e"],
            "screen_width": [1280, None],  # float64: 1280.0 and NaN
            "inserted_at": ["2024-07-28T08:55:35Z", "2024-07-28T08:55:36Z"],
        }
    )
    assert frame["screen_width"].dtype == "float64"
    lines = list(wire(await collect(frame, "event")))
    assert [line.get("screen_width") for line in lines if isinstance(line, dict)] == [1280, None]


def naive_times(library: str) -> Any:
    native = {
        "event_type": ["track", "track"],
        "user_id": ["u1", "u2"],
        "event_name": ["e", "e"],
        "inserted_at": [dt.datetime(2024, 7, 28, 8, 55), dt.datetime(2024, 7, 29, 8, 55)],
    }
    if library == "pandas":
        return pd.DataFrame(native)
    if library == "pandas-object":  # numpy datetime64 scalars in an object column
        times = np.array(native["inserted_at"], dtype="datetime64[ns]")
        return pd.DataFrame({**native, "inserted_at": pd.Series(list(times), dtype=object)})
    if library == "polars":
        return pl.DataFrame(native)
    return pa.table(native)


@pytest.mark.parametrize("library", ["pandas", "pandas-object", "polars", "pyarrow"])
async def test_a_timestamp_without_a_zone_is_a_rejection_naming_the_field_and_the_row(
    library: str,
) -> None:
    # Metadata timestamps without a zone are taken as UTC; an event's time is not guessed.
    assert list(wire(await collect(naive_times(library), "event"))) == [
        (0, "inserted_at"),
        (1, "inserted_at"),
    ]


async def test_a_zoned_timestamp_is_sent_in_utc_to_the_microsecond() -> None:
    times = pd.Series(["2024-07-28 10:55:35.123456789"]).astype("datetime64[ns]")
    frame = pd.DataFrame(
        {
            "event_type": ["identify_company"],
            "company_id": ["acme"],
            "inserted_at": times.dt.tz_localize("Europe/Paris"),
            "signed": times,  # a metadata key: a timestamp without a zone is taken as UTC
        }
    )
    [line] = wire(await collect(frame, "event"))
    assert isinstance(line, dict)
    assert line["inserted_at"] == "2024-07-28T08:55:35.123456+00:00"
    assert line["metadata"] == {"signed": "2024-07-28T10:55:35.123456+00:00"}


@pytest.mark.parametrize("library", sorted(TABLES))
async def test_a_cell_the_api_cannot_take_rejects_its_row_naming_the_column(
    library: str,
) -> None:
    native: dict[str, Any] = {
        "event_type": ["track", "track"],
        "user_id": ["u1", "u2"],
        "event_name": ["e", "e"],
        "inserted_at": ["2024-07-28T08:55:35Z", "2024-07-28T08:55:36Z"],
        "tags": [None, ["beta", "vip"]],
    }
    table = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "pyarrow": pa.table}[library](native)
    first, second = await collect(table, "event")
    assert first.error is None
    assert (second.position, second.line) == (1, None)
    assert second.error is not None
    assert second.error.startswith("column 'tags': a list is not a metadata value")
    assert second.record["user_id"] == "u2"  # the row as read


async def test_a_metadata_column_that_is_not_a_struct_is_a_rejection_naming_it() -> None:
    frame = pd.DataFrame(
        {
            "event_type": ["track"],
            "user_id": ["u1"],
            "event_name": ["e"],
            "inserted_at": ["2024-07-28T08:55:35Z"],
            "metadata": ['{"plan": "pro"}'],  # JSON text, as in CSV: a table holds a struct
        }
    )
    [item] = await collect(frame, "event")
    assert item.error is not None
    assert item.error.startswith("column 'metadata': must be a struct or a dict")


async def test_a_null_event_type_is_a_rejection_naming_it() -> None:
    table = pa.table(
        {
            "event_type": [None, "track"],
            "user_id": ["u1", "u1"],
            "event_name": ["e", "e"],
            "inserted_at": ["2024-07-28", "2024-07-28"],
        }
    )
    lines = list(wire(await collect(table, "event")))
    assert lines[0] == (0, "event_type")
    assert isinstance(lines[1], dict)


def test_a_table_of_events_without_an_event_type_column_is_refused_at_once() -> None:
    with pytest.raises(ValidationError, match=r"no 'event_type' column.*'user_id', 'name'"):
        read_source(pd.DataFrame({"user_id": ["u1"], "name": ["e"]}), "event")


# -- import_events ----------------------------------------------------------------------------


def job(job_id: str) -> dict[str, Any]:
    return {"job_id": job_id, "status": "completed", "type": "import"}


@pytest.mark.parametrize("kind", SOURCES)
async def test_import_events_sends_each_valid_row_once_and_rejects_the_rest(
    router: respx.MockRouter, kind: str, tmp_path: Path
) -> None:
    uploads: list[bytes] = []

    def submit(request: httpx.Request) -> httpx.Response:
        uploads.append(request.content)
        return httpx.Response(200, json=job(f"imp-{len(uploads)}"))

    router.post("/v1/imports").mock(side_effect=submit)
    router.get(url__regex=r"/v1/background_jobs/.*").mock(
        side_effect=lambda r: httpx.Response(200, json=job(r.url.path.rsplit("/", 1)[1]))
    )
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        result = await client.import_events(source_of(kind, tmp_path), batch_size=3)
    assert (result.rows_read, result.rows_sent, result.rows_rejected) == (6, 4, 2)
    assert [(r.position, r.line) for r in result.rejected] == [(4, None), (5, None)]
    for rejection, (_, field) in zip(result.rejected, REJECTED, strict=True):
        assert f"field '{field}'" in rejection.reason
    sent = [
        json.loads(line)
        for body in uploads
        for line in body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0].splitlines()
    ]
    assert sent == SENT  # each valid row once, in order


async def test_on_invalid_raise_names_the_row_and_the_field(router: respx.MockRouter) -> None:
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, retry_policy=NO_WAIT) as client:
        with pytest.raises(ValidationError) as info:
            await client.import_events(naive_times("polars"), on_invalid="raise", wait=False)
    assert info.value.position == 0
    assert "'inserted_at'" in str(info.value)


# -- the command line -------------------------------------------------------------------------


def test_import_events_from_a_parquet_file_stores_them_and_reports_the_rejections(
    run: Callable[..., Result], served: Served, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "events.parquet"
    pq.write_table(arrow_events(), source)
    rejects = tmp_path / "rejects.ndjson"
    result = run("import", "events", str(source), "--rejects", str(rejects), *QUICK)
    assert result.exit_code == 1, result.output  # two events were rejected
    imported = served.account(key).imported_events
    assert [(e.event_type, e.user_id, e.company_id) for e in imported] == [
        ("identify_user", "u1", "acme"),
        ("identify_company", None, "acme"),
        ("page_view", "u2", None),
        ("track", "u1", "acme"),
    ]
    assert imported[1].metadata == {"seats": 40, "plan": "enterprise"}
    found = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["position"], r["line"]) for r in found] == [(4, None), (5, None)]
