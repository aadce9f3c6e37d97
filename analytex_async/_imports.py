"""The bulk-pipeline calls of ``AsyncAnalytex``: ``import_users``, ``_companies``, ``_events``.

A mixin, so the client's module keeps its lifecycle and the plain API calls, and the pipeline's
entry points (with their long, documented option lists) live together here.
"""

from __future__ import annotations

import os

from ._bulk._options import ImportOptions, OnInvalid, ProgressCallback
from ._bulk._pipeline import ImportRun
from ._constants import MAX_RECORDS
from ._models import ImportResult
from ._transport import Transport
from ._types import RecordKind, SourceFormat
from .governors._local import Governor


class ImportCalls:
    """``import_users``, ``import_companies`` and ``import_events``, for ``AsyncAnalytex``."""

    rows_per_minute: float

    @property
    def governor(self) -> Governor:
        """The bulk rate governor in force."""
        raise NotImplementedError

    @property
    def _transport(self) -> Transport:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    async def _import(
        self, kind: RecordKind, source: object, options: ImportOptions
    ) -> ImportResult:
        self._check_open()
        run = ImportRun(
            self._transport,
            self.governor,
            kind,
            rows_per_minute=self.rows_per_minute,
            options=options,
        )
        return await run.run(source)

    async def import_users(
        self,
        source: object,
        *,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> ImportResult:
        """Import any number of users through governed, validated NDJSON batches.

        The source is read lazily, so memory stays at about two batches however long it is.
        Each record is validated; valid ones go out in batches of up to ``batch_size`` records
        and 50 MB, no faster than ``rows_per_minute``, one job at a time (a 409 waits for the
        running job and resends the same batch; a 413 splits the batch). Invalid records are
        reported, never dropped silently.

        Args:
            source: A sync or async iterable of ``User`` objects or mappings; a path to an
                ``.ndjson`` / ``.jsonl`` (optionally ``.gz``), ``.csv`` or ``.parquet`` file;
                an open binary or text file (NDJSON unless ``format="csv"``); or a table: a
                pandas or polars DataFrame (the ``dataframe`` extra) or a pyarrow ``Table``,
                read a chunk of rows at a time, one row a record (``.parquet`` files need the
                ``parquet`` extra).
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish before returning.
            on_invalid: ``"skip"`` to report invalid records as ``Rejection`` entries of the
                result (the first 1,000 kept, all counted in ``rows_rejected``), ``"raise"``
                to stop at the first with ``ValidationError``, or a callable (sync or async)
                that receives every ``Rejection`` as it happens (e.g. to stream them to a file).
            on_progress: Called (sync or async) with an ``ImportProgress`` as the import moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (up to 100 lines, 1 MiB a row);
                by default a CSV line whose quotes do not pair up is a ``Rejection``.
            journal: A file in which every accepted batch is recorded durably. Run the same
                import again with the same journal and what was accepted is skipped, so a
                crash or a cancel loses nothing and repeats at most the batch in flight.

        Returns:
            What was read, sent, rejected and accepted (with the jobs' final states).

        Raises:
            ValidationError: The options or the source are unusable, or ``on_invalid="raise"``
                met an invalid record (``error.result`` holds what was accepted before).
            ImportAbortedError: A batch failed for good; ``error.result`` holds what was
                accepted, and ``__cause__`` the final failure.

        Examples:
            ```python
            result = await client.import_users("users.ndjson.gz")
            print(result.rows_sent, len(result.rejected), [j.job_id for j in result.jobs])
            ```
        """
        options = ImportOptions(
            batch_size, wait, on_invalid, on_progress, format, csv_multiline, journal=journal
        )
        return await self._import("user", source, options)

    async def import_companies(
        self,
        source: object,
        *,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> ImportResult:
        """Import any number of companies; the same pipeline as ``import_users``.

        Args:
            source: ``Company`` objects or mappings, a file (CSV and Parquet need a
                ``company_id`` column), or a DataFrame or pyarrow ``Table`` with a
                ``company_id`` column (see ``import_users``).
            batch_size: Records per batch at most (1 to 10,000).
            wait: Wait for the last jobs to finish before returning.
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the import moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (see ``import_users``).
            journal: A file recording accepted batches, to resume from (see ``import_users``).

        Returns:
            What was read, sent, rejected and accepted.

        Raises:
            ValidationError: Unusable options or source, or an invalid record with
                ``on_invalid="raise"``.
            ImportAbortedError: A batch failed for good.
        """
        options = ImportOptions(
            batch_size, wait, on_invalid, on_progress, format, csv_multiline, journal=journal
        )
        return await self._import("company", source, options)

    async def import_events(
        self,
        source: object,
        *,
        batch_size: int = MAX_RECORDS,
        wait: bool = True,
        on_invalid: OnInvalid = "skip",
        on_progress: ProgressCallback | None = None,
        format: SourceFormat | None = None,
        csv_multiline: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> ImportResult:
        """Import historical events through ``POST /v1/imports`` (the Events Bulk Import).

        The same pipeline as ``import_users``: each event is checked against the event schema
        (``identify_user``, ``identify_company``, ``page_view``, ``track``), valid ones go out as
        NDJSON files of up to 10,000 events and 50 MB, one import job at a time (a 409 waits for
        the running import and sends the same file again; the import slot is separate from bulk
        identify's), retried, journaled and reported like any import.

        Args:
            source: ``Event`` objects or mappings with the schema's fields (a required field
                given as ``None`` is missing: a ``Rejection`` naming it), a file (NDJSON, or CSV
                with an ``event_type`` column, the schema's fields as columns, a ``metadata``
                column holding a JSON object and any other column a metadata key), or a table
                with the same columns: a pandas or polars DataFrame, a pyarrow ``Table`` or a
                ``.parquet`` file (see ``import_users``), where a null is a missing cell, the
                ``metadata`` column a struct, and ``inserted_at`` a timestamp with a zone (one
                without is a ``Rejection`` naming the field, as a naive ``datetime`` is) or
                ISO 8601 strings.
            batch_size: Events per file at most (1 to 10,000).
            wait: Wait for the last import jobs to finish before returning.
            on_invalid: ``"skip"``, ``"raise"``, or a callable receiving every ``Rejection``.
            on_progress: Called with an ``ImportProgress`` as the import moves.
            format: ``"ndjson"`` or ``"csv"`` when the source's name does not say.
            csv_multiline: Read CSV quoted cells that span lines (see ``import_users``).
            journal: A file recording accepted files, to resume from (see ``import_users``).

        Returns:
            What was read, sent, rejected and accepted.

        Raises:
            ValidationError: Unusable options or source, or an invalid event with
                ``on_invalid="raise"``.
            ImportAbortedError: A file failed for good.

        Examples:
            ```python
            from analytex_async import Event

            events = [
                Event.identify_user("u1", {"plan": "pro"}, "2024-07-28T08:55:35+00:00"),
                Event.track("u1", "Signed Up", "2024-07-28 08:56:00", metadata={"ads": True}),
            ]
            result = await client.import_events(events)
            print(result.rows_sent)
            ```
        """
        options = ImportOptions(
            batch_size, wait, on_invalid, on_progress, format, csv_multiline, journal=journal
        )
        return await self._import("event", source, options)
