"""Sources are chosen by what the caller hands over: iterables, paths, file objects, refusals."""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from analytex_async import Company, User, ValidationError
from analytex_async._bulk._sources import SourceRecord, read_source

from ._reading import (
    OBJECTS,
    collect,
    ndjson,
    spy_on_opens,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every file the sources open, to check that each one is closed."""
    return spy_on_opens(monkeypatch)


# --- iterables --------------------------------------------------------------------------------


async def test_a_list_passes_records_through_untouched_with_their_positions() -> None:
    items = [User("u1"), Company("c1"), {"user_id": "u2"}, 42, None]
    records = await collect(items)
    assert [r.record for r in records] == items
    assert records[0].record is items[0]
    assert [r.position for r in records] == [0, 1, 2, 3, 4]
    assert all(r.line is None and r.error is None for r in records)


async def test_a_generator_is_consumed_lazily_on_the_event_loop_thread() -> None:
    loop_thread = threading.get_ident()
    pulled: list[int] = []

    def generate() -> Iterator[dict[str, Any]]:
        for i in range(5):
            assert threading.get_ident() == loop_thread
            pulled.append(i)
            yield {"user_id": f"u{i}"}

    async with contextlib.aclosing(read_source(generate(), "user")) as records:
        first = await records.__anext__()
        assert first == SourceRecord(0, None, {"user_id": "u0"})
        assert pulled == [0]
    assert pulled == [0]


async def test_an_async_generator_is_read_in_order() -> None:
    async def generate() -> AsyncIterator[Company]:
        for i in range(3):
            await anyio.lowlevel.checkpoint()
            yield Company(f"c{i}")

    records = await collect(generate(), "company")
    assert [(r.position, r.record.company_id) for r in records] == [(0, "c0"), (1, "c1"), (2, "c2")]


# --- refusals ---------------------------------------------------------------------------------


class _AsyncFile:
    name = "async.ndjson"

    async def read(self, size: int = -1) -> bytes:
        return b""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b'{"user_id": "u1"}', "got bytes"),
        (bytearray(b"{}"), "got bytearray"),
        ({"user_id": "u1"}, "single record"),
        (User("u1"), "single record"),
        (Company("c1"), "single record"),
        (42, "got int"),
        (_AsyncFile(), "async file objects"),
    ],
)
def test_sources_that_cannot_hold_records_are_refused_at_once(source: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        read_source(source, "user")
    assert info.value.field == "source"


def test_unknown_kind_and_format_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        read_source([], "users")  # type: ignore[arg-type]
    assert info.value.field == "kind"
    with pytest.raises(ValidationError) as info:
        read_source(io.BytesIO(), "user", format="json")  # type: ignore[arg-type]
    assert info.value.field == "format"


@pytest.mark.parametrize("name", ["users.json", "users.txt", "users", "users.gz", "users.csv.zip"])
def test_a_path_with_an_unknown_suffix_is_refused_naming_the_file(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    with pytest.raises(ValidationError, match=re.escape(str(path))) as info:
        read_source(path, "user")
    assert info.value.field == "source"
    assert "format=" in str(info.value)


async def test_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes(b"user_id,plan\nu1,pro\n")
    records = await collect(str(path), format="csv")
    assert [r.record for r in records] == [{"user_id": "u1", "metadata": {"plan": "pro"}}]
    (tmp_path / "data.csv").write_bytes(ndjson({"user_id": "u1"}))
    records = await collect(tmp_path / "data.csv", format="ndjson")
    assert [r.record for r in records] == [{"user_id": "u1"}]


async def test_a_path_may_be_a_plain_string(tmp_path: Path) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(ndjson(*OBJECTS))
    assert [r.record for r in await collect(str(path))] == OBJECTS


async def test_nothing_is_opened_until_iteration_starts(tmp_path: Path, opened: list[Any]) -> None:
    path = tmp_path / "users.ndjson"
    path.write_bytes(ndjson(*OBJECTS))
    records = read_source(path, "user")
    await records.aclose()
    assert opened == []
