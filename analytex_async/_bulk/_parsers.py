"""Parsers: the lines of a file become ``SourceRecord``s, a block of lines per call.

``BlockParser`` owns what every file format shares: blocks of at most ``_BLOCK_LINES`` lines
(so that a call is one short hop to a worker thread), the end of the input, record positions,
and the failure that ends a read, raised only after the records read before it were handed
over. Its subclasses, ``NdjsonParser`` here and ``CsvParser`` in ``_csv_parser``, only say how
a block of lines (or CSV rows) becomes records. Parsers do no I/O of their own: they pull from
whatever ``_files`` gives them, and run entirely in a worker thread.
"""

from __future__ import annotations

import abc
import gzip
import json
import zlib
from collections.abc import Callable
from typing import Any

import attrs

from .._errors import ValidationError

# Lines (or CSV rows) per block. Blocks are kept small so that few parsed records are waiting
# when the garbage collector runs: waiting records get promoted, and enough promotions trigger
# full collections, which pause the event loop too (in a large test process, 2,000-line blocks
# led to 100+ ms pauses and 500-line blocks did not; 100 leaves a margin). The hop to the thread
# (~100 µs) stays noise at this size.
_BLOCK_LINES = 100
# A line this long cannot be a record (a batch holds at most 50 MB): it is almost certainly not
# NDJSON at all (a JSON array on one line, a binary file). Refusing it bounds memory.
_MAX_LINE_BYTES = 64 << 20
# The raw text kept in a SourceRecord that could not be decoded, so that a rejection report of a
# bad file stays readable and small.
_RAW_CHARS = 1_000
_BOM = b"\xef\xbb\xbf"

# What a damaged gzip stream raises while being read. BadGzipFile is also an OSError, so gzip
# damage is told apart from an I/O error before OSError is considered.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
# Everything that means "the input could not be read any further" (ValueError: a closed file,
# or text that could not be decoded by the stream itself).
READ_ERRORS = (*GZIP_ERRORS, OSError, ValueError)


@attrs.frozen
class SourceRecord:
    """One record read from a source, with where it came from.

    Attributes:
        position: The record's zero-based index among all the records of the source. Blank
            lines are not records and take no position; records that could not be decoded do.
        line: The one-based line of the file where the record starts, or ``None`` when the
            source was an iterable.
        record: The decoded record: a ``dict`` for a file record, or exactly what the caller's
            iterable yielded. When ``error`` is set, the raw text of the line instead (invalid
            UTF-8 replaced, cut to about 1,000 characters).
        error: Why the raw input could not be decoded into a record, or ``None``.
    """

    position: int
    line: int | None
    record: Any
    error: str | None = None


def read_failure(exc: BaseException, name: str, lines_done: int) -> ValidationError:
    """The error that ends a file read, naming the last line that was read whole.

    Args:
        exc: What reading raised (one of ``READ_ERRORS``); it becomes the ``__cause__``.
        name: The file, as the user named it.
        lines_done: The lines read whole before the failure.

    Returns:
        A ``ValidationError`` on ``field="source"`` pointing at the line after ``lines_done``.
    """
    if isinstance(exc, GZIP_ERRORS):
        detail = str(exc) or type(exc).__name__
        message = f"{name}: gzip stream is corrupt after line {lines_done}: {detail}"
    else:
        message = f"{name}: cannot read after line {lines_done}: {exc}"
    error = ValidationError(message, field="source", line=lines_done + 1)
    error.__cause__ = exc
    return error


def encode_text(text: str) -> bytes:
    """Text read from a text stream, back as UTF-8, with undecodable bytes restored.

    A stream opened with ``errors="surrogateescape"`` carries invalid bytes as lone surrogates:
    encoding them back lets the line be reported as invalid UTF-8 like in a binary file. Any
    other lone surrogate is kept (``surrogatepass``) and fails the same UTF-8 check.

    Args:
        text: What the text stream returned.

    Returns:
        The bytes the text came from, as far as they can be recovered.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def raw_text(data: bytes) -> str:
    """A bounded, printable rendering of bytes that did not decode.

    Args:
        data: The bytes as read.

    Returns:
        Their UTF-8 text, invalid bytes replaced, cut to about 1,000 characters.
    """
    return data[: _RAW_CHARS * 4].decode("utf-8", "replace")[:_RAW_CHARS]


class BlockParser(abc.ABC):
    """Turns a file into blocks of records; subclasses say how a block of lines becomes records.

    A read failure does not throw away the records parsed before it: the block that hits it is
    returned as it is, and the failure is raised by the next call, so every good record reaches
    the caller before the error that names the line after them.

    Args:
        name: The file, as the user named it, for error messages.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._position = 0  # the position the next record takes
        self._done = False
        self._failure: ValidationError | None = None

    def next_block(self) -> list[SourceRecord] | None:
        """Parse the next block of lines.

        Returns:
            The block's records (maybe ``[]`` after a run of blank lines), or ``None`` at the
            end of the input.

        Raises:
            ValidationError: The input cannot be read further (an I/O error, a corrupt gzip
                stream, an unusable CSV header, ...); raised once the records before it have
                been returned.
        """
        out: list[SourceRecord] = []
        if not self._done:
            try:
                self._done = self._fill(out, _BLOCK_LINES)
            except ValidationError as exc:
                self._stop(exc)
            except READ_ERRORS as exc:
                self._stop(read_failure(exc, self.name, self._lines_read()))
        if out or not self._done:
            return out
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return None

    def _stop(self, failure: ValidationError) -> None:
        self._failure = failure
        self._done = True

    @abc.abstractmethod
    def _fill(self, out: list[SourceRecord], max_lines: int) -> bool:
        """Append the records of the next ``max_lines`` lines (or fewer) to ``out``.

        One loop per block, not a call per line: this is the hot path of reading a file.
        Records appended before an exception are kept and handed over. Raise
        ``ValidationError`` to end the read with that error, and let what reading raises
        (``READ_ERRORS``) propagate: ``next_block`` turns it into ``read_failure``.

        Returns:
            ``True`` once the input is exhausted.
        """

    @abc.abstractmethod
    def _lines_read(self) -> int:
        """The number of lines read whole so far, for naming where a read failed."""

    def _bad_record(self, line: int, raw: str, reason: str) -> SourceRecord:
        # Bad lines take a position too: the rejection report counts them among the records.
        record = SourceRecord(self._position, line, raw[:_RAW_CHARS], reason)
        self._position += 1
        return record


