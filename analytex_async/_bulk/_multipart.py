r"""A batch of NDJSON lines as a replayable ``multipart/form-data`` body with a ``Content-Length``.

The bulk endpoints take the NDJSON file as one part named ``file``. httpx's own multipart encoder
cannot stream async data and copies what it sends, so the body is framed here (RFC 7578, CRLF
line breaks)::

    --<boundary>\r\n
    Content-Disposition: form-data; name="file"; filename="<filename>"\r\n
    Content-Type: application/x-ndjson\r\n
    \r\n
    <the NDJSON lines>\r\n
    --<boundary>--\r\n

The lines are held once, as given, and never joined into one payload: each attempt streams
them in chunks of about ``chunk_size`` bytes, so a 50 MB batch costs one 256 KiB buffer at a
time, not a second 50 MB copy. The exact length is known up front, so the request carries a
``Content-Length`` (httpx then does not fall back to ``Transfer-Encoding: chunked``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from itertools import chain, repeat

from .._types import BodyFactory

DEFAULT_FILENAME = "batch.ndjson"
LONGEST_UPLOAD_FILENAME = "0" * 16 + "-" + "9" * 12 + ".1" * 20 + ".ndjson"
"""The longest name ``upload_filename`` gives: an import id, a batch number up to 12 digits,
and 20 levels of 413 halving (10,000 records halve to one in 14). The batch byte budget leaves
room for it."""
"""The filename sent with a batch unless another is given."""
BOUNDARY_LENGTH = 32
"""Characters in a random boundary (128 random bits as hex)."""
DEFAULT_CHUNK_SIZE = 256 * 1024
"""Bytes joined into one chunk of the streamed body, about."""
NDJSON_CONTENT_TYPE = "application/x-ndjson"

# RFC 2046 allows more characters in a boundary, but some of them ("(", ",", "/", ":", "=",
# "?", " ") would need quoting in the Content-Type parameter; token characters that are also
# boundary characters need none, and a random hex boundary is one of them.
_BOUNDARY = re.compile(r"[0-9A-Za-z'+_.-]{1,70}")
# Printable ASCII except the quote and backslash, so the filename goes in quotes as is.
_FILENAME = re.compile(r"[ !#-\[\]-~]+")
_SEARCH_LINES = 1_000


def random_boundary() -> str:
    """A fresh random boundary: 32 hex characters from the ``secrets`` generator.

    Returns:
        The boundary (without the leading ``--``).
    """
    return secrets.token_hex(BOUNDARY_LENGTH // 2)


def upload_filename(upload_id: str, label: str) -> str:
    """The file name of one upload: unique to its import and batch (``<id>-<label>.ndjson``).

    The server keeps it on the job, so an upload whose answer was lost is found by it.

    Args:
        upload_id: The import's id (16 hex characters).
        label: The batch's label (``"7"``, or ``"7.0"`` for the first half of a split).

    Returns:
        The file name.

    Examples:
        >>> upload_filename("3f2a9c0d1b4e5f60", "7.1")
        '3f2a9c0d1b4e5f60-7.1.ndjson'
    """
    return f"{upload_id}-{label}.ndjson"


def _check_filename(filename: str) -> None:
    if not _FILENAME.fullmatch(filename):
        raise ValueError(
            f"filename must be printable ASCII without quotes or backslashes, got {filename!r}"
        )


def _check_boundary(boundary: str) -> None:
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(
            "boundary must be 1 to 70 characters among letters, digits and ' + _ . -, "
            f"got {boundary!r}"
        )


def _preamble(filename: str, boundary: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {NDJSON_CONTENT_TYPE}\r\n"
        "\r\n"
    ).encode("ascii")


def _epilogue(boundary: str) -> bytes:
    # The CRLF before the closing delimiter belongs to the delimiter, not to the file.
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def multipart_overhead(filename: str, boundary: str) -> int:
    """The bytes of framing a ``MultipartFile`` puts around its content.

    A body is exactly ``multipart_overhead(filename, boundary)`` plus the sum of its lines'
    lengths; the framing depends only on the lengths of ``filename`` and ``boundary``.

    Args:
        filename: The filename sent in the part's ``Content-Disposition``.
        boundary: The boundary (any string of the same length gives the same answer).

    Returns:
        The framing's length in bytes.

    Raises:
        ValueError: ``filename`` or ``boundary`` is not one ``MultipartFile`` accepts.

    Example:
        >>> multipart_overhead("batch.ndjson", "0" * 32)
        184
    """
    _check_filename(filename)
    _check_boundary(boundary)
    return len(_preamble(filename, boundary)) + len(_epilogue(boundary))


class _Chunks:
    """One attempt's body: an async iterator over a synchronous chunk generator.

    A class rather than an async generator: it holds no event-loop state, so an attempt that
    httpx abandons halfway (a reset, a timeout, a cancel) leaves nothing to finalise on either
    backend.
    """

    __slots__ = ("_chunks",)

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


class MultipartFile:
    r"""NDJSON lines framed as a one-part ``multipart/form-data`` upload, replayable per attempt.

    Args:
        lines: The NDJSON lines, each ending with ``b"\n"``; held as given, never joined whole.
        filename: The filename sent with the part.
        boundary: The multipart boundary; random (32 hex characters, 128 bits) by default. A
            given one is checked against the content; a random one is not (see
            ``_pick_boundary``).
        chunk_size: About how many bytes each streamed chunk holds. A line longer than that is
            sent as its own chunk, uncopied.

    Raises:
        ValueError: A line does not end with ``b"\n"``, the filename or boundary is not
            acceptable, a given boundary occurs in the content, or ``chunk_size`` is not
            positive.

    Example:
        >>> body = MultipartFile([b'{"user_id":"u1"}\n'], boundary="b0")
        >>> body.content_type
        'multipart/form-data; boundary=b0'
        >>> body.content_length
        141
        >>> headers, content = body.factory()()
        >>> headers["Content-Length"]
        '141'
    """

    __slots__ = ("_boundary", "_chunk_size", "_content_length", "_epilogue", "_lines", "_preamble")

    def __init__(
        self,
        lines: Sequence[bytes],
        *,
        filename: str = DEFAULT_FILENAME,
        boundary: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        checked_size: int | None = None,
    ) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        _check_filename(filename)
        # A tuple copies references, not bytes: the body stays exactly what was measured even
        # if the caller later changes its list.
        self._lines = tuple(lines)
        # C-level passes (a Python loop over 10,000 lines blocks the event loop for ms).
        if checked_size is not None:
            size = checked_size
        elif not all(map(bytes.endswith, self._lines, repeat(b"\n"))):
            number = next(i for i, line in enumerate(self._lines) if not line.endswith(b"\n"))
            line = self._lines[number]
            raise ValueError(f'line {number} does not end with b"\\n": {line[-40:]!r}')
        else:
            size = sum(map(len, self._lines))
        self._boundary = self._pick_boundary(boundary)
        self._preamble = _preamble(filename, self._boundary)
        self._epilogue = _epilogue(self._boundary)
        self._content_length = len(self._preamble) + size + len(self._epilogue)
        self._chunk_size = chunk_size

    def _pick_boundary(self, boundary: str | None) -> str:
        if boundary is not None:
            _check_boundary(boundary)
            if self._occurs_in_content(boundary):
                raise ValueError(f"the boundary {boundary!r} occurs in the content")
            return boundary
        # No scan of the content for a random boundary: 128 bits from the OS's CSPRNG occur in
        # a 50 MB body with a probability near 50e6 / 2**128 (about 1e-31), while the scan of
        # such a body costs tens of milliseconds on the event loop for every batch.
        return random_boundary()

    def _occurs_in_content(self, boundary: str) -> bool:
        # Every line ends with a newline, so a boundary (which holds none) can only occur
        # inside one line: searching slices of whole lines is a complete search. Searching
        # joined slices (a bounded copy) is ten times faster than searching line by line.
        needle = boundary.encode("ascii")
        lines = self._lines
        return any(
            needle in b"".join(lines[start : start + _SEARCH_LINES])
            for start in range(0, len(lines), _SEARCH_LINES)
        )

    def __repr__(self) -> str:
        return (
            f"MultipartFile({len(self._lines)} lines, content_length={self._content_length}, "
            f"boundary={self._boundary!r})"
        )

    @property
    def lines(self) -> Sequence[bytes]:
        """The NDJSON lines, as held (a tuple)."""
        return self._lines

    @property
    def chunk_size(self) -> int:
        """About how many bytes each streamed chunk holds."""
        return self._chunk_size

    @property
    def boundary(self) -> str:
        """The multipart boundary, without the leading ``--``."""
        return self._boundary

    @property
    def content_length(self) -> int:
        """The exact length of the body in bytes, framing included."""
        return self._content_length

    @property
    def content_type(self) -> str:
        """The request's ``Content-Type``: ``multipart/form-data; boundary=...``."""
        return f"multipart/form-data; boundary={self._boundary}"

    @property
    def headers(self) -> dict[str, str]:
        """A new dict of the request headers the body needs: its type and its length."""
        return {"Content-Type": self.content_type, "Content-Length": str(self._content_length)}

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes, in order, as chunks of about ``chunk_size`` bytes.

        The framing and short lines are joined a chunk at a time (never more than
        ``chunk_size`` bytes in one join); a piece that is ``chunk_size`` or longer on its own
        is yielded as is, without a copy.

        Yields:
            The next chunk; together the chunks are exactly ``content_length`` bytes.
        """
        limit = self._chunk_size
        pending: list[bytes] = []
        pending_size = 0
        for piece in chain((self._preamble,), self._lines, (self._epilogue,)):
            if pending and pending_size + len(piece) > limit:
                yield pending[0] if len(pending) == 1 else b"".join(pending)
                pending = []
                pending_size = 0
            if len(piece) >= limit:
                yield piece
                continue
            pending.append(piece)
            pending_size += len(piece)
        if pending:
            yield pending[0] if len(pending) == 1 else b"".join(pending)

    def body(self) -> tuple[dict[str, str], AsyncIterable[bytes]]:
        """The headers and a fresh async stream of the whole body, for one attempt.

        Returns:
            ``({"Content-Type": ..., "Content-Length": ...}, content)``; each call starts the
            body from its first byte.
        """
        return self.headers, _Chunks(self.chunks())

    def factory(self) -> BodyFactory:
        """The body factory the transport calls once per attempt.

        Returns:
            A callable returning fresh headers and a fresh stream of the whole body on every
            call, so a retried request resends every byte.
        """
        return self.body
