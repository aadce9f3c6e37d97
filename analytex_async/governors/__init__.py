"""Rate governors: how fast the bulk pipeline and the real-time calls may send.

An Analytex account has one budget (1,200 bulk rows a minute, 600 identify and 600 track
requests a minute) however many workers spend it. Every client has an in-process
:class:`RowGovernor` by default; :class:`RedisGovernor` keeps the budget in Redis (or Valkey),
so every worker that uses it draws on the same one::

    governor = RedisGovernor("redis://redis.internal:6379/0", rows_per_minute=1200)
    async with AsyncAnalytex(governor=governor) as client:
        await client.import_users("users.ndjson")

The :class:`Governor` and :class:`JobSlot` protocols say what a governor of your own must do.

<!-- PYTEST_DONT_REWRITE: the SDK ships a pytest plugin, so pytest would add its assertion
helpers to the namespace of every module of the package; this one keeps only its own names. -->
"""

from .._config import api_key_hash
from .._errors import GovernorUnavailableError
from ._local import Governor, JobSlot, RowGovernor
from ._redis import RedisGovernor
from ._redis_windows import RedisRequestWindow
from ._windows import RequestSlots, RequestWindow

__all__ = [
    "Governor",
    "GovernorUnavailableError",
    "JobSlot",
    "RedisGovernor",
    "RedisRequestWindow",
    "RequestSlots",
    "RequestWindow",
    "RowGovernor",
    "api_key_hash",
]
