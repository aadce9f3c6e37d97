"""An aiohttp app that tells Analytex about logins without ever making a request wait for it.

What it shows:

* one ``AsyncAnalytex`` for the app's life, in a cleanup context (the code before ``yield``
  runs at start-up, the code after it at shutdown);
* ``client.background`` in a handler: ``identify`` and ``track`` return at once;
* a bounded flush on shutdown, and the delivery counters logged.

Run it (``ANALYTEX_API_KEY`` and ``ANALYTEX_BASE_URL`` are read from the environment; see
examples/README.md to run it against a local emulator)::

    pip install "analytex-async" aiohttp
    python examples/aiohttp_app.py --port 8080
    curl -X POST 'localhost:8080/login/user_001?plan=pro'
"""

import argparse
import logging
from collections.abc import AsyncIterator

import attrs
from aiohttp import web

from analytex_async import AsyncAnalytex

log = logging.getLogger("aiohttp_app")

ANALYTEX = web.AppKey("analytex", AsyncAnalytex)
SHUTDOWN_FLUSH_SECONDS = 10.0


# --8<-- [start:cleanup]
async def analytex_client(app: web.Application) -> AsyncIterator[None]:
    """Open the one client at start-up; flush and close it at shutdown."""
    async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
        app[ANALYTEX] = client
        yield
        # Shutting down: a bounded wait for what the handlers queued. Leaving the block then
        # delivers the rest for at most DeliveryPolicy.drain_timeout seconds.
        try:
            await client.background.flush(timeout=SHUTDOWN_FLUSH_SECONDS)
        except TimeoutError:
            log.warning("Analytex still had records queued after %ss", SHUTDOWN_FLUSH_SECONDS)
    log.info("Analytex delivery at shutdown: %s", attrs.asdict(client.background.stats))


# --8<-- [end:cleanup]


async def login(request: web.Request) -> web.Response:
    """Record a login: queued for Analytex, never awaited."""
    user_id = request.match_info["user_id"]
    plan = request.query.get("plan")
    analytex = request.app[ANALYTEX]
    # Plain calls: validated and queued, never awaited. Bad input raises ValidationError here.
    analytex.background.identify(user_id, metadata={"plan": plan} if plan else None)
    analytex.background.track(user_id, "Logged In")
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    """The application, with the client's cleanup context."""
    app = web.Application()
    app.cleanup_ctx.append(analytex_client)
    app.router.add_post("/login/{user_id}", login)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    web.run_app(make_app(), host=args.host, port=args.port)  # Ctrl-C or SIGTERM: shutdown
