"""Read-only inspection routes under ``/_emulator/``: what the store holds, for a person.

A person who serves the emulator from a terminal cannot reach the Python objects a test
inspects, so the same store is offered over HTTP, under a prefix the API does not use. These
routes need no API key and never show one: accounts are searched, not named. The front door
lets them past fault injection and the request log, and they apply no rate rule, so looking
changes nothing a client under test observes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._errors import ApiError
from ._routes import job_link
from ._store import StoredCompany, StoredUser

if TYPE_CHECKING:
    from ._app import Emulator

__all__ = ["INSPECTION_PREFIX", "InspectionRoutes"]

INSPECTION_PREFIX = "/_emulator/"
DEFAULT_PAGE = 100
"""Users or companies in one page of ``/_emulator/users`` (``/companies``) by default."""
MAX_PAGE = 10_000
"""Users or companies in one page at most."""


def _json(body: object) -> Response:
    return Response(json.dumps(body).encode(), status_code=200, media_type="application/json")


def _user_json(user: StoredUser) -> dict[str, object]:
    body: dict[str, object] = {"user_id": user.user_id}
    if user.company_id is not None:
        body["company_id"] = user.company_id
    body["metadata"] = user.metadata
    return body


def _company_json(company: StoredCompany) -> dict[str, object]:
    return {"company_id": company.company_id, "metadata": company.metadata}


def _page_of(request: Request) -> tuple[int, int]:
    """The ``?limit=&offset=`` of a listing; a 400 naming the parameter when one is bad."""
    bounds = {"limit": (1, MAX_PAGE), "offset": (0, None)}
    values = {"limit": DEFAULT_PAGE, "offset": 0}
    for name, (low, high) in bounds.items():
        raw = request.query_params.get(name)
        if raw is None:
            continue
        number = int(raw) if raw.isascii() and raw.isdigit() else None
        if number is None or number < low or (high is not None and number > high):
            allowed = f"from {low:,} to {high:,}" if high is not None else f"from {low}"
            raise ApiError(
                400,
                f"invalid_{name}",
                f"{name} must be a whole number {allowed}, got {raw!r:.40}",
                {name: raw[:40]},
            )
        values[name] = number
    return values["limit"], values["offset"]


class InspectionRoutes:
    """The ``GET /_emulator/…`` handlers, over every account of one emulator.

    Args:
        emulator: The emulator whose store the handlers read (and whose jobs they settle).
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def routes(self) -> list[Route]:
        """The Starlette routes; each answers ``GET`` only (405 otherwise)."""
        prefix = INSPECTION_PREFIX
        return [
            Route(f"{prefix}users", self.users, methods=["GET"]),
            Route(f"{prefix}users/{{user_id:path}}", self.user, methods=["GET"]),
            Route(f"{prefix}companies", self.companies, methods=["GET"]),
            Route(f"{prefix}companies/{{company_id:path}}", self.company, methods=["GET"]),
            Route(f"{prefix}events", self.events, methods=["GET"]),
            Route(f"{prefix}jobs", self.jobs, methods=["GET"]),
        ]

    async def users(self, request: Request) -> Response:
        """``GET /_emulator/users``: a page of the users of every account, in the order stored.

        ``{"count": N, "limit": L, "offset": O, "users": [...]}``: ``count`` is every user
        stored, ``users`` the page (``?limit=`` up to 10,000, 100 by default; ``?offset=``).
        Accounts come in order of first contact, each one's users in the order first stored.
        """
        limit, offset = _page_of(request)
        stored = [user for account in self.emulator.accounts for user in account.users.values()]
        page = [_user_json(user) for user in stored[offset : offset + limit]]
        return _json({"count": len(stored), "limit": limit, "offset": offset, "users": page})

    async def companies(self, request: Request) -> Response:
        """``GET /_emulator/companies``: a page of every account's companies, as ``users``."""
        limit, offset = _page_of(request)
        stored = [
            company for account in self.emulator.accounts for company in account.companies.values()
        ]
        page = [_company_json(company) for company in stored[offset : offset + limit]]
        return _json({"count": len(stored), "limit": limit, "offset": offset, "companies": page})

    async def user(self, request: Request) -> Response:
        """``GET /_emulator/users/{user_id}``: the stored user, searched in every account.

        Accounts are searched in order of first contact; the first that holds the id answers.
        """
        user_id = str(request.path_params["user_id"])
        for account in self.emulator.accounts:
            user = account.users.get(user_id)
            if user is not None:
                return _json(_user_json(user))
        raise ApiError(
            404,
            "user_not_found",
            f"no user with id {user_id!r} in any account",
            {"user_id": user_id},
        )

    async def company(self, request: Request) -> Response:
        """``GET /_emulator/companies/{company_id}``: the stored company, from any account."""
        company_id = str(request.path_params["company_id"])
        for account in self.emulator.accounts:
            company = account.companies.get(company_id)
            if company is not None:
                return _json(_company_json(company))
        raise ApiError(
            404,
            "company_not_found",
            f"no company with id {company_id!r} in any account",
            {"company_id": company_id},
        )

    async def events(self, request: Request) -> Response:
        """``GET /_emulator/events``: every account's tracks and imported events, oldest first.

        A track (``POST /v1/track``) shows ``user_id``, ``event_name``, ``metadata`` and
        ``time``; an imported event also shows its ``event_type``, ``source``, ``inserted_at``,
        client fields and ``job_id``, its ``time`` being when its row was processed.
        """
        emulator = self.emulator
        accounts = emulator.accounts  # brings every import job up to the clock first
        shown: list[tuple[float, dict[str, object]]] = [
            (
                event.time,
                {
                    "user_id": event.user_id,
                    "event_name": event.event_name,
                    "metadata": event.metadata,
                    "time": emulator._wall(event.time),
                },
            )
            for account in accounts
            for event in account.events
        ]
        shown.extend(
            (event.time, event.to_json(emulator._wall))
            for account in accounts
            for event in account.imported_events
        )
        shown.sort(key=lambda item: item[0])  # stable: same-time events keep their order
        return _json([body for _, body in shown])

    async def jobs(self, request: Request) -> Response:
        """``GET /_emulator/jobs``: every account's jobs as the job endpoints show them."""
        emulator = self.emulator
        accounts = emulator.accounts  # brings every job up to the clock first
        now = emulator._now()
        jobs = sorted(
            (job for account in accounts for job in account.jobs.values()),
            key=lambda job: job.submitted_at,
        )
        return _json(
            [job.to_json(now, emulator._wall, job_link(request, job.job_id)) for job in jobs]
        )
