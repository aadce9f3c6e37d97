"""Exports against the emulator, on asyncio and trio: import events, export them, compare.

Every format round-trips through the client's readers; the filters select what they say; an
export progresses over the emulator's ``export_duration`` (one at a time: 409); its links expire
after ``link_ttl`` and are renewed; lookups page with a cursor.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from analytex_async import Event, Export
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

from .conftest import trio_mock_clock

pytestmark = pytest.mark.anyio

NOV = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.timezone.utc)
MIN1, MIN2, MIN3 = (NOV + dt.timedelta(minutes=n) for n in (1, 2, 3))
WHOLE = {"start": "2020-01-01", "end": "2100-01-01"}
FORMATS = ["ndjson", "csv", "parquet", "avro"]


def history() -> list[Event]:
    return [
        Event.identify_user("u1", {"plan": "pro", "seats": 3}, NOV, company_id="c1"),
        Event.track("u1", "report_opened", NOV + dt.timedelta(minutes=1), metadata={"n": 1.5}),
        Event.page_view(
            "u2",
            "app.example.com",
            "/settings",
            NOV + dt.timedelta(minutes=2),
            screen_width=1440,
            screen_height=900,
        ),
        Event.identify_company("c1", {"tier": "gold"}, NOV + dt.timedelta(minutes=3)),
    ]


async def loaded(analytex: EmulatedAnalytex) -> None:
    client = analytex.client
    result = await client.import_events(history())
    assert result.ok
    await client.identify("u3", metadata={"name": "Ann"}, company="c2")
    await client.track("u3", "signed_up", metadata={"via": "ads"})


def fast() -> Emulator:
    return Emulator(rows_per_minute=6_000_000, export_duration=0.0, export_chunk_rows=2)


def essentials(event: dict[str, Any]) -> tuple[Any, ...]:
    fields = ("event_type", "user_id", "company_id", "event_name", "metadata", "inserted_at",
              "hostname", "screen_width")  # fmt: skip
    return tuple(event[name] for name in fields)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_imported_events_come_back_the_same_in_every_format(fmt: str) -> None:
    async with EmulatedAnalytex(fast()) as analytex:
        await loaded(analytex)
        events = [e async for e in analytex.client.export_events(**WHOLE, format=fmt)]
    assert [essentials(e) for e in events[:4]] == [
        ("identify_user", "u1", "c1", None, {"plan": "pro", "seats": 3}, NOV, None, None),
        ("track", "u1", None, "report_opened", {"n": 1.5}, MIN1, None, None),
        ("page_view", "u2", None, None, {}, MIN2, "app.example.com", 1440),
        ("identify_company", None, "c1", None, {"tier": "gold"}, MIN3, None, None),
    ]  # fmt: skip
    live = events[4:]  # the identify and the track, at the emulator's clock
    assert [(e["event_type"], e["user_id"], e["metadata"]) for e in live] == [
        ("identify_user", "u3", {"name": "Ann"}),
        ("track", "u3", {"via": "ads"}),
    ]
    assert live[0]["company_id"] == "c2"
    assert all(e["inserted_at"].tzinfo is dt.timezone.utc for e in events)
    assert all(e["source"] for e in events)


async def test_filters_select_what_they_say() -> None:
    async with EmulatedAnalytex(fast()) as analytex:
        await loaded(analytex)
        client = analytex.client

        async def users(**filters: Any) -> list[tuple[str, str | None]]:
            query = {**WHOLE, **filters}
            return [(e["event_type"], e["user_id"]) async for e in client.export_events(**query)]

        assert await users(event_types=["track"]) == [("track", "u1"), ("track", "u3")]
        assert await users(user_ids=["u2"]) == [("page_view", "u2")]
        assert await users(start=MIN1, end=MIN3) == [("track", "u1"), ("page_view", "u2")]
        assert ("identify_user", "u3") in await users(segment_id="with_company")
        assert await users(company_ids=["c2"]) == [("identify_user", "u3"), ("track", "u3")]


async def test_download_export_and_export_table(tmp_path: Path) -> None:
    async with EmulatedAnalytex(fast()) as analytex:
        await loaded(analytex)
        client = analytex.client
        export = await client.start_export(**WHOLE, format="parquet")
        paths = await client.download_export(export, tmp_path / "nov")
        assert [p.suffix for p in paths] == [".parquet"] * 3  # 6 events, 2 a file
        assert await client.download_export(export.job_id, tmp_path / "nov") == paths
        table = await client.export_table(job_id=export.job_id)
        csv_table = await client.export_table(**WHOLE, format="csv")
    assert table.num_rows == 6
    assert table.schema == csv_table.schema
    assert table.column("user_id").to_pylist() == csv_table.column("user_id").to_pylist()
    assert str(table.schema.field("metadata").type) == "string"


async def test_lookups_page_with_a_cursor() -> None:
    async with EmulatedAnalytex(fast()) as analytex:
        await loaded(analytex)
        client = analytex.client
        segments = [s["id"] async for s in client.lookup("segments")]
        properties = [p["name"] async for p in client.lookup("user_properties")]
        flows = [f async for f in client.lookup("flows")]
    assert segments == ["all_users", "with_company", "without_company"]
    assert set(properties) >= {"plan", "name"}
    assert flows == []
    pages = [r for r in analytex.emulator.requests if "lookups/segments" in r.path]
    assert len(pages) == 2


async def test_the_inspection_route_shows_exports_without_links() -> None:
    emulator = fast()
    async with EmulatedAnalytex(emulator) as analytex:
        await loaded(analytex)
        await analytex.client.start_export(**WHOLE, format="csv", event_types=["track"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(emulator.app), base_url="http://x"
    ) as http:
        shown = (await http.get("/_emulator/exports")).json()
    assert [(e["format"], e["rows"], e["status"]) for e in shown] == [("csv", 2, "completed")]
    assert "presigned_urls" not in shown[0]


class TestOnAMockClock:
    @pytest.fixture
    def anyio_backend(self) -> Any:
        return trio_mock_clock()

    async def test_an_export_progresses_and_one_at_a_time_waits(self) -> None:
        emulator = Emulator(rows_per_minute=6_000_000, export_duration=120.0, export_chunk_rows=1)
        async with EmulatedAnalytex(emulator) as analytex:
            await loaded(analytex)
            client = analytex.client
            began = anyio.current_time()
            first = await client.start_export(**WHOLE)
            seen: list[Export] = []
            second = await client.start_export(**WHOLE, format="csv")  # 409: waits for the first
            assert anyio.current_time() - began >= 120
            done = await client.wait_for_export(second, on_progress=seen.append)
        assert (await_first := first.job_id) != done.job_id
        assert await_first
        progress = [e.progress for e in seen]
        assert progress == sorted(progress)
        assert progress[-1] == 100.0
        assert len(progress) >= 3
        assert len(done.files) == 6
        conflicts = [r for r in emulator.requests if r.status == 409]
        assert len(conflicts) == 1

    async def test_an_expired_link_is_renewed(self, tmp_path: Path) -> None:
        emulator = Emulator(rows_per_minute=6_000_000, export_duration=0.0, link_ttl=60.0)
        async with EmulatedAnalytex(emulator) as analytex:
            await loaded(analytex)
            client = analytex.client
            export = await client.wait_for_export(await client.start_export(**WHOLE))
            await anyio.sleep(61)  # the links in hand have expired
            events = [e async for e in client.export_events(job_id=export)]
        assert len(events) == 6
        statuses = [r.status for r in emulator.requests if r.path.startswith("/_files/")]
        assert statuses == [403, 200]


async def test_a_download_cut_off_by_the_emulator_is_fetched_again() -> None:
    emulator = fast()
    async with EmulatedAnalytex(emulator) as analytex:
        await loaded(analytex)
        client = analytex.client
        export = await client.wait_for_export(await client.start_export(**WHOLE))
        emulator.faults.add(re.compile("/_files/.*"), drop_connection=True, times=2)
        events = [e async for e in client.export_events(job_id=export)]
    assert len(events) == 6
    statuses = [r.status for r in emulator.requests if r.path.startswith("/_files/")]
    assert statuses.count(None) == 2  # the two cut off, then every file whole
    assert statuses.count(200) == 3
