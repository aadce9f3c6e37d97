"""The ledger on its own: chains, merges, replayed records, and the spill order (no I/O)."""

from __future__ import annotations

import pytest

from analytex_async import DeliveryPolicy
from analytex_async._delivery._ledger import Ledger
from analytex_async._delivery._record import State

pytestmark = pytest.mark.anyio


def identify(ledger: Ledger, user: str, value: int) -> None:
    ledger.admit("identify", user, {"user_id": user, "metadata": {"v": value}}, 30)


async def test_a_record_claimed_while_open_goes_ahead_of_newer_unsent_ones() -> None:
    """A Redis outbox is claimed while the client is open: the spilled (older) value first."""
    ledger = Ledger(DeliveryPolicy())
    identify(ledger, "u1", 2)
    ledger.admit("track", "u1", {"user_id": "u1", "event_name": "Came Back"}, 30)
    old = ledger.admit_replayed("identify", "u1", {"user_id": "u1", "metadata": {"v": 1}}, "r")
    taken = ledger.take(ledger.identifies)
    assert taken is old
    assert [r.payload.get("metadata") for r in ledger.unsettled()] == [
        {"v": 1},
        {"v": 2},
        None,
    ]
    identify(ledger, "u1", 3)  # merges into the newest unsent identify, not the replayed one
    assert [r.payload.get("metadata") for r in ledger.unsettled()] == [
        {"v": 1},
        {"v": 3},
        None,
    ]
    ledger.settle(old, "delivered")
    newest = ledger.take(ledger.identifies)
    assert newest is not None
    assert newest.payload["metadata"] == {"v": 3}


async def test_a_replayed_record_waits_behind_one_already_sent() -> None:
    ledger = Ledger(DeliveryPolicy())
    identify(ledger, "u1", 2)
    sent = ledger.take(ledger.identifies)
    assert sent is not None
    replayed = ledger.admit_replayed("track", "u1", {"user_id": "u1", "event_name": "x"}, "r")
    assert replayed.state is State.WAITING
    ledger.settle(sent, "delivered")
    assert replayed.state is State.READY


async def test_the_spill_order_is_each_chain_in_its_order() -> None:
    ledger = Ledger(DeliveryPolicy())
    identify(ledger, "u1", 2)
    identify(ledger, "u2", 1)
    ledger.admit_replayed("identify", "u1", {"user_id": "u1", "metadata": {"v": 1}}, "r")
    chains = [(r.payload["user_id"], r.payload["metadata"]["v"]) for r in ledger.unsettled()]
    assert chains == [("u1", 1), ("u1", 2), ("u2", 1)]
