"""Files: open a path or a caller's file object, recognise gzip, and read it in blocks.

Everything blocking (opening, reading, decompressing, parsing) runs in a worker thread, one
block per hop (at most about ``_CHUNK_BYTES`` of input or ``_parsers._BLOCK_LINES`` lines), and
only the parsed records cross back to the event loop. Memory therefore stays bounded by about
one block however large the file is.

``is_gzip`` and ``open_decompressed`` are the one place that recognises gzip data by its magic
bytes: the CLI's record count uses them too, so the two never disagree about a file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import IO, Any, Protocol

import anyio.to_thread

from .._errors import ValidationError
from .._types import RecordKind, SourceFormat
from ._csv_parser import CsvParser
from ._pacing import Pacer
from ._parsers import (
    READ_ERRORS,
    BlockParser,
    NdjsonParser,
    SourceRecord,
    encode_text,
    read_failure,
)

_GZIP_MAGIC = b"\x1f\x8b"
# Read at most about this many bytes per hop to the worker thread. The hop overhead (~100 µs)
# stays noise at this size, and a block of input this big parses in a few milliseconds.
_CHUNK_BYTES = 1 << 20


def is_gzip(head: bytes) -> bool:
    """Whether data starting with ``head`` is gzip-compressed (by its magic bytes).

    Args:
        head: The first bytes of the data; two are enough.

    Returns:
        ``True`` when ``head`` starts with the gzip magic bytes.
    """
    return head.startswith(_GZIP_MAGIC)


@contextlib.contextmanager
def open_decompressed(path: str | os.PathLike[str]) -> Iterator[io.BufferedIOBase]:
    """Open a file for reading its content, decompressed when it is gzip data.

    The content decides, not the name: a ``.gz`` name on plain data reads as plain data here.
    Closing (leaving the ``with`` block) closes the file.

    Args:
        path: The file.

    Yields:
        A binary stream of the file's (decompressed) bytes.

    Raises:
        OSError: The file cannot be opened or read (``gzip.BadGzipFile`` included); a damaged
            gzip stream may also raise ``EOFError`` or ``zlib.error`` while being read.

    Example:
        ```python
        with open_decompressed("users.ndjson.gz") as stream:
            first_chunk = stream.read(1 << 20)
        ```
    """
    with open(path, "rb") as raw:
        head = raw.read(len(_GZIP_MAGIC))
        raw.seek(0)
        if not is_gzip(head):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unpacked:
            yield unpacked


def cannot_open(error: OSError, name: str) -> ValidationError:
    """The error for a file that cannot be opened: missing, a directory, no permission...

    Args:
        error: What opening it raised.
        name: The file, as the user named it.

    Returns:
        A ``ValidationError`` on the ``source`` field that names the file.
    """
    if isinstance(error, FileNotFoundError):
        return ValidationError(f"{name}: no such file", field="source")
    return ValidationError(f"{name}: cannot open: {error.strerror or error}", field="source")


class BlockReader(Protocol):
    """The blocking side of a source read in blocks; each method runs in a worker thread.

    ``close`` runs on the loop instead, and must not block (a file opened for reading closes
    at once).
    """

    def open(self) -> None:
        """Open what is read (a file, a table's first chunk)."""

    def next_block(self) -> list[SourceRecord] | None:
        """The next records, or ``None`` after the last."""

    def close(self) -> None:
        """Release what ``open`` took."""


async def read_blocks(reader: BlockReader) -> AsyncGenerator[SourceRecord, None]:
    """The records of a source, read a block at a time in a worker thread, yielded on the loop.

    The source is opened on the first iteration and closed when the generator ends, is closed
    or is cancelled. Files and tables (``_frames``) are both read this way.

    Args:
        reader: The blocking side (a ``FileSource``, a table reader).

    Yields:
        The records, in order.
    """
    # Each hop to the thread gives the loop a turn; within a block, the pacer does, so that a
    # consumer doing real work per record (the pipeline checks each) never stalls the loop.
    pacer = Pacer()
    try:
        await anyio.to_thread.run_sync(reader.open)
        while True:
            block = await anyio.to_thread.run_sync(reader.next_block)
            if block is None:
                return
            pacer.reset()  # the hop was a checkpoint
            for record in block:
                yield record
                await pacer.tick()
    finally:
        # Synchronous on purpose: an await here could be cancelled before the source is
        # closed. A cancelled hop still runs to its end in its thread, so this never races it.
        reader.close()


def read_file(file: FileSource) -> AsyncGenerator[SourceRecord, None]:
    """The records of a file, read in blocks in a worker thread (see ``read_blocks``).

    Args:
        file: What to read and how (see ``FileSource``).

    Returns:
        An async generator of the file's records, in order; the file is opened on the first
        iteration and closed when the generator ends, is closed or is cancelled.
    """
    return read_blocks(file)


class _Rewound(io.RawIOBase):
    """A binary stream that replays the bytes already read from it, then reads on.

    Sniffing the gzip magic bytes needs the first bytes of the stream, and stdin cannot seek
    back. Closing it leaves the underlying stream open: it belongs to the caller.
    """

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)  # a view, so replaying it piece by piece copies nothing
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(view), len(self._head))
            view[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._stream.read(len(view))
        if data is None:
            raise OSError("the stream is non-blocking and has no data ready")
        view[: len(data)] = data
        return len(data)


class FileSource:
    """The blocking side of reading one file: ``open`` and ``next_block`` run in a worker thread.

    Everything it opens is kept on the instance as soon as it is open, so that ``close`` (run on
    the loop, in the generator's ``finally``) releases it even if a hop was cancelled mid-way:
    a cancelled hop still runs to its end in its thread, so ``close`` never races with it.

    Args:
        name: The file as the user named it, for error messages.
        format: How to parse it.
        kind: Which id column a CSV header must have.
        path: A file to open (and close), or ``None`` when ``stream`` is given.
        stream: A caller's open binary or text file object, read but never closed.
        gzipped: The name ends in ``.gz``, so the content must be gzip; otherwise the magic
            bytes decide.
        csv_multiline: Read CSV quoted cells that span lines (see ``CsvParser``); no effect on
            NDJSON.
    """

    def __init__(
        self,
        name: str,
        format: SourceFormat,
        kind: RecordKind,
        *,
        path: str | os.PathLike[Any] | None = None,
        stream: Any = None,
        gzipped: bool = False,
        csv_multiline: bool = False,
    ) -> None:
        self._name = name
        self._format = format
        self._kind = kind
        self._path = path
        self._stream = stream
        self._gzipped = gzipped
        self._csv_multiline = csv_multiline
        self._closers: list[Callable[[], object]] = []
        self._parser: BlockParser | None = None

    def open(self) -> None:
        """Open the file and choose its parser.

        Raises:
            ValidationError: The file cannot be opened, or its first bytes cannot be read.
        """
        stream = self._stream
        if self._path is not None:
            try:
                stream = open(self._path, "rb")  # noqa: SIM115  # closed by close()
            except OSError as exc:
                raise cannot_open(exc, self._name) from exc
            self._closers.append(stream.close)
        try:
            # read(0) tells a text stream from a binary one without consuming anything.
            text_mode = isinstance(stream.read(0), str)
            self._parser = self._open_text(stream) if text_mode else self._open_binary(stream)
        except ValidationError:
            raise
        except READ_ERRORS as exc:
            raise read_failure(exc, self._name, 0) from exc

    def _open_text(self, stream: IO[str]) -> BlockParser:
        if self._format == "csv":
            return CsvParser(stream, self._name, self._kind, multiline=self._csv_multiline)

        def read() -> bytes:
            return encode_text(stream.read(_CHUNK_BYTES))

        return NdjsonParser(read, self._name, max_block_bytes=_CHUNK_BYTES)

    def _open_binary(self, stream: IO[bytes]) -> BlockParser:
        head = _read_bytes(stream)
        while 0 < len(head) < len(_GZIP_MAGIC):  # a pipe may hand over a single byte first
            more = _read_bytes(stream)
            if not more:
                break
            head += more
        gzipped = is_gzip(head)
        if self._gzipped and not gzipped:
            raise ValidationError(
                f"{self._name}: gzip stream is corrupt after line 0: not a gzip file "
                "(it does not start with the gzip magic bytes)",
                field="source",
                line=1,
            )
        if not gzipped and self._format == "ndjson":
            pending = [head]

            def read_plain() -> bytes:
                return pending.pop() if pending else _read_bytes(stream)

            return NdjsonParser(read_plain, self._name, max_block_bytes=_CHUNK_BYTES)
        binary: IO[bytes] | gzip.GzipFile
        if gzipped:
            binary = gzip.GzipFile(fileobj=_Rewound(head, stream), mode="rb")
        else:
            binary = io.BufferedReader(_Rewound(head, stream))
        self._closers.append(binary.close)  # leaves the caller's stream open (see _Rewound)
        if self._format == "csv":
            # utf-8-sig drops a leading BOM. surrogateescape: an invalid byte becomes a lone
            # surrogate that the row check finds, instead of an exception that would end the
            # whole file.
            text = io.TextIOWrapper(
                binary, encoding="utf-8-sig", errors="surrogateescape", newline=""
            )
            self._closers.append(text.close)
            return CsvParser(text, self._name, self._kind, multiline=self._csv_multiline)
        # read1: one decompression step per call, so the data before a corrupt spot is handed
        # over before the error surfaces, and the error names the right line.
        read1 = binary.read1

        def read_gzip() -> bytes:
            return bytes(read1(_CHUNK_BYTES))

        return NdjsonParser(read_gzip, self._name, max_block_bytes=_CHUNK_BYTES)

    def next_block(self) -> list[SourceRecord] | None:
        """The next block of records, or ``None`` at the end (see ``BlockParser.next_block``)."""
        assert self._parser is not None  # noqa: S101  # open() ran first
        return self._parser.next_block()

    def close(self) -> None:
        """Release what ``open`` opened; a caller's own stream stays open."""
        while self._closers:
            closer = self._closers.pop()
            # A failed close cannot lose data (nothing was written), and the remaining
            # resources must still be released.
            with contextlib.suppress(OSError, ValueError):
                closer()


def _read_bytes(stream: IO[bytes]) -> bytes:
    """Read a chunk from a caller's binary stream, with one system call where possible."""
    read1 = getattr(stream, "read1", None)
    data = read1(_CHUNK_BYTES) if read1 is not None else stream.read(_CHUNK_BYTES)
    if data is None:
        raise OSError("the stream is non-blocking and has no data ready")
    return bytes(data)
