"""analytex-async: the asyncio-native (and trio) SDK for the Analytex server API.

Examples:
    ```python
    from analytex_async import AsyncAnalytex

    async with AsyncAnalytex() as client:  # reads ANALYTEX_API_KEY
        await client.identify("user_001", metadata={"name": "Jane"}, company="company_001")
    ```

<!-- PYTEST_DONT_REWRITE: the SDK ships a pytest plugin, so pytest would add its assertion
helpers to the namespace of every module of the package; this one keeps only its own names. -->
"""

from ._bulk._sync import SyncResult
from ._bulk._sync_state import SQLiteSyncState, SyncState
from ._client import AsyncAnalytex
from ._delivery._background import BackgroundDelivery
from ._delivery._policy import DeliveryPolicy, DeliveryStats
from ._errors import (
    AnalytexError,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ErrorDetail,
    ExportFailedError,
    GovernorUnavailableError,
    ImportAbortedError,
    InternalServerError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitError,
    ValidationError,
)
from ._events import Event
from ._exports._models import Export, ExportFile
from ._models import (
    Company,
    ImportProgress,
    ImportResult,
    Job,
    JobStatus,
    Rejection,
    User,
)
from ._redis_sync_state import RedisSyncState
from ._retry import RetryPolicy
from ._version import __version__
from .governors._local import Governor, JobSlot, RowGovernor

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AnalytexError",
    "AsyncAnalytex",
    "AuthenticationError",
    "BackgroundDelivery",
    "BadRequestError",
    "Company",
    "ConfigurationError",
    "ConflictError",
    "DeliveryPolicy",
    "DeliveryStats",
    "ErrorDetail",
    "Event",
    "Export",
    "ExportFailedError",
    "ExportFile",
    "Governor",
    "GovernorUnavailableError",
    "ImportAbortedError",
    "ImportProgress",
    "ImportResult",
    "InternalServerError",
    "Job",
    "JobFailedError",
    "JobSlot",
    "JobStatus",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitError",
    "RedisSyncState",
    "Rejection",
    "RetryPolicy",
    "RowGovernor",
    "SQLiteSyncState",
    "SyncResult",
    "SyncState",
    "User",
    "ValidationError",
    "__version__",
]
