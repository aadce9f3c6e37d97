"""A FastAPI app that tells Analytex about logins without ever making a request wait for it.

What it shows:

* one ``AsyncAnalytex`` for the app's whole life, opened and closed by the lifespan;
* ``client.background`` in a handler: ``identify`` and ``track`` return at once (no ``await``),
  and the client delivers them behind the scenes, retrying what fails for a moment;
* an outbox directory: whatever is still queued when the app stops is written there and sent
  by the next start, so a deploy loses nothing;
* a flush on shutdown, bounded in time, and the delivery counters logged.

Run it (``ANALYTEX_API_KEY`` is read from the environment, ``ANALYTEX_BASE_URL`` too, e.g. a
local emulator: ``analytex-async emulator``, see examples/README.md)::

    pip install "analytex-async" fastapi uvicorn
    python examples/fastapi_app.py --port 8080
    curl -X POST localhost:8080/login/user_001 -H 'content-type: application/json' \
        -d '{"plan": "pro", "company_id": "c1"}'
"""

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import attrs
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from analytex_async import AsyncAnalytex, DeliveryPolicy, ValidationError

log = logging.getLogger("fastapi_app")

OUTBOX = "analytex-outbox"  # a directory; each worker process spills to a file of its own
SHUTDOWN_FLUSH_SECONDS = 10.0


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the one client at start-up; flush and close it at shutdown."""
    policy = DeliveryPolicy(outbox=OUTBOX)
    async with AsyncAnalytex(delivery=policy) as client:  # reads ANALYTEX_API_KEY
        app.state.analytex = client
        yield
        # Shutting down: give what the handlers queued a bounded time to go out. What is left
        # when the block closes goes to the outbox (and out again at the next start).
        try:
            await client.background.flush(timeout=SHUTDOWN_FLUSH_SECONDS)
        except TimeoutError:
            log.warning("Analytex still had records queued after %ss", SHUTDOWN_FLUSH_SECONDS)
    log.info("Analytex delivery at shutdown: %s", attrs.asdict(client.background.stats))


# --8<-- [end:lifespan]


app = FastAPI(lifespan=lifespan)


def get_analytex(request: Request) -> AsyncAnalytex:
    """The app's client, for handlers (a dependency)."""
    # A dependency, so a test can swap in a client wired to the emulator
    # (see docs/testing.md).
    return request.app.state.analytex  # type: ignore[no-any-return]


class Login(BaseModel):
    """The login request's body."""

    plan: str | None = None
    company_id: str | None = None


# --8<-- [start:handler]
@app.post("/login/{user_id}")
async def login(
    user_id: str, body: Login, analytex: Annotated[AsyncAnalytex, Depends(get_analytex)]
) -> dict[str, str]:
    """Record a login: queued for Analytex, never awaited."""
    # `async def` although nothing is awaited: FastAPI runs a plain `def` handler in a thread,
    # and client.background belongs to the event loop that opened the client. Its calls are
    # plain (no await): they validate, queue and return; bad input raises here, before
    # anything is queued.
    metadata = {"plan": body.plan} if body.plan else None
    company = {"id": body.company_id} if body.company_id else None
    try:
        analytex.background.identify(user_id, metadata=metadata, company=company)
        analytex.background.track(user_id, "Logged In")
    except ValidationError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return {"status": "ok"}


# --8<-- [end:handler]


@app.get("/analytex/stats")
async def delivery_stats(
    analytex: Annotated[AsyncAnalytex, Depends(get_analytex)],
) -> dict[str, int]:
    """The background delivery's counters, for a dashboard or an alert."""
    # The counters to watch: pending, failed, dropped and spilled.
    return attrs.asdict(analytex.background.stats)


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=args.host, port=args.port)  # Ctrl-C or SIGTERM runs the shutdown
