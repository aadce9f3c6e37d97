from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from analytex_async import AsyncAnalytex


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
        app.state.analytex = client
        yield


app = FastAPI(lifespan=lifespan)


def get_analytex(request: Request) -> AsyncAnalytex:
    return request.app.state.analytex  # opened by the lifespan


@app.post("/signup/{user_id}")
async def signup(
    user_id: str, analytex: Annotated[AsyncAnalytex, Depends(get_analytex)]
) -> dict[str, str]:
    await analytex.identify(user_id, metadata={"plan": "free"})
    await analytex.track(user_id, "Signed Up")
    return {"status": "ok"}
