"""The options of one import, checked once when the import starts."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import attrs

from .._constants import MAX_RECORDS
from .._errors import ValidationError
from .._models import ImportProgress, Job, Rejection
from .._types import SourceFormat
from ._batching import MAX_BATCH_BYTES

ProgressCallback = Callable[[ImportProgress], Awaitable[None] | None]
RejectionCallback = Callable[[Rejection], Awaitable[None] | None]
OnInvalid = Literal["skip", "raise"] | RejectionCallback
"""``"skip"``, ``"raise"``, or a callable (sync or async) that receives every ``Rejection``."""


class SkipFilter(Protocol):
    """Leaves records out of an import (a sync's unchanged ones), in two steps.

    The sifting stage (``_sifting``) hands it the records as the source gave them, a few
    thousand at a time in source order: ``unchanged`` may leave out records it recognises
    without their being validated. Each other record is then validated; a valid one is offered
    to ``keep`` with its NDJSON line, which may still leave it out. ``settle`` runs after each
    run of records, before any of them is sent.
    """

    async def unchanged(self, records: list[tuple[int, object]]) -> list[bool]:
        """Per ``(position, record)``: ``True`` to leave it out, unvalidated and unsent."""
        ...

    def keep(self, position: int, record: object, line: bytes) -> bool:
        """Whether to send a valid record that ``unchanged`` did not leave out."""
        ...

    async def settle(self) -> None:
        """Called after each run of records, before the records ``keep`` kept are sent."""
        ...


@attrs.frozen
class ImportOptions:
    """The checked options of one import.

    Attributes:
        batch_size: Records per batch at most (1 to 10,000).
        wait: Whether to wait for the last jobs to finish before returning.
        on_invalid: ``"skip"`` (report a ``Rejection``), ``"raise"`` (``ValidationError``), or
            a callable (sync or async) that receives every ``Rejection`` as it happens.
        on_progress: Called with an ``ImportProgress`` after each step (sync or async).
        format: The file format when it cannot be told from the source's name.
        csv_multiline: Read CSV quoted cells that span lines (a bounded number); by default
            one physical line is one record. Ignored for sources that are not CSV.
        max_batch_bytes: Bytes of NDJSON per batch at most (the API's 50 MB less the
            multipart framing; lower only in tests).
        journal: Where to record accepted batches durably, and whence to resume.
        on_accepted: Called with each batch's source positions and its job once the server
            accepted it.
        skip: Decides which records are left out (a sync's unchanged ones), a run of records
            at a time, before they are validated and batched.
        on_job: Called with each fresh state of one of the import's jobs, as the import
            learns it.
    """

    batch_size: int = MAX_RECORDS
    wait: bool = True
    on_invalid: OnInvalid = "skip"
    on_progress: ProgressCallback | None = None
    format: SourceFormat | None = None
    csv_multiline: bool = False
    max_batch_bytes: int = MAX_BATCH_BYTES
    journal: str | os.PathLike[str] | None = None
    on_accepted: Callable[[tuple[int, ...], Job], None] | None = None
    skip: SkipFilter | None = None
    on_job: Callable[[Job], None] | None = None

    def __attrs_post_init__(self) -> None:
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_RECORDS:
            raise ValidationError(
                f"must be an integer from 1 to {MAX_RECORDS:,}, got {size!r}", field="batch_size"
            )
        if not callable(self.on_invalid) and self.on_invalid not in ("skip", "raise"):
            raise ValidationError(
                f"must be 'skip', 'raise' or a callable, got {self.on_invalid!r}",
                field="on_invalid",
            )
        if not isinstance(self.csv_multiline, bool):
            raise ValidationError(
                f"must be True or False, got {self.csv_multiline!r:.60}", field="csv_multiline"
            )
        if self.on_progress is not None and not callable(self.on_progress):
            raise ValidationError("must be callable", field="on_progress")
