"""A faithful local Analytex server, for tests, demos and offline development.

Run it in process (``httpx.ASGITransport(app=emulator.app)``, asyncio or trio), on a loopback
socket for the duration of a block (:func:`serve`), or as a blocking server (:func:`run`).
Needs the ``emulator`` extra (Starlette, uvicorn): ``pip install "analytex-async[emulator]"``.
It serves the real-time, bulk identify, events import (``POST /v1/imports``), jobs and delete
calls. A served emulator also answers read-only ``GET /_emulator/users/{id}``,
``/companies/{id}``, ``/events`` and ``/jobs``, for a person at a terminal (no key needed,
none shown).

Examples:
    >>> from analytex_async.emulator import Emulator
    >>> emulator = Emulator(rows_per_minute=60_000)
    >>> emulator.users
    {}

<!-- PYTEST_DONT_REWRITE: the SDK ships a pytest plugin, so pytest would add its assertion
helpers to the namespace of every module of the package; this one keeps only its own names. -->
"""

from __future__ import annotations

from ._app import Emulator
from ._faults import ConnectionDropped, Fault, Faults
from ._server import run, serve
from ._store import (
    Account,
    BulkJob,
    ImportedEvent,
    ReceivedRequest,
    StoredCompany,
    StoredUser,
    TrackedEvent,
)

__all__ = [
    "Account",
    "BulkJob",
    "ConnectionDropped",
    "Emulator",
    "Fault",
    "Faults",
    "ImportedEvent",
    "ReceivedRequest",
    "StoredCompany",
    "StoredUser",
    "TrackedEvent",
    "run",
    "serve",
]
