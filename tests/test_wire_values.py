"""What the SDK sends for the values callers hand it: companies named company_id, dates,
decimals and enums in metadata (analytex-api.md's decisions), on real-time and bulk calls alike."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
import respx

from analytex_async import AsyncAnalytex, ValidationError
from analytex_async._validation import bulk_record, check_metadata

from .conftest import API_KEY, BASE_URL

pytestmark = pytest.mark.anyio


async def test_a_company_given_as_company_id_is_sent_as_id(router: respx.MockRouter) -> None:
    route = router.post("/v1/identify").mock(return_value=httpx.Response(202))
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        await client.identify("u1", company={"company_id": "c1", "plan": "pro"})
    assert json.loads(route.calls.last.request.content) == {
        "user_id": "u1",
        "company": {"id": "c1", "plan": "pro"},
    }


class Plan(enum.Enum):
    PRO = "pro"


class Seats(enum.IntEnum):
    TEN = 10


async def test_metadata_dates_decimals_and_enums_are_sent_as_the_api_takes_them(
    router: respx.MockRouter,
) -> None:
    route = router.post("/v1/identify").mock(return_value=httpx.Response(202))
    metadata = {
        "signed_up": datetime(2024, 7, 28, 8, 55, 35, tzinfo=timezone(timedelta(hours=2))),
        "naive": datetime(2024, 7, 28, 8, 55, 35),
        "birthday": date(1990, 1, 2),
        "balance": Decimal("12.50"),
        "plan": Plan.PRO,
        "seats": Seats.TEN,
        "nested": {"when": date(2024, 1, 1), "list": [Decimal("1.5")]},
    }
    async with AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL) as client:
        await client.identify("u1", metadata=metadata)
    assert json.loads(route.calls.last.request.content)["metadata"] == {
        "signed_up": "2024-07-28T08:55:35+02:00",
        "naive": "2024-07-28T08:55:35+00:00",
        "birthday": "1990-01-02",
        "balance": "12.50",
        "plan": "pro",
        "seats": 10,
        "nested": {"when": "2024-01-01", "list": ["1.5"]},
    }


def test_bulk_records_convert_the_same_values() -> None:
    wire = bulk_record(
        {"user_id": "u1", "metadata": {"at": date(2024, 1, 1), "n": Decimal("2"), "p": Plan.PRO}},
        "user",
    )
    assert wire["metadata"] == {"at": "2024-01-01", "n": "2", "p": "pro"}


@pytest.mark.parametrize("value", [time(8, 0), timedelta(seconds=1), b"bytes", {1, 2}])
def test_other_values_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_metadata({"odd": value}, primitives_only=False)
    assert info.value.field == "metadata.odd"
