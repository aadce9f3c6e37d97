"""The outbox: records background delivery could not send, kept on disk for the next start.

The outbox is a directory that any number of processes share. Each process appends to a file of
its own, ``outbox-<pid>-<random hex>.ndjson``: UTF-8 NDJSON, one line per record,
``{"v": 1, "kind": "track", "payload": {...}}``, written and ``fsync``-ed before ``spill``
returns. The process holds an exclusive ``flock`` on its file from the moment it exists until the
outbox is closed or the process dies (the kernel drops the lock with the process, even on
``SIGKILL``). A starting client claims every file whose lock it can take -- no live process holds
it, so its records are orphans to replay -- keeps that lock while it replays, and deletes the file
*before* releasing the lock. Hence the rules that keep two claimers from replaying one file:

* A spill file is created under a hidden temporary name, locked, and only then renamed to its
  outbox name: a claimer never sees a new file before its writer holds the lock (it would find it
  empty and delete it under the writer).
* After taking a lock, a claimer checks that the path still names the file it locked. A claimer
  that opened a file just before another one removed it (and then released the lock) gets the
  lock on a deleted file, sees that, and lets it go.

**Fork.** ``flock`` locks belong to open file *descriptions*, which a forked child shares with
its parent: ``flock`` on an inherited descriptor "succeeds" because the lock is already held
through it. So a child must never use its parent's ``Outbox``: it makes its own, whose claim opens
fresh descriptions, and ``flock`` on a fresh description of a file the parent holds fails, as
wanted. The rule is simply that a process never claims through a descriptor it did not open
itself. As a safety net, an ``Outbox`` used in a process other than the one that opened its files
forgets them (closing its copies without unlocking, so the parent's locks stay) and starts over
as a new outbox; the parent always unlocks explicitly before closing, so a child still holding a
copy of a descriptor never keeps the parent's lock alive.

Record contents are never logged: they are users' data.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import anyio
import attrs

from .._errors import ConfigurationError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("analytex_async")

OutboxKind = Literal["identify", "identify_company", "track"]
"""The background call a record came from."""

_KINDS: frozenset[str] = frozenset(get_args(OutboxKind))
_VERSION = 1
_PREFIX = "outbox-"
_SUFFIX = ".ndjson"


class OutboxError(Exception):
    """The outbox directory or a file in it could not be written or removed.

    The message names the path and the operating system's error.
    """


@attrs.frozen
class OutboxRecord:
    """One record waiting in the outbox.

    Attributes:
        kind: ``"identify"``, ``"identify_company"`` or ``"track"``.
        payload: The request body as it would be sent (JSON-compatible).
    """

    kind: OutboxKind = attrs.field(validator=attrs.validators.in_(_KINDS))
    payload: Mapping[str, Any]


@attrs.frozen
class Replayed:
    """A record claimed from an outbox (a directory, or a Redis stream), to deliver again.

    Attributes:
        record: The record.
        receipt: The store's handle for ``OutboxStore.acknowledge``.
    """

    record: OutboxRecord
    receipt: object = attrs.field(eq=False, repr=False)


def _error(action: str, path: Path, exc: OSError) -> OutboxError:
    reason = exc.strerror or str(exc)
    return OutboxError(f"the outbox could not {action} {str(path)!r}: {reason}")


def _unlock_and_close(fd: int) -> None:
    # Unlock explicitly: a forked child may hold a copy of this descriptor, and closing ours alone
    # would leave the lock alive in the child.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


class _HeldFile:
    """An open descriptor holding an exclusive ``flock``, owned by the process that opened it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd: int | None = fd
        self._pid = os.getpid()
        self._guard = threading.Lock()

    def _ours(self) -> bool:
        # In a forked child the descriptor and its lock are the parent's: never touch them.
        return self._pid == os.getpid()

    def release(self) -> None:
        """Unlock and close; the file stays. Idempotent."""
        if not self._ours():
            return
        with self._guard:
            if self.fd is not None:
                _unlock_and_close(self.fd)
                self.fd = None

    def remove(self) -> None:
        """Delete the file, then unlock and close. Idempotent; a no-op once released."""
        if not self._ours():
            return
        with self._guard:
            if self.fd is None:
                return
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass  # deleted by hand: the goal is reached
            except OSError as exc:
                raise _error("remove", self.path, exc) from None
            _unlock_and_close(self.fd)
            self.fd = None

    def read(self) -> bytes:
        """The whole file, read through the locked descriptor: the file held is the one read."""
        if self.fd is None:
            raise OSError(errno.EBADF, "the outbox file is no longer held")
        with open(self.fd, "rb", closefd=False) as file:
            file.seek(0)
            return file.read()

    def forget(self) -> None:
        """In a forked child: close the inherited copy without unlocking the parent's lock."""
        if self.fd is not None and not self._ours():
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


