"""What a sync remembers of a record: digests of it as the source gave it and of its canonical form.

The state holds, per record id, 32 bytes: a 16-byte BLAKE2b digest of the record exactly as the
source gave it (the *source* digest: of its ``repr``, which C computes for a dict of primitives
at about the cost of one JSON encoding, and which tells apart every type the validation does),
then one of the record's canonical form (keys sorted, one encoding, an integral float as its
integer). The canonical digest decides whether a record changed; the source digest is a
shortcut: a record that is exactly what completed before (most of them, night after night) is
recognised before it is even validated, encoded or parsed. Only a record that differs is
validated, encoded and put in canonical form.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from json.scanner import c_make_scanner  # type: ignore[attr-defined]
from typing import Any

from .._models import Company, User
from .._types import RecordKind

DIGEST_BYTES = 16
"""Bytes of each of the two digests; a state value is both, 32 bytes."""
UNKNOWN = b""
"""Stored for an id whose record may be changing on the server: equal to no digest."""
ID_KEYS: dict[RecordKind, str] = {"user": "user_id", "company": "company_id"}
LARGEST_EXACT_FLOAT = 2.0**53


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's C scanner, called directly: json.loads adds an encoding check and a whitespace match
# per call, which cost as much as scanning a small record does.
_scan = c_make_scanner(json.JSONDecoder()) if c_make_scanner is not None else None
# json's C encoder with sorted keys, made once (json.dumps makes one per call).
_encode_sorted = (
    c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", True, False, False)
    if c_make_encoder is not None
    else None
)


def _canonical_text(record: Mapping[str, Any]) -> str:
    if _encode_sorted is not None:
        return "".join(_encode_sorted(record, 0))
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def source_id(record: object, kind: RecordKind) -> str | None:
    """The id a record carries, read as the validation will: only a string id can be valid.

    Args:
        record: A record as the source gave it.
        kind: ``"user"`` or ``"company"``.

    Returns:
        The id, or ``None`` when the record cannot be valid (no string id where it belongs).
    """
    key = ID_KEYS[kind]
    if type(record) is dict or isinstance(record, Mapping):
        value = record.get(key)
    elif isinstance(record, (User, Company)):
        value = getattr(record, key, None)
    else:
        return None
    return value if isinstance(value, str) else None


def source_digest(record: object) -> bytes:
    """The digest of a record exactly as the source gave it (its ``repr``): 16 bytes.

    Two records with the same digest are the same record, down to the type of each value
    (``1`` and ``1.0`` and ``True``, a tuple and a list, differ), so one whose digest is that
    of a record the server completed is valid and unchanged without being checked again.

    Args:
        record: A record as the source gave it.

    Examples:
        >>> source_digest({"user_id": "u1"}) == source_digest({"user_id": "u1"})
        True
        >>> source_digest({"user_id": "u1", "n": 1}) == source_digest({"user_id": "u1", "n": 1.0})
        False
    """
    text = repr(record).encode("utf-8", "backslashreplace")
    return hashlib.blake2b(text, digest_size=DIGEST_BYTES).digest()


def canonical_digest(line: bytes, kind: RecordKind) -> tuple[str, bytes]:
    r"""A wire record's id and the digest of its canonical form.

    The canonical form is the record's JSON with every object's keys sorted, no spaces, and
    characters as themselves (never ``\u`` escapes); a float with an integral value counts as
    that integer (``1.0`` as ``1``, as a DataFrame column with a null would hold it). So the
    same record with its keys in another order, or written with other escapes or spacing, has
    the same digest.

    Args:
        line: The record's NDJSON line, as the pipeline encoded it.
        kind: ``"user"`` or ``"company"``.

    Returns:
        ``(id, digest)``, the digest 16 bytes of BLAKE2b.

    Examples:
        >>> a = canonical_digest(b'{"user_id":"u1","metadata":{"a":1,"b":"x"}}', "user")
        >>> b = canonical_digest(b'{"metadata":{"b":"x","a":1.0},"user_id":"u1"}', "user")
        >>> a == b, a[0]
        (True, 'u1')
    """
    text = line.decode("utf-8")
    record = _scan(text, 0)[0] if _scan is not None else json.loads(text)
    metadata = record.get("metadata")
    if metadata and float in map(type, metadata.values()):
        for key, value in metadata.items():
            if (
                type(value) is float
                and value.is_integer()
                and -LARGEST_EXACT_FLOAT <= value <= LARGEST_EXACT_FLOAT
            ):
                metadata[key] = int(value)
    canonical = _canonical_text(record).encode("utf-8")
    digest = hashlib.blake2b(canonical, digest_size=DIGEST_BYTES).digest()
    return record[ID_KEYS[kind]], digest


def rejected_id(record: object, kind: RecordKind) -> str | None:
    """The id a rejected record carries, when one can be read from it.

    Args:
        record: ``Rejection.record``: a mapping, a ``User`` / ``Company``, or a line of text.
        kind: ``"user"`` or ``"company"``.

    Returns:
        The id, or ``None`` when it has no usable one.
    """
    key = ID_KEYS[kind]
    if isinstance(record, (User, Company)):
        value: object = getattr(record, key)
    elif isinstance(record, Mapping):
        value = record.get(key)
    elif isinstance(record, (str, bytes)):
        try:
            parsed = json.loads(record)
        except ValueError:
            return None
        value = parsed.get(key) if isinstance(parsed, dict) else None
    else:
        value = None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and value.strip() else None
