"""Fetching an export's files from their signed links: never with the key, never half a file.

A link points at another host (object storage): it is fetched with a plain ``GET`` that carries
no ``Authorization`` header (not even one a caller's ``httpx.AsyncClient`` would add), and only
over ``https://`` unless the host is loopback. Redirects are followed by hand so that every hop
passes the same check. An expired link (403, 404 or 410 from the file host) is renewed once, by
fetching the export again. A body that ends before its ``Content-Length``, or a connection that
resets mid-file, is resumed where it stopped (``Range``, or by skipping what was already read
when the host ignores it), within the client's retry budget: a truncated file is never passed
on as whole. A link's query is a credential, so no message ever shows it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path, PurePath
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.to_thread
import httpx

from .._config import is_loopback_host
from .._errors import APIConnectionError, APIError, APIStatusError, error_class_for
from .._retry import RetryPolicy
from .._transport import USER_AGENT
from ._models import ExportFile, without_query

EXPIRED_STATUSES = frozenset({403, 404, 410})
"""What a file host answers for an expired signed link."""
MAX_REDIRECTS = 5
CHUNK_SIZE = 64 * 1024
"""Bytes read from the network at a time (a bound on what a file holds in memory)."""

Renew = Callable[[str], Awaitable[ExportFile | None]]
"""Fetches a fresh link for a file, by its name (``None`` when the export no longer has it)."""


class TruncatedError(APIConnectionError):
    """A file's body ended before its ``Content-Length`` (retried, then raised)."""


