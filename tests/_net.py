"""Loopback helpers shared by the tests that start real servers (emulator, redis-server)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts_connections(port: int) -> bool:
    """Whether something listens on ``127.0.0.1:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float = 15.0,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
    interval: float = 0.02,
) -> bool:
    """Poll ``ready()`` until it is true; False after ``timeout`` s or once ``process`` exited.

    A server started in a child process is polled this way (its port, a PING), so a test waits
    exactly as long as the start takes and fails fast when the child died.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(interval)
    return False


def wait_for_port(
    port: int,
    *,
    timeout: float = 15.0,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
) -> bool:
    """Wait until ``127.0.0.1:port`` accepts connections (see ``wait_until``)."""
    return wait_until(lambda: accepts_connections(port), timeout=timeout, process=process)
