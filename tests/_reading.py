"""What the source tests share: reading a source to the end, sample data, and an open() spy."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from analytex_async import ValidationError
from analytex_async._bulk import _files
from analytex_async._bulk._sources import SourceRecord, read_source

OBJECTS = [{"user_id": "u1", "metadata": {"plan": "pro"}}, {"user_id": "ü2"}, {"user_id": "u3"}]


async def collect(source: Any, kind: Any = "user", **options: Any) -> list[SourceRecord]:
    """Every record of a source."""
    async with contextlib.aclosing(read_source(source, kind, **options)) as records:
        return [record async for record in records]


async def collect_until_error(
    source: Any, kind: Any = "user", **options: Any
) -> tuple[list[SourceRecord], ValidationError]:
    """The records read before the read failed, and the failure."""
    seen: list[SourceRecord] = []
    try:
        async with contextlib.aclosing(read_source(source, kind, **options)) as records:
            async for record in records:
                seen.append(record)
    except ValidationError as error:
        return seen, error
    raise AssertionError(f"no ValidationError after {len(seen)} records")


def ndjson(*objects: Any) -> bytes:
    """One JSON line per object."""
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)


def numbered_lines(count: int) -> bytes:
    """Distinct lines, so that gzip cannot squeeze them into almost nothing."""
    return b"".join(
        b'{"user_id":"u%d","metadata":{"n":%d}}\n' % (i, (i * 2654435761) % 2**32)
        for i in range(count)
    )


def truncated(data: bytes) -> bytes:
    """The first half of ``data``: a download cut short."""
    return data[: len(data) // 2]


def spy_on_opens(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every file the sources open from now on, to check that each one is closed."""
    files: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        handle = open(*args, **kwargs)  # noqa: SIM115
        files.append(handle)
        return handle

    monkeypatch.setattr(_files, "open", spy, raising=False)
    return files