def check_link(url: str, what: str) -> None:
    """Refuse a link that is not ``https://``, unless it is plain ``http://`` to loopback.

    Args:
        url: The link.
        what: The file, for the message.

    Raises:
        APIError: The link's scheme or host is not allowed.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise APIError(f"the link of {what} is not a URL") from None
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host and is_loopback_host(host):
        return
    raise APIError(
        f"refusing the link of {what} ({without_query(url)}): links must be https:// "
        "(plain http:// only to loopback hosts)"
    )


def safe_filename(name: str) -> str:
    r"""A link's ``filename`` if it names a file in the target directory, nothing more.

    Raises:
        APIError: The name holds a path (``/``, ``\\``, ``..``) or is empty.
    """
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or PurePath(name).name != name
    ):
        raise APIError(f"refusing an export file named {name!r:.100}: not a plain file name")
    return name


def _etag(response: httpx.Response) -> str | None:
    value = response.headers.get("etag")
    return value.strip() if value else None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _range_start(response: httpx.Response) -> tuple[int, int | None] | None:
    """``Content-Range: bytes START-END/TOTAL`` as ``(START, TOTAL)``; ``None`` if unreadable."""
    value = response.headers.get("content-range", "")
    unit, _, spec = value.partition(" ")
    span, _, total = spec.partition("/")
    start, _, _ = span.partition("-")
    if unit.strip().lower() != "bytes" or not start.strip().isdigit():
        return None
    return int(start), int(total) if total.strip().isdigit() else None


class FileBody:
    """One file being fetched: its size and ETag, and its bytes from ``start`` on.

    Made by ``LinkFetcher.open``; read ``chunks()`` once.

    Attributes:
        file: The file (its link renewed if it expired).
        size: The file's whole size, when the host says.
        etag: The host's ETag, when it gives one.
        start: Where the bytes ``chunks()`` yields begin (the offset asked for when the host
            honoured ``Range``, else 0).
    """

    def __init__(self, fetcher: LinkFetcher, file: ExportFile) -> None:
        self._fetcher = fetcher
        self.file = file
        self.size: int | None = None
        self.etag: str | None = None
        self.start = 0
        self._response: httpx.Response | None = None
        self._renewed = False
        self._failures = 0

    @property
    def _what(self) -> str:
        return f"export file {self.file.filename!r}"

    async def _failed(self, error: APIError) -> None:
        """Count a failure; wait before the next try, or raise when the budget is spent."""
        retry = self._fetcher.retry
        self._failures += 1
        error.attempts = self._failures
        if self._failures > retry.max_retries:
            raise error
        await anyio.sleep(retry.backoff(self._failures - 1))

    async def _send(self, offset: int) -> httpx.Response:
        """One ``GET`` of the link (redirects followed by hand), without the API key."""
        http_client = self._fetcher.http_client
        url = self.file.url
        headers = {"Accept": "*/*", "User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.etag is not None:
                headers["If-Range"] = self.etag
        for _ in range(MAX_REDIRECTS + 1):
            check_link(url, self._what)
            request = http_client.build_request("GET", url, headers=headers)
            # A caller's client may carry default headers: none of them is the key's to send.
            for name in ("authorization", "cookie", "x-api-version"):
                request.headers.pop(name, None)
            response = await http_client.send(
                request, stream=True, follow_redirects=False, auth=None
            )
            location = response.headers.get("location")
            if not (response.is_redirect and location):
                return response
            await response.aclose()
            url = urljoin(url, location)
        raise APIError(f"{self._what}: more than {MAX_REDIRECTS} redirects")

    async def _status_error(self, response: httpx.Response) -> APIStatusError:
        await response.aread()
        reason = response.reason_phrase or ""
        message = (
            f"GET {without_query(str(response.request.url))} ({self._what}) answered "
            f"{response.status_code} {reason}".rstrip()
        )
        if response.status_code in EXPIRED_STATUSES:
            message += ": the link has expired (it was renewed once)"
        return error_class_for(response.status_code)(message, response=response)

    async def connect(self, offset: int) -> httpx.Response:
        """Get a response carrying the file's bytes from ``offset`` (or from 0)."""
        while True:
            try:
                response = await self._send(offset)
            except httpx.RequestError as exc:
                error: APIError = APIConnectionError(
                    f"GET {without_query(self.file.url)} ({self._what}): {type(exc).__name__}",
                    request=exc.request if _has_request(exc) else None,
                )
                await self._failed(error)
                continue
            status = response.status_code
            if status in (200, 206):
                return await self._accept(response, offset)
            if status in EXPIRED_STATUSES and not self._renewed:
                await response.aclose()
                self._renewed = True
                fresh = await self._fetcher.renew(self.file.filename)
                if fresh is not None:
                    self.file = fresh
                    continue
            error = await self._status_error(response)
            await response.aclose()
            if status in (408, 429) or status >= 500:
                await self._failed(error)
                continue
            raise error

    async def _accept(self, response: httpx.Response, offset: int) -> httpx.Response:
        etag = _etag(response)
        if response.status_code == 206:
            span = _range_start(response)
            if not offset or span is None or span[0] != offset:
                await response.aclose()
                raise APIError(f"{self._what}: the host answered a range that was not asked for")
            total = span[1]
        else:
            total = _content_length(response)
        if self._response is not None or self.size is not None:
            # A reconnection: the file must be the one we began with.
            if self.etag is not None and etag is not None and etag != self.etag:
                await response.aclose()
                raise APIError(f"{self._what} changed on the host while it was being read")
        else:
            self.size, self.etag = total, etag
        return response

    async def open(self, offset: int) -> None:
        """Send the first request (``Range`` from ``offset`` when it is not 0)."""
        response = await self.connect(offset)
        self._response = response
        self.start = offset if response.status_code == 206 else 0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The file's bytes from ``start`` to its end, resumed across truncations.

        Raises:
            APIConnectionError: The file could not be read whole within the retry budget.
        """
        response = self._response
        assert response is not None  # noqa: S101 -- open() comes first, by construction
        position = self.start  # the next byte the caller is owed
        served = self.start  # where the current response's body begins
        try:
            while True:
                try:
                    async for piece in response.aiter_raw(CHUNK_SIZE):
                        skip = position - served
                        served += len(piece)
                        if skip >= len(piece):
                            continue
                        if skip > 0:
                            piece = piece[skip:]  # noqa: PLW2901 -- the unread part
                        position += len(piece)
                        yield piece
                    self._check_whole(position)
                except (httpx.TransportError, TruncatedError) as exc:
                    await response.aclose()
                    error: APIError = (
                        exc
                        if isinstance(exc, TruncatedError)
                        else APIConnectionError(
                            f"GET {without_query(self.file.url)} ({self._what}): the connection "
                            f"failed after {position} bytes ({type(exc).__name__})"
                        )
                    )
                    await self._failed(error)
                    response = await self.connect(position)
                    self._response = response
                    served = position if response.status_code == 206 else 0
                else:
                    return
        finally:
            await response.aclose()

    def _check_whole(self, position: int) -> None:
        if self.size is not None and position < self.size:
            raise TruncatedError(
                f"GET {without_query(self.file.url)} ({self._what}): the body ended after "
                f"{position} of {self.size} bytes"
            )

    async def aclose(self) -> None:
        """Close the response, if one is open."""
        if self._response is not None:
            await self._response.aclose()


def _has_request(exc: httpx.RequestError) -> bool:
    try:
        exc.request  # noqa: B018 -- httpx raises RuntimeError when it has none
    except RuntimeError:
        return False
    return True


class LinkFetcher:
    """Fetches export files from their links with one connection pool.

    Args:
        http_client: The client's pool (its default headers are stripped from each request).
        retry: The retry policy (its ``max_retries`` bounds the failures of one file).
        renew: Fetches a fresh link for an expired one.
    """

    def __init__(self, http_client: httpx.AsyncClient, retry: RetryPolicy, renew: Renew) -> None:
        self.http_client = http_client
        self.retry = retry
        self.renew = renew

    @asynccontextmanager
    async def open(self, file: ExportFile, offset: int = 0) -> AsyncGenerator[FileBody, None]:
        """Fetch a file: the body's size and ETag are known on entry, its bytes read after.

        Args:
            file: The file.
            offset: Ask for the bytes from here on (a partial download being resumed).

        Yields:
            The body.
        """
        safe_filename(file.filename)
        body = FileBody(self, file)
        try:
            await body.open(offset)
            yield body
        finally:
            await body.aclose()


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def is_whole(path: Path, size: int | None, etag: str | None) -> bool:
    """Whether a file on disk is the one the host serves: its size, and its MD5 ETag if any.

    An ETag that is not a plain MD5 (a multipart upload's ``…-N``, an opaque one) is not
    compared; with no ``Content-Length`` a file cannot be told whole.

    Args:
        path: The file on disk.
        size: The host's ``Content-Length`` (or the ``Content-Range`` total).
        etag: The host's ETag.
    """
    if size is None:
        return False
    stat = await anyio.Path(path).stat()
    if stat.st_size != size:
        return False
    tag = (etag or "").removeprefix("W/").strip('"').lower()
    if len(tag) == 32 and all(c in "0123456789abcdef" for c in tag):
        return await anyio.to_thread.run_sync(_md5_of, path) == tag
    return True


async def save(
    fetcher: LinkFetcher,
    file: ExportFile,
    directory: Path,
    *,
    overwrite: bool,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Download one file into ``directory``: to ``NAME.part``, renamed ``NAME`` when whole.

    A file already there and whole is kept (a rerun skips it); a different one is refused
    unless ``overwrite``. A ``NAME.part`` left by an interrupted run is resumed from its end
    when the host honours ``Range``.

    Args:
        fetcher: The fetcher.
        file: The file.
        directory: Where to put it (it exists).
        overwrite: Replace a different file of the same name.
        on_bytes: Told the size of each piece written (a file kept whole: its size).

    Returns:
        The file's path.

    Raises:
        FileExistsError: A different file of that name is there and ``overwrite`` is off.
    """
    name = safe_filename(file.filename)
    target = directory / name
    partial = directory / f"{name}.part"
    exists = await anyio.Path(target).exists()
    offset = 0
    if not exists and await anyio.Path(partial).exists():
        offset = (await anyio.Path(partial).stat()).st_size
    async with fetcher.open(file, offset) as body:
        if exists:
            if await is_whole(target, body.size, body.etag):
                if on_bytes is not None and body.size is not None:
                    on_bytes(body.size)
                return target
            if not overwrite:
                raise FileExistsError(
                    f"{target} exists and differs from the export's file; pass overwrite=True "
                    "to replace it"
                )
        async with await anyio.open_file(partial, "ab" if body.start else "wb") as out:
            if on_bytes is not None and body.start:
                on_bytes(body.start)
            async with aclosing(body.chunks()) as chunks:
                async for chunk in chunks:
                    await out.write(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
    await anyio.to_thread.run_sync(os.replace, partial, target)
    return target
