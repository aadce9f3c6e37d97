"""Validated wire records → NDJSON batches under the API's record and byte limits.

Everything here is synchronous and pure (no I/O, no clock): the import pipeline feeds the
``Batcher`` one encoded record at a time from async code and yields to the event loop itself.

The byte limit counts the whole request body, multipart framing included, so the default
``Batcher`` leaves room for the framing ``MultipartFile`` adds with the longest upload file name
(``LONGEST_UPLOAD_FILENAME``) and a random (32-character) boundary::

    MAX_BATCH_BYTES = MAX_REQUEST_BYTES - multipart_overhead(LONGEST_UPLOAD_FILENAME, 32 chars)
                    = 50_000_000 - 248 = 49_999_752
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._constants import MAX_RECORDS, MAX_REQUEST_BYTES
from .._transport import encode_json
from ._multipart import BOUNDARY_LENGTH, LONGEST_UPLOAD_FILENAME, multipart_overhead

MAX_BATCH_BYTES = MAX_REQUEST_BYTES - multipart_overhead(
    LONGEST_UPLOAD_FILENAME, "0" * BOUNDARY_LENGTH
)
"""Bytes of NDJSON lines in one batch, so that the framed multipart body fits the request limit."""


def encode_record(wire: Mapping[str, Any]) -> bytes:
    r"""Encode one wire record as an NDJSON line.

    Compact UTF-8 JSON (non-ASCII characters as themselves, not ``\u`` escapes, which would
    take up to twice the bytes of the byte budget) followed by ``b"\n"``. JSON escapes control
    characters inside strings, so ``b"\n"`` only ever ends the line.

    Args:
        wire: A record as returned by ``_validation.bulk_record``.

    Returns:
        The line, ending with ``b"\n"``.

    Raises:
        ValidationError: The record is not JSON after all (validation should have caught it).

    Example:
        >>> encode_record({"user_id": "u1", "metadata": {"city": "Zürich"}})
        b'{"user_id":"u1","metadata":{"city":"Z\xc3\xbcrich"}}\n'
    """
    return encode_json(wire) + b"\n"


def _lines_repr(lines: Sequence[bytes]) -> str:
    # A batch may hold 50 MB: a repr (in a log line or a traceback) must not print it.
    return f"<{len(lines)} lines>"


def _positions_repr(positions: Sequence[int]) -> str:
    if not positions:
        return "<none>"
    return f"<{positions[0]}..{positions[-1]}>"


def _lines_tuple(lines: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(lines)


def _ints_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


def _size_of(batch: Batch) -> int:
    return sum(map(len, batch.lines))


@attrs.frozen
class Batch:
    r"""A run of NDJSON lines sent as one bulk request.

    A batch split in two after a ``413`` keeps its ``index`` (the batch number within the
    import never changes, so every batch the batcher made can still be named by it) and tells
    its halves apart by ``part``: the path of halvings that led to it, ``0`` for a first half
    and ``1`` for a second. ``label`` shows both: ``"7"``, then ``"7.0"`` and ``"7.1"``, then
    ``"7.1.0"`` ... The positions, not the label, say which records a batch holds.

    Attributes:
        index: The 0-based batch number within the import.
        lines: The NDJSON lines, each ending with ``b"\n"`` (a tuple; never empty).
        positions: The source position of each line, in the same order. Not contiguous:
            rejected records are skipped.
        part: The halvings that made this batch from batch ``index``; ``()`` for a whole batch.
        size: The sum of the lines' lengths (computed).

    Raises:
        ValueError: There are no lines, or not one position per line.

    Example:
        >>> batch = Batch(3, [b'{"user_id":"a"}\n', b'{"user_id":"b"}\n'], [10, 12])
        >>> batch.count, batch.size
        (2, 32)
        >>> [half.label for half in batch.halves()]
        ['3.0', '3.1']
    """

    index: int
    lines: tuple[bytes, ...] = attrs.field(converter=_lines_tuple, repr=_lines_repr)
    positions: tuple[int, ...] = attrs.field(converter=_ints_tuple, repr=_positions_repr)
    part: tuple[int, ...] = attrs.field(default=(), converter=_ints_tuple)
    size: int = attrs.field(init=False, default=attrs.Factory(_size_of, takes_self=True))

    @lines.validator
    def _check_lines(self, _attribute: object, lines: tuple[bytes, ...]) -> None:
        if not lines:
            raise ValueError("a batch holds at least one line")

    @positions.validator
    def _check_positions(self, _attribute: object, positions: tuple[int, ...]) -> None:
        if len(positions) != len(self.lines):
            raise ValueError(
                f"a batch needs one position per line: {len(self.lines)} lines, "
                f"{len(positions)} positions"
            )

    @property
    def count(self) -> int:
        """The number of records (lines) in the batch."""
        return len(self.lines)

    @property
    def label(self) -> str:
        """The batch's name for logs and messages: ``"7"``, or ``"7.1.0"`` for a part of it."""
        return ".".join(map(str, (self.index, *self.part)))

    def halves(self) -> tuple[Batch, Batch]:
        """Split the batch at its middle line, for a server that answered ``413``.

        Both halves keep ``index`` and add ``0`` (first) or ``1`` (second) to ``part``. With an
        odd count the second half holds the extra line.

        Returns:
            The first and second halves: together exactly this batch's lines, in order.

        Raises:
            ValueError: The batch holds one line, which cannot be split.
        """
        if self.count < 2:
            raise ValueError(
                f"batch {self.label} holds a single record ({self.size:,} bytes) and cannot "
                "be split"
            )
        middle = self.count // 2
        return (
            Batch(self.index, self.lines[:middle], self.positions[:middle], (*self.part, 0)),
            Batch(self.index, self.lines[middle:], self.positions[middle:], (*self.part, 1)),
        )


