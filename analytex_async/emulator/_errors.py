"""The documented error body and the exception that carries it to the response."""

from __future__ import annotations

import http
import json
from collections.abc import Mapping
from typing import cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ApiError", "answer_error", "error_body", "error_name", "error_response"]


# Fixed names: http.HTTPStatus phrases change between Python versions (413, 422).
_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_name(status: int) -> str:
    """Return the short error name for an HTTP status, e.g. ``"payload_too_large"`` for 413."""
    if status in _NAMES:
        return _NAMES[status]
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return f"http_{status}"
    return phrase.lower().replace(" ", "_").replace("-", "_").replace("'", "")


def error_body(
    status: int, error_code: str, message: str, details: Mapping[str, object] | None = None
) -> dict[str, object]:
    """Build ``{"errors": [{"error", "error_code", "message", "details"}]}``."""
    return {
        "errors": [
            {
                "error": error_name(status),
                "error_code": error_code,
                "message": message,
                "details": dict(details) if details is not None else None,
            }
        ]
    }


class ApiError(Exception):
    """A request the emulator answers with a 4xx and the documented error body."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        details: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details = details
        self.headers = dict(headers) if headers is not None else {}


def error_response(error: ApiError) -> Response:
    """Render an :class:`ApiError` as a JSON response."""
    body = error_body(error.status, error.error_code, error.message, error.details)
    return Response(
        json.dumps(body).encode(),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


async def answer_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for :class:`ApiError` and its own ``HTTPException`` (404, 405).

    Routing errors get the documented error body too, so a client sees one error shape
    whatever went wrong.
    """
    if isinstance(exc, ApiError):
        return error_response(exc)
    http_exc = cast(HTTPException, exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(http_exc.status_code, "http_error")
    message = f"{request.method} {request.url.path}: {http_exc.detail}"
    return error_response(ApiError(http_exc.status_code, code, message, headers=http_exc.headers))
