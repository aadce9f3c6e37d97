"""The ``analytex-async emulator`` command serves an emulator an unmodified client can use."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from analytex_async import AsyncAnalytex, ConflictError
from analytex_async.cli import main

from ._net import free_port, wait_for_port


@pytest.fixture
def served_emulator() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "analytex_async", "emulator", "--port", str(port),
         "--rows-per-minute", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    if not wait_for_port(port, process=process):
        process.kill()
        pytest.fail(f"the emulator did not start: {process.communicate()[1].decode()}")
    assert process.stdout is not None
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert b"any-key" not in stderr  # the key is never logged


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_an_unmodified_client_sees_the_documented_behaviour(
    served_emulator: str, anyio_backend: str
) -> None:
    async with AsyncAnalytex(api_key="any-key", base_url=served_emulator) as client:
        await client.identify("u1", metadata={"plan": "pro"})
        job = await client.bulk_identify([{"user_id": f"u{i}"} for i in range(100)])
        with pytest.raises(ConflictError):
            await client.bulk_identify([{"user_id": "u101"}])
        polled = await client.get_job(job.job_id)
        assert polled.total_rows == 100


def test_help_lists_the_emulator_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "emulator" in capsys.readouterr().out


def test_a_missing_cli_extra_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "analytex_async.cli._commands", None)
    with pytest.raises(SystemExit) as info:
        main(["emulator"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert 'pip install "analytex-async[cli]"' in err