def _positive_int(name: str, value: object, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,} (the API's limit), got {value:,}")
    return value


class Batcher:
    r"""Groups NDJSON lines into batches of at most ``max_records`` lines and ``max_bytes`` bytes.

    Lines go in one at a time with ``add``; a batch comes out when the next line does not fit
    in it (so every batch is as full as the limits allow), and the last, partial batch comes
    out of ``flush``. Every line added ends up in exactly one batch, in order; batches come out
    in order, numbered from 0, and are never empty.

    Args:
        max_records: Lines per batch at most, 1 to 10,000.
        max_bytes: Bytes of lines per batch at most. The default leaves room for the multipart
            framing of a ``MultipartFile`` with the default filename and a random boundary.

    Raises:
        ValueError: ``max_records`` is not 1 to 10,000, or ``max_bytes`` is not positive.

    Example:
        >>> batcher = Batcher(max_records=2)
        >>> [batcher.add(position, b"{}\n") for position in range(3)]
        [None, None, Batch(index=0, lines=<2 lines>, positions=<0..1>, part=(), size=6)]
        >>> batcher.flush()
        Batch(index=1, lines=<1 lines>, positions=<2..2>, part=(), size=3)
    """

    __slots__ = ("_index", "_lines", "_positions", "_size", "max_bytes", "max_records")

    def __init__(self, *, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self.max_records = _positive_int("max_records", max_records, MAX_RECORDS)
        self.max_bytes = _positive_int("max_bytes", max_bytes)
        self._index = 0
        self._lines: list[bytes] = []
        self._positions: list[int] = []
        self._size = 0

    def __repr__(self) -> str:
        return (
            f"Batcher(max_records={self.max_records}, max_bytes={self.max_bytes}, "
            f"pending={len(self._lines)} lines / {self._size} bytes)"
        )

    def fits_alone(self, line: bytes) -> bool:
        """Whether a line fits in a batch at all.

        A record whose line is longer than ``max_bytes`` can never be sent; the pipeline
        rejects it (naming its size and the limit) instead of calling ``add``.

        Args:
            line: An encoded record.

        Returns:
            ``True`` when ``len(line) <= max_bytes``.
        """
        return len(line) <= self.max_bytes

    def add(self, position: int, line: bytes) -> Batch | None:
        r"""Add one line; return the batch it closed, if any.

        Args:
            position: The record's position in the source.
            line: The encoded record, ending with ``b"\n"`` (see ``encode_record``).

        Returns:
            The pending batch when ``line`` does not fit in it (``line`` then starts the next
            batch), else ``None``.

        Raises:
            ValueError: The line does not end with ``b"\n"``, or is longer than ``max_bytes``
                (check ``fits_alone`` first).
        """
        if not line.endswith(b"\n"):
            raise ValueError(f'an NDJSON line must end with b"\\n": {line[-40:]!r}')
        if not self.fits_alone(line):
            raise ValueError(
                f"the record at position {position} is {len(line):,} bytes encoded, over the "
                f"{self.max_bytes:,}-byte batch limit"
            )
        closed = None
        if self._lines and (
            len(self._lines) >= self.max_records or self._size + len(line) > self.max_bytes
        ):
            closed = self._take()
        self._lines.append(line)
        self._positions.append(position)
        self._size += len(line)
        return closed

    def flush(self) -> Batch | None:
        """Return the pending batch, even if it could take more lines.

        Adding may go on afterwards; the next batch takes the next index.

        Returns:
            The last, partial batch, or ``None`` when no line is pending.
        """
        return self._take() if self._lines else None

    def _take(self) -> Batch:
        batch = Batch(self._index, self._lines, self._positions)
        self._index += 1
        self._lines = []
        self._positions = []
        self._size = 0
        return batch
