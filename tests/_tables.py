"""The same users as a pandas, polars and pyarrow table, and the records each must become.

Three rows exercise every rule of the contract ("More sources" in sdk.md): an integer id, a
user's company, strings, floats, integers, booleans, a naive and a zoned timestamp, a date, a
``Decimal``, a time of day, a ``metadata`` struct with a null inside; the middle row is null
in every column but its id (None, NaN, NaT, pandas' NA, a null struct).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30 all year: no daylight saving to reason about

IDS = [1, 2, 3]
COMPANIES = ["c1", None, "c3"]
PLANS = ["pro", None, "free"]
SCORES = [1.5, None, -2.25]
SEATS = [3, None, 0]
ACTIVE = [True, None, False]
SIGNED_UP = [dt.datetime(2024, 1, 2, 3, 4, 5), None, dt.datetime(2024, 3, 1, 0, 0, 0, 250_000)]
SEEN_AT = [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=KOLKATA), None, None]
BIRTHDAYS = [dt.date(1990, 5, 17), None, dt.date(2001, 12, 31)]
PRICES = [Decimal("9.90"), None, Decimal("0.05")]
OPENS_AT = [dt.time(9, 30), None, dt.time(17, 45, 30, 500)]
METADATA = [{"tier": "gold", "note": None}, None, {"tier": None, "note": "vip"}]

EXPECTED = [
    {
        "user_id": "1",
        "company_id": "c1",
        "metadata": {
            "tier": "gold",
            "plan": "pro",
            "score": 1.5,
            "seats": 3,
            "active": True,
            "signed_up": "2024-01-02T03:04:05+00:00",
            "seen_at": "2024-01-02T03:04:05+05:30",
            "birthday": "1990-05-17",
            "price": "9.90",
            "opens_at": "09:30:00",
        },
    },
    {"user_id": "2"},
    {
        "user_id": "3",
        "company_id": "c3",
        "metadata": {
            "note": "vip",
            "plan": "free",
            "score": -2.25,
            "seats": 0,
            "active": False,
            "signed_up": "2024-03-01T00:00:00.250000+00:00",
            "birthday": "2001-12-31",
            "price": "0.05",
            "opens_at": "17:45:30.000500",
        },
    },
]


def pandas_users() -> pd.DataFrame:
    """The users as pandas holds them: NaN, NaT and NA for the nulls, numpy int ids."""
    return pd.DataFrame(
        {
            "user_id": np.array(IDS, dtype="int64"),
            "company_id": COMPANIES,
            "plan": PLANS,
            "score": np.array([np.nan if v is None else v for v in SCORES]),
            "seats": pd.array(SEATS, dtype="Int64"),
            "active": pd.array(ACTIVE, dtype="boolean"),
            "signed_up": pd.to_datetime(SIGNED_UP),  # datetime64, no zone; None is NaT
            "seen_at": pd.Series(SEEN_AT, dtype="datetime64[us, Asia/Kolkata]"),
            "birthday": BIRTHDAYS,
            "price": PRICES,
            "opens_at": OPENS_AT,
            "metadata": METADATA,
        }
    )


def polars_users() -> pl.DataFrame:
    """The users as polars holds them: typed columns, a struct column, nulls."""
    return pl.DataFrame(
        {
            "user_id": IDS,
            "company_id": COMPANIES,
            "plan": PLANS,
            "score": [float("nan") if v is None else v for v in SCORES],
            "seats": SEATS,
            "active": ACTIVE,
            "signed_up": SIGNED_UP,
            "seen_at": SEEN_AT,
            "birthday": BIRTHDAYS,
            "price": PRICES,
            "opens_at": OPENS_AT,
            "metadata": METADATA,
        },
        schema_overrides={
            "seen_at": pl.Datetime("us", "Asia/Kolkata"),
            "price": pl.Decimal(10, 2),
            "metadata": pl.Struct({"tier": pl.String, "note": pl.String}),
        },
    )


def arrow_users() -> pa.Table:
    """The users as an Arrow table: typed columns, a struct column, nulls."""
    return pa.table(
        {
            "user_id": pa.array(IDS, pa.int64()),
            "company_id": pa.array(COMPANIES, pa.string()),
            "plan": pa.array(PLANS, pa.string()),
            "score": pa.array(SCORES, pa.float64()),
            "seats": pa.array(SEATS, pa.int32()),
            "active": pa.array(ACTIVE, pa.bool_()),
            "signed_up": pa.array(SIGNED_UP, pa.timestamp("ns")),
            "seen_at": pa.array(SEEN_AT, pa.timestamp("us", tz="Asia/Kolkata")),
            "birthday": pa.array(BIRTHDAYS, pa.date32()),
            "price": pa.array(PRICES, pa.decimal128(10, 2)),
            "opens_at": pa.array(OPENS_AT, pa.time64("us")),
            "metadata": pa.array(
                METADATA, pa.struct([("tier", pa.string()), ("note", pa.string())])
            ),
        }
    )


TABLES = {"pandas": pandas_users, "polars": polars_users, "pyarrow": arrow_users}


def one_column(library: str, name: str, values: list[Any], dtype: Any = None) -> Any:
    """A table of ids ``a``, ``b``, ... and one more column, in ``library``."""
    ids = [chr(ord("a") + i) for i in range(len(values))]
    if library == "pandas":
        return pd.DataFrame({"user_id": ids, name: pd.Series(values, dtype=dtype)})
    if library == "polars":
        return pl.DataFrame({"user_id": ids, name: pl.Series(values, dtype=dtype)})
    return pa.table({"user_id": ids, name: pa.array(values, dtype)})
