"""The sync stage of ``AsyncAnalytex``: where ``sync_users`` and ``sync_companies`` run.

A sync is an import whose unchanged records are left out (the diff in ``_bulk._sync``), whose
completed records are remembered in a state, and which may then delete the ids the source no
longer holds. The client keeps the public methods (the contract's signatures and documentation)
and hands each call to :func:`run_sync`, with the importer and the delete call it holds.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable

import anyio

from ._bulk._digests import UNKNOWN
from ._bulk._options import ImportOptions
from ._bulk._sync import SyncResult, SyncRun
from ._bulk._sync_state import SQLiteSyncState, SyncState
from ._errors import APIError, ImportAbortedError, ValidationError
from ._imports import Importer
from ._models import ImportResult
from ._types import RecordKind

DELETE_CHUNK = 1_000
"""Ids per delete request at most: the API documents no limit, so small requests are safe."""

StateArgument = str | os.PathLike[str] | SyncState

DeleteIds = Callable[[Iterable[str]], Awaitable[None]]
"""The client's ``delete_users`` or ``delete_companies``."""


def _state_of(state: object) -> SyncState:
    from ._redis_sync_state import RedisSyncState, is_redis_url  # noqa: PLC0415 -- when used

    if is_redis_url(state):
        return RedisSyncState(state)
    if isinstance(state, (str, os.PathLike)):
        return SQLiteSyncState(state)
    if isinstance(state, SyncState):
        return state
    raise ValidationError(
        f"must be a path, a redis:// URL or a SyncState, got {type(state).__name__}",
        field="state",
    )


def _check_flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise ValidationError(f"must be True or False, got {value!r:.60}", field=name)


async def run_sync(
    importer: Importer,
    kind: RecordKind,
    source: object,
    state: object,
    *,
    host: str,
    full: bool,
    delete_missing: bool,
    journal: object,
    options: ImportOptions,
    delete: DeleteIds,
) -> SyncResult:
    """Sync ``source`` against ``state`` (see ``AsyncAnalytex.sync_users``).

    Args:
        importer: Starts the import of what changed.
        kind: ``"user"`` or ``"company"``.
        source: Anything ``import_users`` takes.
        state: A path to the SQLite state file, or any ``SyncState``.
        host: The API host the state belongs to.
        full: Send every valid record.
        delete_missing: Delete ids the state holds and the source no longer does.
        journal: Refused unless ``None``.
        options: The import's options.
        delete: Deletes ids of this kind on the server.

    Returns:
        The import's result plus the sync's counters.
    """
    if journal is not None:
        raise ValidationError(
            "a sync records what the server completed in its state; journal= is for "
            "import_users / import_companies",
            field="journal",
        )
    _check_flag(full, "full")
    _check_flag(delete_missing, "delete_missing")
    store = _state_of(state)
    await store.begin(kind, host)
    try:
        diff = SyncRun(store, kind, full=full)
        imported = await _import_changes(importer, diff, source, options)
        return await _missing(diff, imported, delete_missing, delete)
    finally:
        with anyio.CancelScope(shield=True):
            await store.end()


async def _import_changes(
    importer: Importer, diff: SyncRun, source: object, options: ImportOptions
) -> ImportResult:
    """Import the new and changed records; remember what completed, whatever ends the run."""
    run = importer.start(
        diff.kind,
        ImportOptions(
            options.batch_size,
            options.wait,
            diff.on_invalid(options.on_invalid),
            options.on_progress,
            options.format,
            options.csv_multiline,
            skip=diff.skip,
            on_accepted=diff.on_accepted,
            on_job=diff.on_job,
        ),
    )
    try:
        imported = await run.run(source)
    except (ImportAbortedError, ValidationError) as exc:
        if exc.result is not None:
            diff.finish(exc.result.jobs)
            exc.result = diff.result(exc.result)
        raise
    finally:
        # What completed is remembered, whatever ended the run (a cancel included).
        with anyio.CancelScope(shield=True):
            await diff.flush()
    diff.finish(imported.jobs)
    await diff.flush()
    return imported


async def _missing(
    diff: SyncRun, imported: ImportResult, delete_missing: bool, delete: DeleteIds
) -> SyncResult:
    """Count the ids the source no longer holds; delete them when asked."""
    store = diff.state
    missing = deleted = 0
    failure: APIError | None = None
    async for chunk in store.missing(DELETE_CHUNK):
        missing += len(chunk)
        if not delete_missing or failure is not None:
            continue
        try:
            # The server may forget the ids from now on: never claim their records again.
            await store.store([(record_id, UNKNOWN) for record_id in chunk])
            await delete(chunk)
        except APIError as exc:
            failure = exc  # count the rest, then stop
            continue
        await store.forget(chunk)
        deleted += len(chunk)
    result = diff.result(imported, missing=missing, deleted=deleted)
    if failure is not None:
        raise ImportAbortedError(
            f"the sync deleted {deleted:,} of {missing:,} missing ids, then a delete "
            f"failed: {failure}",
            result=result,
        ) from failure
    return result
