"""The FastAPI app the docs show (examples/fastapi_signup.py), tested as docs/testing.md does.

docs/index.md and docs/testing.md include the example's app section verbatim; this test imports
the example itself, as a user's test imports their app, and replaces its dependency.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from analytex_async.testing import EmulatedAnalytex

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_signup.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_signup", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_signup_identifies_and_tracks() -> None:
    myapp = load_example()
    async with EmulatedAnalytex() as analytex:
        myapp.app.dependency_overrides[myapp.get_analytex] = lambda: analytex.client
        transport = httpx.ASGITransport(app=myapp.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            response = await http.post("/signup/user_001")
    assert response.json() == {"status": "ok"}
    assert analytex.emulator.users["user_001"].metadata == {"plan": "free"}
    assert [e.event_name for e in analytex.emulator.events] == ["Signed Up"]
