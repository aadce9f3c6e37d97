"""The sifting stage of a sync, between the producer and the sender: it drops what is unchanged.

An import with a ``skip`` filter (a sync) runs three tasks instead of two::

    producer --(runs of records as read)--> sifter --(batches)--> sender

* the **producer** only reads the source: it counts each record and holds it as the source
  gave it, handing over a run of ``SKIP_RUN_RECORDS`` at a time (one run may wait in the
  stream, so it reads the next run while the sifter waits for the state);
* the **sifter** asks the filter which records of a run are unchanged (the state's lookups,
  in a worker thread or over the network, overlap the producer's reading), validates and
  encodes only the others, offers each valid one to the filter again (``keep``), lets the
  filter settle its writes, and only then hands the run's batches to the sender.

So an unchanged record costs a digest and a share of one lookup: it is never validated,
encoded or batched. Rejections are made here, in source order, as the import makes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from ._batching import Batch, Batcher
from ._options import SkipFilter
from ._pacing import Pacer

Held = tuple[int, object, str | None, int | None]
"""A record as read: its position, the record, why it could not be decoded, its line."""
Check = Callable[[Batcher, int, object, str | None, int | None], bytes | None]
"""Validates and encodes a record: its line, or ``None`` once it was rejected."""

SKIP_RUN_RECORDS = 2_000
"""Records the producer holds before it hands them to the sifter."""
STALL_BUDGET = 0.001
"""Seconds of CPU work the sifter does before it lets other tasks run."""


class Sifter:
    """The stage between the producer and the sender of a sync.

    Args:
        skip: The filter.
        batcher: Where kept records are batched.
        check: The import's validation (it records a rejection itself).
        announce: Hands the rejections made so far to an ``on_invalid`` callable.
    """

    def __init__(
        self,
        skip: SkipFilter,
        batcher: Batcher,
        check: Check,
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        self.skip = skip
        self.batcher = batcher
        self.check = check
        self.announce = announce

    async def run(
        self,
        runs: ObjectReceiveStream[list[Held]],
        send: ObjectSendStream[Batch],
        errors: list[BaseException],
    ) -> None:
        """Sift every run the producer hands over; then send the last batch.

        Args:
            runs: The producer's runs of records.
            send: The sender's stream (closed on return).
            errors: Where an error is left for the import (the producer's list).
        """
        async with runs, send:
            try:
                async for held in runs:
                    await self._sift(held, send)
                if not errors:  # the source was read to its end
                    last = self.batcher.flush()
                    if last is not None:
                        await send.send(last)
            except anyio.BrokenResourceError:
                pass  # the sender stopped; its own error says why
            except Exception as exc:  # re-raised by the import, outside the task group
                errors.append(exc)

    async def _sift(self, held: list[Held], send: ObjectSendStream[Batch]) -> None:
        skip = self.skip
        verdicts = await skip.unchanged([(item[0], item[1]) for item in held])
        pacer = Pacer(max_items=None, max_seconds=STALL_BUDGET)
        ready: list[Batch] = []
        for (position, record, error, line), unchanged in zip(held, verdicts, strict=True):
            if unchanged:
                continue
            encoded = self.check(self.batcher, position, record, error, line)
            if encoded is None:
                await self.announce()
            elif skip.keep(position, record, encoded):
                batch = self.batcher.add(position, encoded)
                if batch is not None:
                    ready.append(batch)
            if pacer.due():
                await pacer.checkpoint()
        # The filter's writes (a changing record marked unknown) land before its batch goes.
        await skip.settle()
        for batch in ready:
            await send.send(batch)
