"""The background benchmark's workload: logins and profile updates, and what must be stored.

A *visit* is one request handler's hand-over: a login (an identify of its user, then a
``"Logged In"`` track of the same user) or a profile update (an identify alone). A user's first
visit and each repeat carry new values: every identify of a user sets the same metadata keys to
values of that visit (``visit`` counts from 1), and every track carries its visit number. So
what the server must end up with is exact: each user's stored metadata equal to the identify
handed over last, and the user's events the visits' numbers, each once, in order.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EVENT = "Logged In"
_PLANS = ("free", "pro", "team")


@dataclass(frozen=True)
class Visit:
    """One handler's hand-over.

    Attributes:
        user: The user's id.
        profile: The identify's metadata.
        event: The track's metadata; ``None`` for a profile update (an identify alone).
    """

    user: str
    profile: dict[str, Any]
    event: dict[str, Any] | None


def profile(user: int, visit: int) -> dict[str, Any]:
    """What the identify of a user's ``visit``-th hand-over sets (every key changes per visit)."""
    return {
        "plan": _PLANS[(user + visit) % 3],
        "visits": visit,
        "last_login": f"2025-05-{visit:02d}T12:{user % 60:02d}:00Z",
    }


def event(user: int, visit: int) -> dict[str, Any]:
    """The metadata of the track of a user's ``visit``-th login."""
    return {"method": ("password", "sso")[(user + visit) % 2], "visit": visit}


def visits(count: int, repeat_share: float, prefix: str, *, logins: bool = True) -> Iterator[Visit]:
    """``count`` visits, made as they are asked for: first visits, then repeats of earlier users.

    The last ``round(count * repeat_share)`` visits are repeats, spread evenly over the users
    (every fourth user for a 20% share), each with new values.

    Args:
        count: Visits in all.
        repeat_share: The share of them that are repeat visits.
        prefix: The users' id prefix (workloads with different prefixes never share a user).
        logins: Logins (identify + track); ``False``: profile updates (identify alone).

    Yields:
        The visits, first visits first.
    """
    repeats = round(count * repeat_share)
    firsts = count - repeats
    if firsts < 1:
        raise ValueError(f"repeat_share {repeat_share} leaves no first visit of {count}")
    seen = [1] * firsts
    numbers = itertools.chain(range(firsts), (j * firsts // repeats for j in range(repeats)))
    for position, user in enumerate(numbers):
        if position >= firsts:
            seen[user] += 1
        nth = seen[user] if position >= firsts else 1
        yield Visit(
            f"{prefix}-{user:05d}", profile(user, nth), event(user, nth) if logins else None
        )


def interleave(*streams: tuple[int, Iterable[Visit]]) -> Iterator[Visit]:
    """Streams of ``(count, visits)`` merged evenly by position, each in its own order, lazily."""
    keyed = [
        ((position / count, index, visit) for position, visit in enumerate(items))
        for index, (count, items) in enumerate(streams)
    ]
    for _, _, visit in heapq.merge(*keyed, key=lambda item: (item[0], item[1])):
        yield visit


def expected(handed: Iterable[Visit]) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """What the server must hold after ``handed``, in the order handed over.

    Returns:
        Each user's last profile, and each user's event visit numbers in order.
    """
    profiles: dict[str, dict[str, Any]] = {}
    events: dict[str, list[int]] = {}
    for visit in handed:
        profiles[visit.user] = visit.profile
        if visit.event is not None:
            events.setdefault(visit.user, []).append(int(visit.event["visit"]))
    return profiles, events


def check(
    handed: Sequence[Visit],
    users: Mapping[str, Mapping[str, Any]],
    events: Sequence[Sequence[Any]],
) -> dict[str, int]:
    """Compare what the server stored with what was handed over.

    Args:
        handed: The visits, in the order handed over.
        users: The stored metadata by user id.
        events: The stored tracks ``(user, event name, metadata)``, in arrival order.

    Returns:
        ``users``; ``newest`` (stored with the last values handed over), ``stale`` (stored with
        an older value), ``missing_users``; ``events`` expected, ``stored`` (ours, arrived),
        ``in_order`` users whose events are exactly their visits in order, ``out_of_order``
        users (all arrived, once each, in another order), ``lost`` events and ``duplicates``.
    """
    profiles, wanted = expected(handed)
    newest = stale = missing = 0
    for user, last in profiles.items():
        stored = users.get(user)
        if stored is None:
            missing += 1
        elif all(stored.get(key) == value for key, value in last.items()):
            newest += 1
        else:
            stale += 1
    arrived: dict[str, list[int]] = {}
    for user, name, metadata in events:
        if name == EVENT and user in wanted:
            arrived.setdefault(user, []).append(int(metadata["visit"]))
    in_order = out_of_order = lost = duplicates = 0
    for user, numbers in wanted.items():
        got = arrived.get(user, [])
        duplicates += len(got) - len(set(got))
        lost += len(set(numbers) - set(got))
        if got == numbers:
            in_order += 1
        elif sorted(set(got)) == sorted(numbers):
            out_of_order += 1
    return {
        "users": len(profiles),
        "newest": newest,
        "stale": stale,
        "missing_users": missing,
        "events": sum(len(numbers) for numbers in wanted.values()),
        "stored": sum(len(got) for got in arrived.values()),
        "event_users": len(wanted),
        "in_order": in_order,
        "out_of_order": out_of_order,
        "lost": lost,
        "duplicates": duplicates,
    }
