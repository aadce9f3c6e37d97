"""The API's limits and the SDK's defaults, in one place.

Each number is the API's (see ``shared/spec/analytex-api.md``) unless it says it is ours.
"""

from __future__ import annotations

from collections.abc import Mapping

REGIONS: Mapping[str, str] = {
    "us": "https://analytex.userpilot.io",
    "eu": "https://analytex-eu.userpilot.io",
}
"""The API's host per region."""

API_VERSION = "2020-09-22"
"""The API version every request names in its ``X-API-Version`` header."""

MAX_RECORDS = 10_000
"""Records in one bulk request at most."""

MAX_REQUEST_BYTES = 50_000_000
"""Bytes in one request body at most (the API answers 413 beyond)."""

DEFAULT_ROWS_PER_MINUTE = 1200
"""The bulk API's processing rate."""

DEFAULT_REQUESTS_PER_MINUTE = 600
"""The real-time rate, held separately for identify and for track."""

DELETE_INTERVAL = 2.0
"""The API takes one delete request every 2 seconds."""

MAX_REJECTIONS_KEPT = 1_000
"""Rejections an ``ImportResult`` keeps whole (ours, from the contract); all are counted."""

APPEX_REGIONS: Mapping[str, str] = {"us": "https://appex.userpilot.io"}
"""The export API's ("appex") host per region; the EU host is not documented (appex-api.md)."""
