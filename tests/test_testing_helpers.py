"""The helpers we ship for users' own tests: the respx mock and the emulator wiring."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from analytex_async import (
    AsyncAnalytex,
    ConfigurationError,
    ConflictError,
    JobStatus,
    RateLimitError,
)
from analytex_async.emulator import Emulator
from analytex_async.testing import (
    EmulatedAnalytex,
    error_response,
    job_response,
    mock_api,
)

pytestmark = pytest.mark.anyio


async def test_mock_api_answers_every_call_like_the_api() -> None:
    with mock_api() as api:
        async with AsyncAnalytex(api_key="k") as client:
            await client.identify("u1")
            await client.identify_company("c1")
            await client.track("u1", "e")
            job = await client.bulk_identify([{"user_id": "u1"}])
            await client.bulk_identify_companies([{"company_id": "c1"}])
            assert job.status is JobStatus.QUEUED
            done = await client.get_job("bulk:jobs:1/2")
            assert (done.job_id, done.status) == ("bulk:jobs:1/2", JobStatus.COMPLETED)
            assert await client.list_jobs() == []
            await client.delete_users(["u1"])
        for route in (api.identify, api.identify_company, api.track, api.bulk_users,
                      api.bulk_companies, api.job, api.jobs, api.delete_users):  # fmt: skip
            assert route.call_count == 1, route.name
        assert "MockAPI(calls=" in repr(api)


async def test_scripted_answers_drive_the_client() -> None:
    with mock_api("https://analytex-eu.userpilot.io") as api:
        api.bulk_users.mock(side_effect=[error_response(409, "a job is running"), job_response()])
        api.track.mock(return_value=error_response(429, "slow down", retry_after=0))
        async with AsyncAnalytex(api_key="k", region="eu", max_retries=0) as client:
            with pytest.raises(ConflictError, match="a job is running") as conflict:
                await client.bulk_identify([{"user_id": "u1"}])
            assert conflict.value.errors[0].error == "conflict"
            assert (await client.bulk_identify([{"user_id": "u1"}])).job_id
            with pytest.raises(RateLimitError) as limited:
                await client.track("u1", "e")
            assert limited.value.retry_after == 0


def test_job_response_takes_extra_fields() -> None:
    response = job_response("j1", "processing", status_code=200, total_rows=10)
    assert response.status_code == 200
    assert response.json()["total_rows"] == 10


async def test_emulated_client_is_only_available_inside_the_block() -> None:
    emulated = EmulatedAnalytex()
    with pytest.raises(RuntimeError, match="async with"):
        _ = emulated.client
    async with emulated as analytex:
        await analytex.client.identify("u1", metadata={"plan": "free"})
        assert analytex.emulator.users["u1"].metadata == {"plan": "free"}
        client = analytex.client
    assert client.is_closed
    assert "EmulatedAnalytex(" in repr(emulated)


async def test_one_rate_sets_the_emulator_and_the_client() -> None:
    async with EmulatedAnalytex(rows_per_minute=600_000) as analytex:
        assert analytex.emulator.rows_per_minute == analytex.client.rows_per_minute == 600_000
        job = await analytex.client.bulk_identify([{"user_id": f"u{i}"} for i in range(100)])
        assert (await analytex.client.wait_for_job(job.job_id)).status is JobStatus.COMPLETED


async def test_the_client_follows_a_given_emulators_rate() -> None:
    async with EmulatedAnalytex(Emulator(rows_per_minute=90_000)) as analytex:
        assert analytex.client.rows_per_minute == 90_000
    async with EmulatedAnalytex() as analytex:  # the API's own 1,200 on both sides
        assert analytex.emulator.rows_per_minute == analytex.client.rows_per_minute == 1_200


async def test_a_rate_beside_a_given_emulator_paces_the_client_only() -> None:
    emulator = Emulator(rows_per_minute=90_000)
    async with EmulatedAnalytex(emulator, rows_per_minute=6_000) as analytex:
        assert (emulator.rows_per_minute, analytex.client.rows_per_minute) == (90_000, 6_000)


@pytest.mark.parametrize("rate", [0, -1, "fast"])
def test_a_rate_that_is_not_a_positive_number_is_refused_by_name(rate: object) -> None:
    with pytest.raises(ConfigurationError, match="rows_per_minute"):
        EmulatedAnalytex(rows_per_minute=rate)  # type: ignore[arg-type]


# A fresh interpreter where some optional dependencies cannot be imported: a ``None`` entry in
# ``sys.modules`` makes ``import name`` (and every ``name.sub``) raise ModuleNotFoundError.
WITHOUT = """
import json, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
import analytex_async.testing as testing
outcome = {"emulator_imported": "analytex_async.emulator" in sys.modules}
try:
    {action}
except Exception as exc:
    outcome.update(type=type(exc).__name__, message=str(exc))
print(json.dumps(outcome))
"""


def run_without(modules: list[str], action: str) -> dict[str, object]:
    script = textwrap.dedent(WITHOUT).replace("{action}", action)
    done = subprocess.run(
        [sys.executable, "-c", script, ",".join(modules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_module_imports_without_the_emulator_and_asking_for_it_names_the_extra() -> None:
    outcome = run_without(["starlette", "uvicorn"], "testing.EmulatedAnalytex()")
    assert outcome["emulator_imported"] is False
    assert outcome["type"] == "ImportError"
    assert "starlette" in str(outcome["message"])
    assert 'pip install "analytex-async[testing]"' in str(outcome["message"])


def test_the_module_imports_without_respx_and_mock_api_names_the_extra() -> None:
    outcome = run_without(["respx"], "testing.mock_api().__enter__()")
    assert outcome["type"] == "ImportError"
    assert "respx" in str(outcome["message"])
    assert 'pip install "analytex-async[testing]"' in str(outcome["message"])


def test_the_module_imports_with_no_extra_at_all() -> None:
    outcome = run_without(["starlette", "uvicorn", "respx", "click", "rich", "redis"], "pass")
    assert outcome == {"emulator_imported": False}