@attrs.frozen
class ClaimedFile:
    """An outbox file this process claimed: its records, and the lock it holds on it.

    Attributes:
        path: The file.
        records: Its complete, readable records, in the order they were written.
        unreadable: Lines in the middle of the file that could not be read (skipped; a
            WARNING names the file and this count).
    """

    path: Path
    records: tuple[OutboxRecord, ...]
    unreadable: int
    _held: _HeldFile = attrs.field(repr=False, eq=False, alias="held")

    async def remove(self) -> None:
        """Delete the file once its records are delivered or failed, then release its lock.

        Idempotent. After the outbox was closed (the lock released, the file claimable again by
        another process) it does nothing: the file is no longer this process's to delete.

        Raises:
            OutboxError: The file could not be deleted (it stays claimed until ``aclose()``).
        """
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._held.remove)


def _parse(path: Path, data: bytes) -> tuple[list[OutboxRecord], int]:
    """Read a file's records, torn-tail tolerant; returns them and the count of bad lines."""
    lines = data.split(b"\n")
    # The piece after the last newline is a write cut short by a crash (or empty): never trusted.
    complete = lines[:-1]
    records: list[OutboxRecord] = []
    unreadable = 0
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            if number == len(complete):
                break  # a torn last line that happens to end in a newline
            unreadable += 1
            continue
        record = record_from_json(item)
        if record is None:
            unreadable += 1
            continue
        records.append(record)
    if unreadable:
        logger.warning(
            "outbox file %s: skipped %d unreadable line(s); the other records are replayed",
            path,
            unreadable,
        )
    return records, unreadable


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"an outbox payload holds a {type(value).__name__}, not JSON")


def encode_record(record: OutboxRecord) -> str:
    """One record as one line of JSON (no newline): the outbox's format, on disk and in Redis.

    Raises:
        TypeError: The payload is not JSON-compatible.
    """
    return json.dumps(
        {"v": _VERSION, "kind": record.kind, "payload": record.payload},
        ensure_ascii=False,
        separators=(",", ":"),
        default=_json_default,
    )


def record_from_json(item: Any) -> OutboxRecord | None:
    """The record a decoded line holds, or ``None`` when it is not one of ours."""
    if (
        not isinstance(item, dict)
        or item.get("v") != _VERSION
        or item.get("kind") not in _KINDS
        or not isinstance(item.get("payload"), dict)
    ):
        return None
    return OutboxRecord(item["kind"], item["payload"])


def _encode(records: Sequence[OutboxRecord]) -> bytes:
    return "".join(encode_record(record) + "\n" for record in records).encode("utf-8")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    """Make a new or renamed entry in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # filesystems that cannot
            raise
    finally:
        os.close(fd)


def _lock_existing(path: Path) -> _HeldFile | None:
    """Take the lock of an outbox file no live process holds, or ``None``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # removed by another claimer since the listing
    except OSError as exc:
        logger.warning("outbox file %s cannot be opened (%s): skipped", path, exc.strerror)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # a live process holds it
        return None
    held = _HeldFile(path, fd)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        same = False
    if not same:
        # Locked a file another claimer removed between our open and our lock.
        held.release()
        return None
    return held


