"""Aliases and small protocols shared across the layers (no behaviour lives here)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol, runtime_checkable

Content = bytes | AsyncIterable[bytes]
"""A request body: bytes in memory, or chunks streamed as they are made."""

BodyFactory = Callable[[], tuple[Mapping[str, str], Content]]
"""Returns fresh headers and content for one attempt (called once per attempt)."""

RecordKind = Literal["user", "company", "event"]
"""Which records a pipeline carries: bulk users or companies, or historical events."""

SourceFormat = Literal["ndjson", "csv"]
"""The file formats a bulk source may be read as."""


@runtime_checkable
class RequestSlots(Protocol):
    """Anything that hands out request slots: a ``RequestWindow``, or a shared (Redis) window."""

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Hold one request slot for the duration of the block."""
        ...


@runtime_checkable
class SharedReach(Protocol):
    """A shared request window that can estimate, from what every worker holds, its reach."""

    async def reachable_within(self, seconds: float) -> int:
        """How many more requests could start within ``seconds`` from now."""
        ...


@runtime_checkable
class Pausable(Protocol):
    """A request window a 429 can pause: every request waits out the pause, then one probes."""

    def pause(self, seconds: float) -> None:
        """Hold every request back ``seconds`` from now, then let one probe through."""
        ...
