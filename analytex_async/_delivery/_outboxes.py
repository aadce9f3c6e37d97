"""What background delivery needs of an outbox, and the directory outbox behind that interface.

An outbox keeps records that a closing client could not deliver, for the next client to replay,
and the times the closing client's real-time requests were answered, so that the next one
starts from what the server still counts. ``OutboxStore`` is the whole interface the session
uses; ``DirectoryOutbox`` is the embedded default (a directory shared by processes, see
``_outbox``), and a Redis stream shared by a fleet plugs in the same way (``open_outbox``).

Replayed records carry an opaque *receipt*; the session acknowledges a record's receipt once it
is delivered or failed (or written to the outbox again at close), and only then may the store
forget it. A store never forgets a record it was not told about: a crash at any point replays
it again (delivery is at-least-once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio

from ._outbox import ClaimedFile, Outbox, OutboxError, OutboxRecord, Replayed

logger = logging.getLogger("analytex_async")

SEND_TIMES_PREFIX = "windows-"
SEND_TIMES_SUFFIX = ".json"
SEND_TIMES_KEEP = 60.0
"""Seconds a closing client's send times matter (the server's window is a minute long)."""


class OutboxStore(Protocol):
    """What background delivery needs of an outbox (a directory, or a Redis stream).

    Attributes:
        claim_interval: Seconds between two claims while a client is open (records of clients
            that died, or that other clients spill meanwhile); ``None``: only at opening.
    """

    claim_interval: float | None

    async def claim(self) -> list[Replayed]:
        """Claim the records no live client holds, in the order they were written.

        Returns:
            The records, each with its receipt.
        """
        ...

    async def acknowledge(self, receipts: Sequence[object]) -> None:
        """Forget claimed records: they were delivered, failed, or spilled again.

        Args:
            receipts: Their receipts.
        """
        ...

    async def spill(self, records: Sequence[OutboxRecord]) -> None:
        """Keep records, durably, in the order given (each chain's order).

        Args:
            records: The records.

        Raises:
            OutboxError: Nothing could be kept (the cause is in the message).
        """
        ...

    async def save_send_times(self, times: Mapping[str, Sequence[float]]) -> None:
        """Keep the Unix times at which a closing client's requests were answered.

        Args:
            times: For each window (``"identify"``, ``"track"``), its answers' times.
        """
        ...

    async def load_send_times(self) -> dict[str, list[float]]:
        """The answer times other clients left within the last minute, by window."""
        ...

    async def aclose(self) -> None:
        """Let go of everything claimed and not acknowledged (claimable again)."""
        ...


class DirectoryOutbox:
    """The directory outbox (``DeliveryPolicy(outbox="dir/")``) as an ``OutboxStore``.

    Records are claimed a file at a time (``_outbox.Outbox``); a file is removed once every one
    of its records is acknowledged. Send times go to a small JSON file per closing client.

    Args:
        directory: The outbox directory.
    """

    claim_interval: float | None = None

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.files = Outbox(directory)
        self.directory = self.files.directory
        self._left: dict[Path, int] = {}

    def __repr__(self) -> str:
        return f"DirectoryOutbox({str(self.directory)!r})"

    async def claim(self) -> list[Replayed]:
        """Claim every file no live process holds (see ``Outbox.claim``)."""
        replayed: list[Replayed] = []
        for claimed in await self.files.claim():
            self._left[claimed.path] = len(claimed.records)
            replayed += [Replayed(record, claimed) for record in claimed.records]
            logger.info(
                "background delivery replays %d record(s) from %s",
                len(claimed.records),
                claimed.path,
            )
        return replayed

    async def acknowledge(self, receipts: Sequence[object]) -> None:
        """Count the records of each file; remove a file once all of its records are."""
        for claimed in receipts:
            assert isinstance(claimed, ClaimedFile)  # noqa: S101 -- our own receipts
            self._left[claimed.path] -= 1
            if self._left[claimed.path] == 0:
                del self._left[claimed.path]
                try:
                    await claimed.remove()
                except OutboxError as exc:
                    # It stays, locked until close: the next start replays it (at least once).
                    logger.error("background delivery could not remove a replayed file: %s", exc)  # noqa: TRY400 -- the message says it all

    async def spill(self, records: Sequence[OutboxRecord]) -> None:
        """Append to this process's own file, written and fsynced (see ``Outbox.spill``)."""
        await self.files.spill(records)

    async def save_send_times(self, times: Mapping[str, Sequence[float]]) -> None:
        """Write one small file of answer times for this closing client."""
        if not any(times.values()):
            return
        data = json.dumps({"v": 1, "times": {k: list(v) for k, v in times.items()}})
        name = f"{SEND_TIMES_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{SEND_TIMES_SUFFIX}"
        try:
            await anyio.to_thread.run_sync(self._write, self.directory / name, data)
        except OSError as exc:
            logger.warning(
                "background delivery could not keep its send times in %s: %s",
                self.directory,
                exc.strerror or exc,
            )

    @staticmethod
    def _write(path: Path, data: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(data, encoding="utf-8")
        os.replace(temporary, path)

    async def load_send_times(self) -> dict[str, list[float]]:
        """Read every send-times file; remove those that no longer matter."""
        return await anyio.to_thread.run_sync(self._read_all)

    def _read_all(self) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {}
        try:
            paths = sorted(self.directory.glob(f"{SEND_TIMES_PREFIX}*{SEND_TIMES_SUFFIX}"))
        except OSError:
            return times
        now = time.time()
        for path in paths:
            found = _read_send_times(path)
            if not found or max((t for ts in found.values() for t in ts), default=0) < now - 60:
                with contextlib.suppress(OSError):
                    path.unlink()  # a minute old: the server no longer counts them
                continue
            for window, answered in found.items():
                times.setdefault(window, []).extend(answered)
        return times

    async def aclose(self) -> None:
        """Release every lock (see ``Outbox.aclose``)."""
        self._left.clear()
        await self.files.aclose()


def _read_send_times(path: Path) -> dict[str, list[float]]:
    try:
        item: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = item.get("times") if isinstance(item, dict) and item.get("v") == 1 else None
    if not isinstance(found, dict):
        return {}
    return {
        str(window): [float(t) for t in answered if isinstance(t, (int, float))]
        for window, answered in found.items()
        if isinstance(answered, list)
    }


def open_outbox(setting: str | os.PathLike[str], key_hash: str) -> OutboxStore:
    """The outbox a ``DeliveryPolicy.outbox`` names: a directory, or a Redis URL.

    Args:
        setting: A directory path, or a ``redis://`` / ``rediss://`` URL (extra ``redis``).
        key_hash: A hash of the API key: a Redis outbox is namespaced by it.

    Returns:
        The store.
    """
    if isinstance(setting, str) and setting.startswith(("redis://", "rediss://")):
        from .._redis_outbox import RedisOutbox  # noqa: PLC0415 -- the redis extra, only if used

        return RedisOutbox(setting, key_hash=key_hash)
    return DirectoryOutbox(setting)


__all__ = ["DirectoryOutbox", "OutboxStore", "Replayed", "open_outbox"]
