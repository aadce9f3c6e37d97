"""A small, strict ``multipart/form-data`` reader for the one-file upload the API takes.

The body has already been read (and bounded by ``max_bytes``), so this works on bytes:
no temporary files, no streaming state, and no dependency beyond the standard library.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import attrs

from ._errors import ApiError

__all__ = ["FilePart", "parse_file_upload", "parse_header_params"]

_PARAM_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf';\s*({_PARAM_NAME})\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')
_MAX_PARTS = 64


@attrs.frozen
class FilePart:
    """The part named ``file``: its bytes, and the filename and Content-Type the client gave."""

    data: bytes
    filename: str | None
    content_type: str | None = None


def parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``main/value; key=value; key="quoted"`` into the main value and its parameters.

    Parameter names are lower-cased; quoted values are unquoted.
    """
    main, sep, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(sep + rest):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return main.strip().lower(), params


def _malformed(problem: str) -> ApiError:
    return ApiError(400, "invalid_multipart", f"the multipart body is malformed: {problem}")


def _part_headers(block: bytes) -> dict[str, str]:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("part headers are not valid UTF-8") from None
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _malformed(f"bad part header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return headers


def _filename(params: dict[str, str]) -> str | None:
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    return params.get("filename")


def _boundary(content_type: str) -> bytes:
    _, params = parse_header_params(content_type)
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        raise _malformed("the Content-Type header has no valid boundary parameter")
    return boundary.encode("ascii")


def _next_part(body: bytes, pos: int, delimiter: bytes) -> tuple[dict[str, str], bytes, int]:
    """Read the part that starts just after a delimiter at ``pos``.

    Returns:
        The part's headers, its content, and the position just after the next delimiter.
    """
    while body[pos : pos + 1] in (b" ", b"\t"):  # transport padding
        pos += 1
    if not body.startswith(b"\r\n", pos):
        raise _malformed("the body ends before the closing boundary")
    pos += 2
    if body.startswith(b"\r\n", pos):  # a part without headers
        headers: dict[str, str] = {}
        content_start = pos + 2
    else:
        header_end = body.find(b"\r\n\r\n", pos)
        if header_end < 0:
            raise _malformed("a part's headers are not terminated by a blank line")
        headers = _part_headers(body[pos:header_end])
        content_start = header_end + 4
    content_end = body.find(b"\r\n" + delimiter, content_start)
    if content_end < 0:
        raise _malformed("the closing boundary is missing")
    return headers, body[content_start:content_end], content_end + 2 + len(delimiter)


def parse_file_upload(body: bytes, content_type: str) -> FilePart:
    """Return the one part named ``file`` from a ``multipart/form-data`` body.

    Args:
        body: The whole request body.
        content_type: The request's Content-Type header, with its ``boundary`` parameter.

    Returns:
        The file part.

    Raises:
        ApiError: 400 ``invalid_multipart`` when the framing is wrong, ``missing_file_part``
            when no part is named ``file`` (or more than one is).
    """
    delimiter = b"--" + _boundary(content_type)
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble before the first boundary is allowed, and ignored
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise _malformed("the boundary from the Content-Type header never appears")
        pos = start + 2 + len(delimiter)
    files: list[FilePart] = []
    parts = 0
    while not body.startswith(b"--", pos):  # "--" right after a delimiter closes the body
        headers, content, pos = _next_part(body, pos, delimiter)
        parts += 1
        if parts > _MAX_PARTS:
            raise _malformed(f"more than {_MAX_PARTS} parts")
        disposition, params = parse_header_params(headers.get("content-disposition", ""))
        if disposition != "form-data":
            raise _malformed('every part needs "Content-Disposition: form-data; name=..."')
        if params.get("name") == "file":
            files.append(FilePart(content, _filename(params), headers.get("content-type")))
    if len(files) != 1:
        problem = "no part is named" if not files else "more than one part is named"
        raise ApiError(
            400,
            "missing_file_part",
            f'{problem} "file"; send the NDJSON as one part named "file"',
            {"parts": parts, "file_parts": len(files)},
        )
    return files[0]
