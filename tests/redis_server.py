"""A throwaway ``redis-server`` on a free loopback port, for the Redis governor's tests.

The tests run against the real server (the Debian package ``redis-server``, which ``.ci/run``
installs), never a fake: the Lua scripts are the thing under test.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._net import free_port, wait_until

_STARTUP_TIMEOUT = 15.0


def redis_binary() -> str:
    """The ``redis-server`` executable; fails the test (never skips) when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed, and the Redis governor's tests need a real one: "
            "run .ci/run (it installs the Debian package), or `apt-get install redis-server`",
            pytrace=False,
        )
    return binary


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process: no persistence, loopback only, stopped by ``stop()``.

    Args:
        directory: Its working directory (nothing is written there: persistence is off).
        port: The port to listen on; a free one when ``None``.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        process = self.process
        if wait_until(lambda: _answers_ping(self.port), timeout=_STARTUP_TIMEOUT, process=process):
            return self
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"redis-server exited at start-up: {error}")
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (it keeps nothing)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


@contextlib.contextmanager
def running_redis(directory: Path, port: int | None = None) -> Iterator[RedisServer]:
    """A started ``RedisServer`` for the duration of the block."""
    server = RedisServer(directory, port).start()
    try:
        yield server
    finally:
        server.stop()
