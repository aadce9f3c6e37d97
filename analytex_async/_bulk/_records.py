"""One verdict per record: what the import sends, and which caller iterables it reads directly."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TypeGuard

from .._errors import ValidationError
from .._events import event_record
from .._models import Company, User
from .._types import RecordKind
from .._validation import bulk_record
from ._batching import Batcher, encode_record


def plain_iterable(source: object) -> TypeGuard[Iterable[object]]:
    """Whether ``source`` is a caller's sync iterable of records (not a file, path or record)."""
    return (
        isinstance(source, Iterable)
        and not isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike, Mapping))
        and not isinstance(source, (User, Company, AsyncIterable))
        and not callable(getattr(source, "read", None))
    )


def check_record(
    record: object, kind: RecordKind, batcher: Batcher, error: str | None = None
) -> bytes | str:
    """The pipeline's verdict on one record: its NDJSON line, or why it is rejected.

    The one place the import (and the command line's dry run) decides what is sent: the
    source's decoding error, the validation rules, the encoding, and the size a batch allows.

    Args:
        record: The record as the source yielded it.
        kind: ``"user"`` or ``"company"``.
        batcher: The batcher whose limits apply.
        error: Why the source could not decode it, if it could not.

    Returns:
        The encoded line to send, or the reason it cannot be sent.
    """
    if error is not None:
        return error
    try:
        wire = event_record(record) if kind == "event" else bulk_record(record, kind)
        line = encode_record(wire)
    except ValidationError as exc:
        return str(exc)
    if not batcher.fits_alone(line):
        return (
            f"the encoded record is {len(line):,} bytes, more than a request may carry "
            f"({batcher.max_bytes:,} bytes)"
        )
    return line