class NdjsonParser(BlockParser):
    """One JSON value per line, from a byte stream that arrives in chunks.

    Args:
        read: Returns the next chunk of bytes, ``b""`` at the end.
        name: The file, as the user named it.
        max_block_bytes: Stop reading for the current block once this much was read, so a run
            of blank lines or a long line cannot make one hop to the thread arbitrarily long.
    """

    def __init__(self, read: Callable[[], bytes], name: str, *, max_block_bytes: int) -> None:
        super().__init__(name)
        self._read = read
        self._max_block_bytes = max_block_bytes
        self._lines: list[bytes] = []
        self._next = 0  # index of the next line of self._lines to parse
        self._partial = bytearray()  # the start of a line whose end has not been read yet
        self._line = 0  # the number of the last line parsed
        self._input_done = False

    def _lines_read(self) -> int:
        return self._line

    def _fill(self, out: list[SourceRecord], max_lines: int) -> bool:
        consumed = 0
        read = 0
        while consumed < max_lines:
            if self._next < len(self._lines):
                line = self._lines[self._next]
                self._next += 1
                consumed += 1
                self._line += 1
                record = self._parse(line)
                if record is not None:
                    out.append(record)
                continue
            if self._input_done:
                return True
            if read >= self._max_block_bytes:
                break  # this block read its share of input: hand over what it has
            chunk = self._read()
            read += len(chunk)
            self._take(chunk)
        return False

    def _take(self, chunk: bytes) -> None:
        """Split a chunk into complete lines (only called once the previous ones are parsed)."""
        self._next = 0
        if not chunk:
            self._input_done = True
            self._lines = [bytes(self._partial)] if self._partial else []
            self._partial.clear()
            return
        if b"\n" not in chunk:
            self._partial += chunk
            self._lines = []
            if len(self._partial) > _MAX_LINE_BYTES:
                raise ValidationError(
                    f"{self.name}: line {self._line + 1} is longer than "
                    f"{_MAX_LINE_BYTES >> 20} MiB; is this an NDJSON file "
                    "(one JSON object per line)?",
                    field="source",
                    line=self._line + 1,
                )
            return
        lines = chunk.split(b"\n")
        if self._partial:
            lines[0] = bytes(self._partial) + lines[0]
        self._partial = bytearray(lines.pop())
        self._lines = lines

    def _parse(self, line: bytes) -> SourceRecord | None:
        """The record of one line, or ``None`` for a blank line."""
        number = self._line
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._bad_record(
                number,
                raw_text(line),
                f"line {number} is not valid UTF-8 "
                f"(byte 0x{line[exc.start]:02x} at offset {exc.start})",
            )
        if not text or text.isspace():
            return None
        try:
            value = _decode_json(text)
        except json.JSONDecodeError as exc:
            return self._bad_record(number, text, f"not valid JSON: {exc.msg} (column {exc.colno})")
        except ValueError as exc:  # e.g. an integer longer than Python's digit limit
            return self._bad_record(number, text, f"not valid JSON: {exc}")
        except RecursionError:
            return self._bad_record(number, text, "not valid JSON: nested too deeply")
        record = SourceRecord(self._position, number, value)
        self._position += 1
        return record


# The decoder's C scanner: set in JSONDecoder.__init__, absent from the type stubs.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode_json(text: str) -> Any:
    """``json.loads``, without its per-call overhead in the common case.

    The C scanner decodes a line that starts with its value directly; a line with leading white
    space, trailing garbage or an error goes through ``json.loads``, which accepts or explains it.
    The scanner holds the GIL for a whole call, so sharing it between threads is safe.
    """
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return json.loads(text)
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)
    return value
