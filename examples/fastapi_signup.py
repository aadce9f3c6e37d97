"""The smallest FastAPI app with Analytex: one client for the app's life, awaited calls.

What it shows (docs/index.md and docs/testing.md include the app as it is here):

* one ``AsyncAnalytex``, opened and closed by the lifespan, kept in ``app.state``;
* handlers take it through a dependency, ``get_analytex``, which is also what a test replaces
  with a client wired to the emulator (see docs/testing.md);
* a signup handler that awaits ``identify`` and ``track`` (for handlers that must not wait, see
  ``fastapi_app.py`` and ``client.background``).

Run it (``ANALYTEX_API_KEY`` is read from the environment, ``ANALYTEX_BASE_URL`` too, e.g. a
local emulator: ``analytex-async emulator``, see examples/README.md)::

    pip install "analytex-async" fastapi uvicorn
    python examples/fastapi_signup.py --port 8080
    curl -X POST localhost:8080/signup/user_001
"""

# --8<-- [start:app]
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from analytex_async import AsyncAnalytex


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the one client at start-up; close it at shutdown."""
    async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
        app.state.analytex = client
        yield


app = FastAPI(lifespan=lifespan)


def get_analytex(request: Request) -> AsyncAnalytex:
    """The app's client, for handlers (a dependency a test can replace)."""
    return request.app.state.analytex  # opened by the lifespan


@app.post("/signup/{user_id}")
async def signup(
    user_id: str, analytex: Annotated[AsyncAnalytex, Depends(get_analytex)]
) -> dict[str, str]:
    """Tell Analytex about a new user, and wait until it has heard."""
    await analytex.identify(user_id, metadata={"plan": "free"})
    await analytex.track(user_id, "Signed Up")
    return {"status": "ok"}


# --8<-- [end:app]


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port)
