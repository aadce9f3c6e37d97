"""A minimal, fast loopback sink that counts what arrives, run in its own process.

It speaks just enough of each API for the clients under test to believe they were heard:

* ``POST /v1/users/bulk_identify`` (ours and the bare loop): a one-part ``multipart/form-data``
  body whose ``file`` part holds NDJSON; answers ``202`` with a job that is already
  ``completed``;
* ``GET /v1/background_jobs/{id}`` answers that job, ``completed``;
* ``POST /batch/`` (PostHog) and ``POST /v1/batch`` (Segment): a JSON object whose ``batch``
  member is the list of records, gzipped when ``Content-Encoding: gzip`` says so (neither peer
  compresses by default); answers ``200``.

Every client's body gets the same work: it is read whole, then parsed whole by the one routine
for its wire shape (``ndjson_multipart_records``: the multipart framing checked and every NDJSON
line decoded with ``json.loads``; ``json_batch_records``: the body decoded with ``json.loads``),
and the records are counted by one routine for all (``count_records``, which requires each to
be a JSON object). No client's records are counted without being decoded.

``GET /_sink/stats`` returns the counts and ``POST /_sink/reset`` zeroes them. Run as a script it
prints its base URL on the first line of stdout, then serves until its stdin closes (the parent
went away) or ``--max-seconds`` pass, whichever comes first. ``Sink`` starts and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import select
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h11
import httpx

_READ_SIZE = 256 * 1024
_STARTUP_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class Counts:
    """What the sink has received since the last reset."""

    def __init__(self) -> None:
        self.requests = 0
        self.records = 0
        self.body_bytes = 0
        self.jobs = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def ndjson_multipart_records(body: bytes, content_type: str) -> Iterator[object]:
    """Decode the records of a one-part multipart body whose ``file`` part is NDJSON.

    The framing is checked (the boundary from ``content_type``, the opening delimiter, the
    part's headers, the closing delimiter, and no second part), then every non-empty line of
    the part is decoded with ``json.loads``.

    Raises:
        ValueError: The body is not such a multipart body, or a line is not JSON.
    """
    boundary = content_type.partition("boundary=")[2].strip().strip('"').encode("ascii")
    if not boundary:
        raise ValueError(f"no multipart boundary in {content_type!r}")
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        raise ValueError("the body does not open with the multipart delimiter")
    headers_end = body.index(b"\r\n\r\n")
    if b'name="file"' not in body[:headers_end]:
        raise ValueError("the part is not the 'file' field")
    content_start = headers_end + 4
    content_end = body.find(b"\r\n" + delimiter, content_start)
    if content_end < 0 or body[content_end + 2 + len(delimiter) :].rstrip(b"\r\n") != b"--":
        raise ValueError("not exactly one part closed by the final delimiter")
    for line in body[content_start:content_end].split(b"\n"):
        if line:
            yield json.loads(line)


def json_batch_records(body: bytes, content_encoding: str) -> list[object]:
    """Decode the records of a JSON ``{"batch": [...]}`` body, gunzipping it if it says so.

    Raises:
        ValueError: The body is not JSON.
        TypeError: It is JSON but not an object with a ``batch`` list.
    """
    if content_encoding == "gzip":
        body = gzip.decompress(body)
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        raise TypeError("the body is not a JSON object with a 'batch' list")
    return document["batch"]


def count_records(records: Iterable[object]) -> int:
    """Count decoded records, each of which must be a JSON object (the same rule for all).

    Raises:
        TypeError: A record is not a JSON object.
    """
    count = 0
    for record in records:
        if not isinstance(record, dict):
            raise TypeError(f"a record is a {type(record).__name__}, not a JSON object")
        count += 1
    return count


def _job(job_id: str, rows: int) -> bytes:
    return json.dumps(
        {"job_id": job_id, "status": "completed", "total_rows": rows, "completed_rows": rows}
    ).encode()


class SinkServer:
    """The server side: one ``h11`` connection per client socket, keep-alive."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.job_rows: dict[str, int] = {}

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        counts = self.counts
        if path == "/_sink/stats":
            return 200, json.dumps(counts.as_dict()).encode()
        if path == "/_sink/reset":
            self.counts = Counts()
            self.job_rows.clear()
            return 200, b"{}"
        counts.requests += 1
        counts.body_bytes += len(body)
        if method == "POST" and path.endswith("/bulk_identify"):
            rows = count_records(ndjson_multipart_records(body, headers.get("content-type", "")))
            counts.records += rows
            counts.jobs += 1
            job_id = f"job-{counts.jobs}"
            self.job_rows[job_id] = rows
            return 202, _job(job_id, rows)
        if method == "POST" and path in ("/batch/", "/batch", "/v1/batch"):
            counts.records += count_records(
                json_batch_records(body, headers.get("content-encoding", ""))
            )
            return 200, b'{"status":1}'
        if method == "GET" and path.startswith("/v1/background_jobs/"):
            job_id = path.rsplit("/", 1)[1]
            return 200, _job(job_id, self.job_rows.get(job_id, 0))
        if method == "GET" and path == "/v1/background_jobs":
            return 200, b"[]"
        return 404, b'{"errors":[{"message":"not found"}]}'

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    return
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                path = request.target.decode().split("?", 1)[0]
                try:
                    status, content = self.answer(request.method.decode(), path, headers, body)
                except (ValueError, TypeError, KeyError) as exc:
                    status, content = 400, json.dumps({"errors": [{"message": str(exc)}]}).encode()
                response = h11.Response(
                    status_code=status,
                    headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(content))),
                    ],
                )
                writer.write(conn.send(response) + conn.send(h11.Data(data=content)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ_SIZE)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""


async def _serve(max_seconds: float) -> None:
    sink = SinkServer()
    server = await asyncio.start_server(sink.connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin_closed(), max_seconds)


async def stdin_closed() -> None:
    """Return once the parent closes our stdin (or goes away): how a ``ServerProcess`` stops."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


class ServerProcess:
    """A server script run in a child process that prints its base URL on its first line.

    The child must stop when its stdin closes: leaving the ``with`` block closes it, then
    waits (and kills the child if it has not stopped within 10 s).

    Args:
        argv: The command, e.g. ``[sys.executable, "benchmarks/_sink.py"]``.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(  # our own script, no shell
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], _STARTUP_TIMEOUT)
        line = stdout.readline().decode().strip() if ready else "(nothing in time)"
        if not line.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"{self.argv} did not start: {line!r}")
        self.url = line
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT)


class Sink(ServerProcess):
    """The sink in its own process (so it never shares the client's CPU accounting)."""

    def __init__(self, max_seconds: float = 1800.0) -> None:
        super().__init__([sys.executable, str(Path(__file__)), "--max-seconds", str(max_seconds)])

    def __enter__(self) -> Sink:
        super().__enter__()
        return self

    def stats(self) -> dict[str, Any]:
        """The counts since the last reset."""
        return dict(httpx.get(f"{self.url}/_sink/stats").json())

    def reset(self) -> None:
        """Zero the counts."""
        httpx.post(f"{self.url}/_sink/reset").raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    asyncio.run(_serve(args.max_seconds))


if __name__ == "__main__":
    main()
