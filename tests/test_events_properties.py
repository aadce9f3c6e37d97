"""Property: whatever the mix of event records, every valid one reaches the server exactly once
(in order) and every invalid one comes back as a rejection naming its position and field."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytex_async import Rejection
from analytex_async.emulator import Emulator
from analytex_async.testing import EmulatedAnalytex

AT = "2024-07-28T08:55:35+00:00"
FAST = 10**9  # rows a minute, server and client: jobs end as soon as they are polled

_meta = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=4),
    st.one_of(st.booleans(), st.integers(-1000, 1000), st.text("xyz ", max_size=6)),
    max_size=3,
)


def _valid(kind: str, n: int, metadata: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"event_type": kind, "inserted_at": AT}
    if kind == "identify_company":
        return {**base, "company_id": f"c{n}", "metadata": metadata}
    base["user_id"] = f"u{n}"
    if kind == "track":
        return {**base, "event_name": f"e{n}", "metadata": metadata}
    if kind == "page_view":
        return {**base, "hostname": "example.com", "pathname": f"/p{n}"}
    return {**base, "metadata": metadata}


valid = st.builds(
    _valid,
    st.sampled_from(["identify_user", "identify_company", "page_view", "track"]),
    st.integers(0, 10**6),
    _meta,
)
# Each invalid record with the field its rejection must name.
invalid = st.sampled_from(
    [
        ({"event_type": "track", "user_id": "u", "inserted_at": AT}, "event_name"),
        ({"event_type": "track", "user_id": "u", "event_name": None, "inserted_at": AT},
         "event_name"),
        ({"event_type": "identify_user", "user_id": "", "inserted_at": AT}, "user_id"),
        ({"event_type": "identify_user", "user_id": "u"}, "inserted_at"),
        ({"event_type": "identify_user", "user_id": "u", "inserted_at": "yesterday"},
         "inserted_at"),
        ({"event_type": "nope", "user_id": "u", "inserted_at": AT}, "event_type"),
        ({"event_type": "identify_user", "user_id": "u", "inserted_at": AT,
          "metadata": {"list": [1]}}, "metadata"),
        ({"event_type": "identify_user", "user_id": "u", "inserted_at": AT, "source": "nope"},
         "source"),
    ]
)  # fmt: skip
rows = st.lists(st.tuples(st.booleans(), valid, invalid), max_size=40)


def _key(event: Any) -> tuple[Any, ...]:
    return (event.event_type, event.user_id, event.company_id, event.event_name)


def _expected(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["event_type"],
        record.get("user_id"),
        record.get("company_id"),
        record.get("event_name"),
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows, batch_size=st.integers(1, 7))
def test_valid_events_reach_the_server_once_in_order_and_invalid_ones_are_rejected_once(
    rows: list[tuple[bool, dict[str, Any], tuple[dict[str, Any], str]]], batch_size: int
) -> None:
    source = [good if ok else bad[0] for ok, good, bad in rows]
    seen: list[Rejection] = []

    async def main() -> tuple[Emulator, Any]:
        emulator = Emulator(rows_per_minute=FAST)
        async with EmulatedAnalytex(emulator, rows_per_minute=FAST) as analytex:
            result = await analytex.client.import_events(
                source, batch_size=batch_size, on_invalid=seen.append
            )
        return emulator, result

    emulator, result = anyio.run(main)
    wanted_bad = [(n, bad[1]) for n, (ok, _, bad) in enumerate(rows) if not ok]
    assert [r.position for r in seen] == [n for n, _ in wanted_bad]
    for rejection, (_, field) in zip(seen, wanted_bad, strict=True):
        assert field in rejection.reason, (field, rejection.reason)
    good = [good for ok, good, _ in rows if ok]
    assert (result.rows_sent, result.rows_rejected) == (len(good), len(wanted_bad))
    assert [_key(e) for e in emulator.imported_events] == [_expected(g) for g in good]
