"""The import journal: a durable record of every batch the server accepted.

Running the same import again with the same journal skips what was accepted, so a crash, a
kill or a cancel loses nothing and repeats at most the batch that was in flight.

Format (documented in docs/reliability.md): UTF-8 NDJSON, one object per line, appended and
``fsync``-ed after each accepted batch.

* line 1, the header: ``{"journal": "analytex-async", "version": 1, "kind": "user"}``;
* then one line per accepted batch: ``{"first": 0, "last": 9999, "count": 10000,
  "sha256": "<hex>", "job_id": "...", "batch": "0", "at": "<ISO-8601 UTC>"}``, where ``first``
  and ``last`` are the source positions of the batch's first and last records, ``count`` how
  many records it held, and ``sha256`` the digest of its NDJSON lines in order.

A torn last line (a crash in the middle of a write) is ignored and cut off when the journal is
opened again. On a re-run, every valid record whose position falls in an accepted range is
skipped and hashed; if a range's records do not hash to what was sent, the journal belongs to
another source and the import stops with a clear error instead of skipping the wrong records.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import anyio
import attrs

from .._errors import ValidationError
from .._types import RecordKind

MAGIC = "analytex-async"
VERSION = 1


class JournalError(Exception):
    """The journal could not be written: a failure of the journal, not of the source or API.

    The pipeline ends the import with ``ImportAbortedError`` whose ``__cause__`` is this error.
    """


@attrs.frozen
class JournalEntry:
    """One accepted batch, as the journal records it.

    Attributes:
        first: Source position of the batch's first record.
        last: Source position of its last record.
        count: Records in the batch.
        sha256: Hex digest of the batch's NDJSON lines, in order.
        job_id: The job the server created for it.
    """

    first: int
    last: int
    count: int
    sha256: str
    job_id: str


def digest(lines: Sequence[bytes]) -> str:
    """The journal's digest of a batch: SHA-256 over its NDJSON lines, in order.

    Args:
        lines: The batch's encoded lines.

    Returns:
        The hex digest.
    """
    hasher = hashlib.sha256()
    for line in lines:
        hasher.update(line)
    return hasher.hexdigest()


def _mismatch(path: Path, entry: JournalEntry, detail: str) -> ValidationError:
    return ValidationError(
        f"the journal {str(path)!r} does not match this source: records "
        f"{entry.first:,} to {entry.last:,} (job {entry.job_id}) {detail}. Was the source "
        "changed, or is the journal another import's? Use a new journal path to send it all.",
        field="journal",
        position=entry.first,
    )


def _read(path: Path, kind: RecordKind) -> tuple[list[JournalEntry], int]:
    """Parse an existing journal; returns its entries and the length of its intact part."""
    entries: list[JournalEntry] = []
    intact = 0
    with path.open("rb") as file:
        data = file.read()
    lines = data.split(b"\n")
    # The piece after the last newline is a torn write (or empty): never trusted.
    for number, raw in enumerate(lines[:-1], start=1):
        try:
            item = json.loads(raw)
        except ValueError:
            if number == len(lines) - 1:
                break  # a torn final line that happens to end in a newline
            raise ValidationError(
                f"the journal {str(path)!r} is damaged at line {number}", field="journal"
            ) from None
        if number == 1:
            if not isinstance(item, dict) or item.get("journal") != MAGIC:
                raise ValidationError(
                    f"{str(path)!r} is not an analytex-async journal", field="journal"
                )
            if item.get("version") != VERSION:
                raise ValidationError(
                    f"the journal {str(path)!r} has version {item.get('version')!r}; "
                    f"this SDK reads version {VERSION}",
                    field="journal",
                )
            if item.get("kind") != kind:
                raise ValidationError(
                    f"the journal {str(path)!r} belongs to a {item.get('kind')} import, "
                    f"not a {kind} import",
                    field="journal",
                )
        else:
            try:
                entries.append(
                    JournalEntry(
                        int(item["first"]),
                        int(item["last"]),
                        int(item["count"]),
                        str(item["sha256"]),
                        str(item["job_id"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                raise ValidationError(
                    f"the journal {str(path)!r} has a malformed entry at line {number}",
                    field="journal",
                ) from None
        intact += len(raw) + 1
    entries.sort(key=lambda e: e.first)
    return entries, intact


class Journal:
    """An open journal: what earlier runs accepted, and an append-only record of this run's.

    Use ``await Journal.open(path, kind)``; close with ``await journal.aclose()``.

    Args:
        path: The journal's path.
        file: The file, open for appending.
        entries: The entries earlier runs recorded, sorted by position.
    """

    def __init__(self, path: Path, file: IO[bytes], entries: list[JournalEntry]) -> None:
        self.path = path
        self._file = file
        self.entries = entries
        self._cursor = 0
        self._hasher = hashlib.sha256()
        self._fed = 0
        self.skipped = 0

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, entries={len(self.entries)})"

    @classmethod
    async def open(cls, path: str | os.PathLike[str], kind: RecordKind) -> Journal:
        """Open (or create) a journal, reading what earlier runs recorded.

        Args:
            path: Where the journal lives.
            kind: ``"user"`` or ``"company"``; a journal of the other kind is refused.

        Returns:
            The open journal.

        Raises:
            ValidationError: The file is not a journal, is damaged, or is of another kind.
        """
        where = Path(path)

        def open_file() -> Journal:
            entries: list[JournalEntry] = []
            file: IO[bytes]
            if where.exists() and where.stat().st_size > 0:
                entries, intact = _read(where, kind)
                file = where.open("r+b")
                file.truncate(intact)  # cut a torn last line off before appending
                file.seek(0, os.SEEK_END)
                if intact == 0:
                    cls._write_line(file, cls._header(kind))
            else:
                file = where.open("ab")
                cls._write_line(file, cls._header(kind))
            return cls(where, file, entries)

        try:
            return await anyio.to_thread.run_sync(open_file)
        except OSError as exc:
            raise ValidationError(
                f"cannot open the journal {str(where)!r}: {exc.strerror or exc}", field="journal"
            ) from exc

    @staticmethod
    def _header(kind: RecordKind) -> dict[str, Any]:
        return {"journal": MAGIC, "version": VERSION, "kind": kind}

    @staticmethod
    def _write_line(file: IO[bytes], item: dict[str, Any]) -> None:
        # One write of a whole line, then flush and fsync: after a crash the line is either
        # all there or torn at the end, which ``_read`` tolerates.
        file.write(json.dumps(item, separators=(",", ":")).encode() + b"\n")
        file.flush()
        os.fsync(file.fileno())

    @property
    def latest_job_id(self) -> str | None:
        """The job of the last batch earlier runs recorded, if any."""
        return self.entries[-1].job_id if self.entries else None

    def covers(self, position: int, line: bytes) -> bool:
        """Whether an earlier run sent the record at ``position``; if so, account for it.

        Call with every valid record, positions increasing. A covered record's line is hashed
        into its batch's digest, which is checked when the batch's range is passed.

        Args:
            position: The record's source position.
            line: Its encoded NDJSON line.

        Returns:
            True when the record must be skipped.

        Raises:
            ValidationError: A recorded batch's records do not match the source.
        """
        self._settle(position)
        if self._cursor < len(self.entries):
            entry = self.entries[self._cursor]
            if entry.first <= position <= entry.last:
                self._hasher.update(line)
                self._fed += 1
                self.skipped += 1
                return True
        return False

    def _settle(self, position: int) -> None:
        while self._cursor < len(self.entries) and self.entries[self._cursor].last < position:
            self._check(self.entries[self._cursor])
            self._cursor += 1
            self._hasher = hashlib.sha256()
            self._fed = 0

    def _check(self, entry: JournalEntry) -> None:
        if self._fed != entry.count:
            raise _mismatch(
                self.path, entry, f"hold {self._fed:,} valid records now, {entry.count:,} then"
            )
        if self._hasher.hexdigest() != entry.sha256:
            raise _mismatch(self.path, entry, "differ from the records that were sent")

    def finish(self) -> None:
        """Check the recorded batches the source has passed; call when the source is done.

        Raises:
            ValidationError: A recorded batch was not matched, or the source ended before it.
        """
        self._settle(sys.maxsize)

    async def record(
        self, first: int, last: int, lines: Sequence[bytes], job_id: str, batch: str
    ) -> None:
        """Record an accepted batch durably (written and fsync-ed before returning).

        Args:
            first: Source position of its first record.
            last: Source position of its last record.
            lines: Its NDJSON lines.
            job_id: The job the server created.
            batch: The batch's label, for people reading the file.

        Raises:
            JournalError: The entry could not be written or synced (disk full, I/O error).
        """

        def write() -> None:
            # The digest of a batch of up to 50 MB is computed here, in the worker thread, with
            # the write: hashing it on the event loop would stall every other task for tens of
            # milliseconds.
            item = {
                "first": first,
                "last": last,
                "count": len(lines),
                "sha256": digest(lines),
                "job_id": job_id,
                "batch": batch,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            self._write_line(self._file, item)

        try:
            await anyio.to_thread.run_sync(write)
        except OSError as exc:
            raise JournalError(
                f"the journal {str(self.path)!r} could not record the accepted batch {batch} "
                f"(job {job_id}): {exc.strerror or exc}; run the import again without this "
                "journal, or free the disk and resume (at most this batch is sent twice)"
            ) from exc

    async def aclose(self) -> None:
        """Close the journal file.

        Raises:
            JournalError: Closing failed (the last write could not be flushed).
        """
        try:
            await anyio.to_thread.run_sync(self._file.close)
        except OSError as exc:
            raise JournalError(
                f"the journal {str(self.path)!r} could not be closed: {exc.strerror or exc}"
            ) from exc
