"""One background record and its life: its states, its chain's key, how identifies merge.

See the package docstring for the model; ``_ledger`` keeps the records.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from ._policy import DeliveryKind

Outcome = Literal["delivered", "failed", "spilled", "dropped"]


class State(enum.Enum):
    """Where a record is in its one life (see the package docstring)."""

    WAITING = "waiting"  # in its chain behind an earlier record of the same key
    READY = "ready"  # the head of its chain, in a lane, mergeable until a sender takes it
    SENDING = "sending"  # taken: a real-time attempt or a bulk upload is under way
    RETRYING = "retrying"  # its last attempt failed transiently; back to READY after a delay
    IN_JOB = "in_job"  # accepted in a bulk job that has not finished yet
    SETTLED = "settled"  # delivered, failed, spilled or dropped: out of the ledger


UNSENT = frozenset({State.WAITING, State.READY})
"""States whose record is not on its way yet (an identify may still merge into it)."""

Lane = OrderedDict[int, "Record"]
"""Ready records of one route, by admission number, oldest first (O(1) at both ends)."""


class Router(Protocol):
    """Chooses the bulk route for an identify that becomes ready (bulk overflow)."""

    def route(self, record: Record, followed: bool) -> Lane:
        """The identify lane, or a bulk lane when the window cannot carry it in time.

        Args:
            record: A user or company identify that becomes the head of its chain.
            followed: Records of the same key wait behind it (it must stay real-time).
        """
        ...


class Record:
    """One background record: the request body of one real-time call, and where it is.

    Attributes:
        kind: Which call.
        chain: Whose chain it is in (``"u:<user id>"`` or ``"c:<company id>"``).
        payload: The request body as it will be sent (merged into while unsent).
        size: The encoded body's size in bytes, for the merge limit.
        seq: Its admission number (the outbox and ``flush`` use it).
        state: Where it is.
        lane: The lane it is ready in, while ``READY``.
        via_bulk: Accepted in a bulk job.
        tries: Its transient failures so far.
        receipt: What the outbox gave it when it was replayed, if it was.
    """

    __slots__ = (
        "chain",
        "kind",
        "lane",
        "payload",
        "receipt",
        "seq",
        "size",
        "state",
        "tries",
        "via_bulk",
    )

    def __init__(
        self, kind: DeliveryKind, chain: str, payload: dict[str, Any], size: int, seq: int
    ) -> None:
        self.kind = kind
        self.chain = chain
        self.payload = payload
        self.size = size
        self.seq = seq
        self.state = State.WAITING
        self.lane: Lane | None = None
        self.via_bulk = False
        self.receipt: object | None = None
        self.tries = 0  # failed tries so far (transient failures)

    def __repr__(self) -> str:
        return f"Record({self.kind}, seq={self.seq}, {self.state.value})"


def merge_identify(into: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A later identify (user or company) body merged into an earlier unsent one.

    Metadata keys are last-write-wins; a later company replaces the earlier one, a later
    identify without one keeps it.

    Args:
        into: The earlier body (not changed).
        new: The later body.

    Returns:
        The merged body.
    """
    merged = dict(into)
    if "metadata" in new:
        merged["metadata"] = {**into.get("metadata", {}), **new["metadata"]}
    if "company" in new:
        merged["company"] = new["company"]
    return merged


def chain_of(kind: DeliveryKind, key: str) -> str:
    """The chain a record of ``kind`` for ``key`` belongs to: one per user, one per company."""
    return f"c:{key}" if kind == "identify_company" else f"u:{key}"