class Outbox:
    """A durable outbox directory: this process's spill file, and the files it claimed.

    Example:
        >>> outbox = Outbox("analytex-outbox/")  # no I/O until first use
        >>> # await outbox.spill([OutboxRecord("track", {"user_id": "u1", ...})])
        >>> # for claimed in await outbox.claim(): ...; await claimed.remove()
        >>> # await outbox.aclose()

    A forked child makes its own ``Outbox`` (see the module docstring). Closing is not final: a
    later ``spill`` starts a new file.

    Args:
        directory: The outbox directory, shared by every process that uses it; created on first
            use if missing. Files are created readable by their owner only.

    Raises:
        ConfigurationError: The platform has no POSIX file locks (``fcntl.flock``).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        if fcntl is None:
            raise ConfigurationError(
                "the outbox needs POSIX file locks (fcntl.flock), which this platform lacks; "
                "use DeliveryPolicy(outbox=None)"
            )
        self.directory = Path(directory)
        self._pid = os.getpid()
        self._guard = threading.Lock()
        self._spill: _HeldFile | None = None
        self._spilled_bytes = 0
        self._claimed: list[_HeldFile] = []

    def __repr__(self) -> str:
        return f"Outbox({str(self.directory)!r})"

    def _start_over_after_fork(self) -> None:
        if self._pid == os.getpid():
            return
        # The open files are the parent's, and so are their locks: keep neither.
        for held in [self._spill, *self._claimed]:
            if held is not None:
                held.forget()
        self._pid = os.getpid()
        self._guard = threading.Lock()  # the parent's may have been held by one of its threads
        self._spill = None
        self._spilled_bytes = 0
        self._claimed = []

    @property
    def spill_path(self) -> Path | None:
        """This process's spill file while it holds it, else ``None``."""
        spill = self._spill
        return spill.path if spill is not None and spill.fd is not None else None

    async def spill(self, records: Sequence[OutboxRecord]) -> int:
        """Append records to this process's own file, durably (written and ``fsync``-ed).

        Runs in a worker thread and is shielded from cancellation: records handed over are
        either on disk when it returns or reported by an exception.

        Args:
            records: The records to keep.

        Returns:
            How many were written (all of them).

        Raises:
            OutboxError: The directory or the file could not be written; nothing was kept.
            TypeError: A payload is not JSON-compatible; nothing was written.
        """
        if not records:
            return 0
        self._start_over_after_fork()
        data = _encode(records)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._spill_sync, data)
        return len(records)

    def _spill_sync(self, data: bytes) -> None:
        with self._guard:
            if self._spill is None or self._spill.fd is None:
                self._spill = self._create()
                self._spilled_bytes = 0
            spill = self._spill
            fd = spill.fd
            assert fd is not None  # noqa: S101 - _create returns an open file
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                # Cut a partial write off, so the next spill does not append to a torn line.
                try:
                    os.ftruncate(fd, self._spilled_bytes)
                except OSError:
                    spill.release()  # the next spill starts a new file
                raise _error("write to", spill.path, exc) from None
            self._spilled_bytes += len(data)

    def _create(self) -> _HeldFile:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _error("create the directory", self.directory, exc) from None
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        # Claimers only look at outbox-*.ndjson: the file is locked before it gets that name.
        temporary = self.directory / f".{_PREFIX}{name}.tmp"
        final = self.directory / f"{_PREFIX}{name}{_SUFFIX}"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise _error("create a file in", self.directory, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, final)
            _fsync_directory(self.directory)
        except OSError as exc:
            _unlock_and_close(fd)
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise _error("create", final, exc) from None
        return _HeldFile(final, fd)

    async def claim(self) -> list[ClaimedFile]:
        """Claim every outbox file in the directory that no live process holds.

        Each claimed file stays locked until ``ClaimedFile.remove()`` or ``aclose()``. Files
        with nothing to replay are removed at once. A file that cannot be opened or read is
        skipped with a WARNING (it stays for a later start). Runs in a worker thread.

        Returns:
            The newly claimed files, by name.

        Raises:
            OutboxError: The directory exists but cannot be listed.
        """
        self._start_over_after_fork()
        return await anyio.to_thread.run_sync(self._claim_sync)

    def _claim_sync(self) -> list[ClaimedFile]:
        with self._guard:
            try:
                names = sorted(os.listdir(self.directory))
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise _error("list", self.directory, exc) from None
            self._claimed = [held for held in self._claimed if held.fd is not None]
            # Never claim through a file we hold ourselves (see the module docstring).
            ours = {held.path for held in self._claimed}
            if self.spill_path is not None:
                ours.add(self.spill_path)
            claimed: list[ClaimedFile] = []
            for name in names:
                path = self.directory / name
                if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)) or path in ours:
                    continue
                found = self._claim_one(path)
                if found is not None:
                    claimed.append(found)
            return claimed

    def _claim_one(self, path: Path) -> ClaimedFile | None:
        held = _lock_existing(path)
        if held is None:
            return None
        try:
            data = held.read()
        except OSError as exc:
            held.release()
            logger.warning("outbox file %s cannot be read (%s): skipped", path, exc.strerror)
            return None
        records, unreadable = _parse(path, data)
        if not records and not unreadable:
            try:
                held.remove()  # empty, or only a write cut short by a crash
            except OutboxError:
                held.release()
            return None
        self._claimed.append(held)
        return ClaimedFile(path, tuple(records), unreadable, held=held)

    async def aclose(self) -> None:
        """Release every lock this outbox holds. Idempotent.

        The spill file stays, for the next start to claim; claimed files not yet removed become
        claimable again.
        """
        self._start_over_after_fork()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        with self._guard:
            for held in [self._spill, *self._claimed]:
                if held is not None:
                    held.release()
            self._spill = None
            self._spilled_bytes = 0
            self._claimed = []
