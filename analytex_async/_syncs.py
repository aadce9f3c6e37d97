"""The sync calls of ``AsyncAnalytex``: ``sync_users`` and ``sync_companies``.

A mixin beside ``ImportCalls``: a sync is an import whose unchanged records are left out (the
diff in ``_bulk._sync``), whose completed records are remembered in a state, and which may then
delete the ids the source no longer holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import anyio
import httpx

from ._bulk._digests import UNKNOWN
from ._bulk._options import ImportOptions, OnInvalid, ProgressCallback
from ._bulk._pipeline import ImportRun
from ._bulk._sync import SyncResult, SyncRun
from ._bulk._sync_state import SQLiteSyncState, SyncState
from ._constants import MAX_RECORDS
from ._errors import APIError, ImportAbortedError, ValidationError
from ._imports import ImportCalls
from ._models import ImportResult
from ._types import RecordKind, SourceFormat

DELETE_CHUNK = 1_000
"""Ids per delete request at most: the API documents no limit, so small requests are safe."""

StateArgument = str | os.PathLike[str] | SyncState


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


class SyncCalls(ImportCalls):
    """``sync_users`` and ``sync_companies`` (with the import calls), for ``AsyncAnalytex``."""

    base_url: str

    async def delete_users(self, user_ids: Iterable[str]) -> None:
        """Delete users (the client's own call)."""
        raise NotImplementedError

    async def delete_companies(self, company_ids: Iterable[str]) -> None:
        """Delete companies (the client's own call)."""
        raise NotImplementedError

    async def _sync(
        self,
        kind: RecordKind,
        source: object,
        state: StateArgument,
        *,
        full: bool,
        delete_missing: bool,
        journal: object,
        options: ImportOptions,
    ) -> SyncResult:
        self._check_open()
        if journal is not None:
            raise ValidationError(
                "a sync records what the server completed in its state; journal= is for "
                "import_users / import_companies",
                field="journal",
            )
        _check_flag(full, "full")
        _check_flag(delete_missing, "delete_missing")
        store = _state_of(state)
        await store.begin(kind, httpx.URL(self.base_url).host)
        try:
            diff = SyncRun(store, kind, full=full)
            return await self._sync_with(diff, source, delete_missing, options)
        finally:
            with anyio.CancelScope(shield=True):
                await store.end()

    async def _sync_with(
        self, diff: SyncRun, source: object, delete_missing: bool, options: ImportOptions
    ) -> SyncResult:
        importer = ImportRun(
            self._transport,
            self.governor,
            diff.kind,
            rows_per_minute=self.rows_per_minute,
            options=ImportOptions(
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
            imported = await importer.run(source)
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
        return await self._missing(diff, imported, delete_missing)

    async def _missing(
        self, diff: SyncRun, imported: ImportResult, delete_missing: bool
    ) -> SyncResult:
        """Count the ids the source no longer holds; delete them when asked."""
        store = diff.state
        delete = self.delete_users if diff.kind == "user" else self.delete_companies
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

    async def sync_users(
        self,
        source: object,
        *,
        state: StateArgument,
        full: bool = False,
        delete_missing: bool = False,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: None = None,
    ) -> SyncResult:
        """Send only the users that changed since the last sync, and remember what completed.

        Each valid record's canonical form (keys sorted, one encoding) is compared with the
        digest the state holds for its id: the record as last *completed* on the server. New
        and changed records go through the import pipeline (the same sources, validation,
        batches, rate and jobs as ``import_users``); unchanged ones are never sent. A batch's
        digests are written only once its job is seen completed, so a failed job, an abort, a
        cancel or a crash means those rows are sent again next time, never forgotten.

        Ids in the state that this run's source does not hold are counted in
        ``rows_missing``; with ``delete_missing=True`` they are deleted on the server (once the
        source was read to its end without an abort; 1,000 ids a request, paced as the API
        requires) and leave the state. An id read from a rejected record counts as present.

        Args:
            source: Anything ``import_users`` takes.
            state: A path to the SQLite state file (created on first use), or any
                ``SyncState``. One state file per kind and API host; one sync at a time.
            full: Send every valid record, changed or not (the counters still compare);
                their digests replace the old ones once their jobs complete.
            delete_missing: Delete ids the state holds and the source no longer does.
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish. With ``False``, the digests of jobs not
                seen completed are not written: those rows go again next time.
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the sync moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (see ``import_users``).
            journal: Refused: the state already records what the server completed.

        Returns:
            The import's result plus ``rows_new``, ``rows_changed``, ``rows_unchanged``,
            ``rows_missing`` and ``rows_deleted``.

        Raises:
            ConfigurationError: The state belongs to another kind or API host, is in use by
                another sync, or cannot be opened.
            ValidationError: Unusable options or source (``journal=`` included), or an invalid
                record with ``on_invalid="raise"``; ``error.result`` is a ``SyncResult``.
            ImportAbortedError: A batch or a delete failed for good; ``error.result`` is a
                ``SyncResult`` (``rows_missing`` and ``rows_deleted`` 0 after an import abort).

        Examples:
            ```python
            result = await client.sync_users("users.ndjson", state="users-state.sqlite")
            print(result.rows_new, result.rows_changed, result.rows_unchanged, result.rows_sent)
            ```
        """
        options = ImportOptions(batch_size, wait, on_invalid, on_progress, format, csv_multiline)
        return await self._sync(
            "user",
            source,
            state,
            full=full,
            delete_missing=delete_missing,
            journal=journal,
            options=options,
        )

    async def sync_companies(
        self,
        source: object,
        *,
        state: StateArgument,
        full: bool = False,
        delete_missing: bool = False,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: None = None,
    ) -> SyncResult:
        """Send only the companies that changed since the last sync; see ``sync_users``.

        Args:
            source: Anything ``import_companies`` takes.
            state: A path to the SQLite state file, or any ``SyncState`` (one per kind).
            full: Send every valid record (the counters still compare).
            delete_missing: Delete ids the state holds and the source no longer does.
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish (see ``sync_users``).
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the sync moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines.
            journal: Refused: the state already records what the server completed.

        Returns:
            The import's result plus the sync's counters.

        Raises:
            ConfigurationError: The state belongs to another kind or host, or is in use.
            ValidationError: Unusable options or source, or an invalid record with
                ``on_invalid="raise"``.
            ImportAbortedError: A batch or a delete failed for good.
        """
        options = ImportOptions(batch_size, wait, on_invalid, on_progress, format, csv_multiline)
        return await self._sync(
            "company",
            source,
            state,
            full=full,
            delete_missing=delete_missing,
            journal=journal,
            options=options,
        )
