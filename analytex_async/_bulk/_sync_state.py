"""Where a sync keeps what the server holds: the ``SyncState`` protocol and its SQLite default.

A state maps each record id to the digest of the record as last *completed* on the server. A
sync asks it about a few thousand records at a time and writes to it once per batch, never per
record. ``SQLiteSyncState`` keeps it in one SQLite file (stdlib ``sqlite3``, WAL, every call in
a worker thread), bound to one record kind and one API host, used by one sync at a time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import anyio
import anyio.to_thread

from .._errors import ConfigurationError
from .._types import RecordKind

T = TypeVar("T")

FORMAT = "analytex-async sync state 1"
KIND_NAMES: dict[RecordKind, str] = {"user": "users", "company": "companies"}
QUERY_IDS = 500
"""Ids per ``IN (...)`` lookup: under every SQLite build's limit of bound parameters (999)."""


@runtime_checkable
class SyncState(Protocol):
    """What ``sync_users`` / ``sync_companies`` need from a state: digests per record id.

    ``SQLiteSyncState`` is the default; implement this protocol to keep the state in a shared
    store instead (a database several hosts reach). A sync calls ``begin`` once, then the other
    methods from one task at a time, then ``end`` (also after a failure or a cancel).

    A digest is an opaque ``bytes`` value of a few bytes, store it as given; an empty one means
    the server may hold another version of the record than any digest says (it equals none).
    """

    async def begin(self, kind: RecordKind, host: str) -> None:
        """Start one sync run: check the state belongs to ``kind`` and ``host``, take it.

        A new state records ``kind`` and ``host``; an existing one of another kind or host is
        refused. While a run holds the state, another run must wait or fail, never share it.
        The marks of ``present`` start empty for every run.

        Args:
            kind: ``"user"`` or ``"company"``.
            host: The API host the records go to.

        Raises:
            ConfigurationError: The state belongs to another kind or host, is in use by
                another sync, or cannot be opened.
        """
        ...

    async def present(self, records: Sequence[tuple[str, bytes | None]]) -> list[bytes | None]:
        """Mark records as present in this run; say what each is compared against.

        For each ``(id, digest)`` in order, the answer is the digest marked for the id earlier
        in this run (an earlier record with the same id, in this call or a previous one), else
        the digest stored for it, else ``None``. A ``None`` digest marks the id present without
        replacing what an earlier record marked (a record that was rejected).

        Args:
            records: ``(id, digest)`` pairs in source order.

        Returns:
            One digest or ``None`` per record.
        """
        ...

    async def store(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Record the digests of records the server completed; a later pair for an id wins.

        Args:
            records: ``(id, digest)`` pairs, in the order the server applied them.
        """
        ...

    async def forget(self, ids: Sequence[str]) -> None:
        """Drop ids whose records were deleted on the server.

        Args:
            ids: The ids.
        """
        ...

    def missing(self, chunk_size: int) -> AsyncIterator[list[str]]:
        """The stored ids not marked present in this run, ``chunk_size`` at a time at most.

        Args:
            chunk_size: Ids per chunk at most.

        Returns:
            An async iterator of chunks; ``forget`` may be called between them.
        """
        ...

    async def end(self) -> None:
        """End the run: make what was stored durable and let another run take the state."""
        ...


def _in_use(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"the sync state {path} is in use by another sync; run one sync per state file at a time"
    )


class SQLiteSyncState:
    """The default sync state: one SQLite file of record ids and digests.

    The file holds a table of ``(id, digest)`` pairs (a 16-byte digest per record: about 40
    bytes a record with short ids) and which kind and API host it belongs to. It is opened in
    WAL mode with an exclusive lock held for the whole run, so a second sync on the same file
    waits up to ``lock_timeout`` seconds and then fails with ``ConfigurationError``, never
    sharing or corrupting it. Lookups and writes go a few thousand records at a time, in a
    worker thread; each write is one transaction.

    Args:
        path: The state file; created (with its directory) on first use.
        lock_timeout: Seconds to wait for another sync using the same file to end.

    Examples:
        ```python
        state = SQLiteSyncState("state/users.sqlite")
        result = await client.sync_users("users.ndjson", state=state)
        ```
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 0.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._db: sqlite3.Connection | None = None
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"SQLiteSyncState({str(self.path)!r})"

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise RuntimeError("the sync state is not in use: call begin() first")
        async with self._lock:
            # Not abandoned on cancel: a transaction in the thread always commits or rolls back.
            return await anyio.to_thread.run_sync(work, db)

    # -- the run -----------------------------------------------------------------------------

    async def begin(self, kind: RecordKind, host: str) -> None:
        """Open the file, check its kind and host (recording them if new), and lock it.

        Args:
            kind: ``"user"`` or ``"company"``.
            host: The API host.

        Raises:
            ConfigurationError: Another kind or host, another sync holds the file, or it is
                not a sync state.
        """
        if self._db is not None:
            raise RuntimeError("this sync state is already in use by a run")
        self._db = await anyio.to_thread.run_sync(self._open, KIND_NAMES[kind], host)

    def _open(self, kind: str, host: str) -> sqlite3.Connection:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                path, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open the sync state {path}: {exc}") from None
        try:
            self._prepare(db, kind, host)
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise _in_use(path) from None
            raise ConfigurationError(f"cannot use the sync state {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigurationError(f"{path} is not a sync state file: {exc}") from None
        except BaseException:
            db.close()
            raise
        return db

    def _prepare(self, db: sqlite3.Connection, kind: str, host: str) -> None:
        # EXCLUSIVE locking: the first write transaction takes the file's lock and the
        # connection keeps it until it closes (a crash releases it with the process).
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check_tables(db)
            db.execute(
                "CREATE TABLE IF NOT EXISTS sync_state"
                " (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS digests"
                " (id TEXT PRIMARY KEY, digest BLOB NOT NULL) WITHOUT ROWID"
            )
            known = dict(db.execute("SELECT key, value FROM sync_state").fetchall())
            if not known:
                db.executemany(
                    "INSERT INTO sync_state VALUES (?, ?)",
                    [("format", FORMAT), ("kind", kind), ("host", host)],
                )
            else:
                self._check(known, kind, host)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("DROP TABLE IF EXISTS temp.present")
        db.execute("DROP TABLE IF EXISTS temp.missing")
        db.execute("CREATE TEMP TABLE present (id TEXT PRIMARY KEY, digest BLOB) WITHOUT ROWID")

    def _check_tables(self, db: sqlite3.Connection) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if tables and "sync_state" not in tables:
            raise ConfigurationError(f"{self.path} is not a sync state file")

    def _check(self, known: dict[str, str], kind: str, host: str) -> None:
        if known.get("format") != FORMAT:
            raise ConfigurationError(
                f"{self.path} is a sync state of another format ({known.get('format')!r})"
            )
        if known.get("kind") != kind:
            raise ConfigurationError(
                f"the sync state {self.path} holds {known.get('kind')}, not {kind}: "
                f"use one state file per kind"
            )
        if known.get("host") != host:
            raise ConfigurationError(
                f"the sync state {self.path} belongs to the API at {known.get('host')}, "
                f"not {host}: use one state file per API host"
            )

    async def end(self) -> None:
        """Close the file (its WAL folded back in) and release the lock."""
        db, self._db = self._db, None
        if db is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(db.close)

    # -- lookups and writes ------------------------------------------------------------------

    async def present(self, records: Sequence[tuple[str, bytes | None]]) -> list[bytes | None]:
        """Mark records present in this run; the digest each is compared against.

        Args:
            records: ``(id, digest)`` pairs in source order (``None``: a rejected record).

        Returns:
            Per record: the digest marked earlier in this run, else the stored one, else
            ``None``.
        """
        return await self._call(lambda db: _present(db, records))

    async def store(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Record completed records' digests (a later pair for an id wins), in one transaction.

        Args:
            records: ``(id, digest)`` pairs.
        """
        if records:
            await self._call(
                lambda db: _write(db, "INSERT OR REPLACE INTO digests VALUES (?, ?)", records)
            )

    async def forget(self, ids: Sequence[str]) -> None:
        """Drop deleted ids, in one transaction.

        Args:
            ids: The ids.
        """
        if ids:
            rows = [(record_id,) for record_id in ids]
            await self._call(lambda db: _write(db, "DELETE FROM digests WHERE id = ?", rows))

    async def missing(self, chunk_size: int) -> AsyncIterator[list[str]]:
        """The stored ids not marked present in this run, from a snapshot taken first.

        Args:
            chunk_size: Ids per chunk at most.

        Yields:
            Chunks of ids.
        """
        await self._call(_snapshot_missing)
        after = 0
        while True:
            rows = await self._call(partial(_missing_after, after=after, limit=chunk_size))
            if not rows:
                return
            after = rows[-1][0]
            yield [row[1] for row in rows]


def present_answers(
    records: Sequence[tuple[str, bytes | None]],
    earlier: Mapping[str, bytes],
    stored: Mapping[str, bytes],
) -> list[bytes | None]:
    """What ``SyncState.present`` answers, from what a state looked up for the ids.

    Args:
        records: ``(id, digest)`` pairs in source order (``None``: a rejected record).
        earlier: The digests marked for the ids by earlier calls of this run.
        stored: The digests stored for the ids.

    Returns:
        Per record: the digest marked for its id by an earlier record of this call, else
        ``earlier``'s, else ``stored``'s, else ``None``.
    """
    marked: dict[str, bytes] = {}
    answers: list[bytes | None] = []
    for record_id, digest in records:
        before = marked.get(record_id)
        if before is None:
            before = earlier.get(record_id)
        if before is None:
            before = stored.get(record_id)
        answers.append(before)
        if digest is not None:
            marked[record_id] = digest
    return answers


def latest_marks(records: Sequence[tuple[str, bytes | None]]) -> dict[str, bytes]:
    """The digest each id is marked with once these records are: its last non-``None`` one."""
    return {record_id: digest for record_id, digest in records if digest is not None}


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _select(db: sqlite3.Connection, query: str, ids: Sequence[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for chunk in _chunks(ids, QUERY_IDS):
        marks = ",".join("?" * len(chunk))
        found.update(db.execute(query.format(marks), chunk).fetchall())
    return found


def _write(db: sqlite3.Connection, statement: str, rows: Iterable[Sequence[object]]) -> None:
    db.execute("BEGIN")
    try:
        db.executemany(statement, rows)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _present(
    db: sqlite3.Connection, records: Sequence[tuple[str, bytes | None]]
) -> list[bytes | None]:
    ids = list({record_id: None for record_id, _ in records})
    stored = _select(db, "SELECT id, digest FROM digests WHERE id IN ({})", ids)
    earlier = _select(
        db, "SELECT id, digest FROM temp.present WHERE digest IS NOT NULL AND id IN ({})", ids
    )
    answers = present_answers(records, earlier, stored)
    marked = latest_marks(records)
    db.execute("BEGIN")
    try:
        db.executemany("INSERT OR REPLACE INTO temp.present VALUES (?, ?)", marked.items())
        db.executemany(
            "INSERT OR IGNORE INTO temp.present VALUES (?, NULL)",
            [(record_id,) for record_id in ids if record_id not in marked],
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return answers


def _snapshot_missing(db: sqlite3.Connection) -> None:
    db.execute("DROP TABLE IF EXISTS temp.missing")
    db.execute(
        "CREATE TEMP TABLE missing AS SELECT id FROM digests"
        " WHERE NOT EXISTS (SELECT 1 FROM temp.present AS p WHERE p.id = digests.id)"
    )


def _missing_after(db: sqlite3.Connection, *, after: int, limit: int) -> list[tuple[int, str]]:
    return db.execute(
        "SELECT rowid, id FROM temp.missing WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit),
    ).fetchall()
