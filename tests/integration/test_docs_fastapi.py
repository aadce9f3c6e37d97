"""The "Testing your code" page's example: a FastAPI app tested against the emulator.

docs/testing.md includes this file's sections verbatim, so the documented example always runs.
"""

from __future__ import annotations

# --8<-- [start:app]
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from analytex_async import AsyncAnalytex
from analytex_async.testing import EmulatedAnalytex


def get_analytex(request: Request) -> AsyncAnalytex:
    return request.app.state.analytex  # type: ignore[no-any-return]  # set by the lifespan


app = FastAPI()  # in production: a lifespan that opens one AsyncAnalytex into app.state


@app.post("/signup/{user_id}")
async def signup(
    user_id: str, analytex: Annotated[AsyncAnalytex, Depends(get_analytex)]
) -> dict[str, bool]:
    await analytex.identify(user_id, metadata={"plan": "free"})
    await analytex.track(user_id, "Signed Up")
    return {"ok": True}


# --8<-- [end:app]


# --8<-- [start:test]
@pytest.mark.anyio
async def test_signup_identifies_and_tracks() -> None:
    async with EmulatedAnalytex() as analytex:
        app.dependency_overrides[get_analytex] = lambda: analytex.client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            response = await http.post("/signup/user_001")
    assert response.json() == {"ok": True}
    assert analytex.emulator.users["user_001"].metadata == {"plan": "free"}
    assert [e.event_name for e in analytex.emulator.events] == ["Signed Up"]


# --8<-- [end:test]
