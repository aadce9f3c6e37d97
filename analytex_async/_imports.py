"""The import stage of ``AsyncAnalytex``: where ``import_users`` / ``_companies`` / ``_events`` run.

The client keeps the public methods (their signatures and documentation are the contract's) and
hands each call to an :class:`Importer`: what one import needs from its client at the moment it
starts (the transport and governor of the event loop in use, and the rate). The sync stage
(``_syncs``) starts its imports the same way.
"""

from __future__ import annotations

import attrs

from ._bulk._options import ImportOptions
from ._bulk._pipeline import ImportRun
from ._models import ImportResult
from ._transport import Transport
from ._types import RecordKind
from .governors._local import Governor


@attrs.frozen
class Importer:
    """Starts imports for one client, on the transport and governor it holds right now.

    The client makes one per call (``AsyncAnalytex._importer()``): its transport and governor
    belong to the event loop in use, so they are read when a call starts, never kept.

    Attributes:
        transport: Sends the requests.
        governor: Paces batch starts (the row budget, possibly shared).
        rows_per_minute: The server's processing rate, to time job polls.
    """

    transport: Transport
    governor: Governor
    rows_per_minute: float

    def start(self, kind: RecordKind, options: ImportOptions) -> ImportRun:
        """One run of the bulk pipeline, not started yet.

        Args:
            kind: ``"user"``, ``"company"`` or ``"event"``.
            options: The import's options.
        """
        return ImportRun(
            self.transport,
            self.governor,
            kind,
            rows_per_minute=self.rows_per_minute,
            options=options,
        )

    async def run(self, kind: RecordKind, source: object, options: ImportOptions) -> ImportResult:
        """Import every record of ``source`` (see ``AsyncAnalytex.import_users``).

        Args:
            kind: ``"user"``, ``"company"`` or ``"event"``.
            source: Anything ``import_users`` takes.
            options: The import's options.

        Returns:
            What was read, sent, rejected and accepted.
        """
        return await self.start(kind, options).run(source)
