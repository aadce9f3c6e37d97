"""The ``analytex-async emulator`` command serves an emulator an unmodified client can use."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from analytex_async import AsyncAnalytex, ConflictError
from analytex_async.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served_emulator() -> object:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "analytex_async", "emulator", "--port", str(port),
         "--rows-per-minute", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
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
