"""The public face: exactly ``__all__``, every contract name present, every name documented."""

from __future__ import annotations

import inspect

import analytex_async
import analytex_async.emulator
import analytex_async.governors

CONTRACT_NAMES = {
    "AsyncAnalytex",
    "User", "Company", "Job", "JobStatus", "Rejection", "ImportResult", "ImportProgress",
    "AnalytexError", "ConfigurationError", "ValidationError", "JobFailedError", "APIError",
    "ImportAbortedError", "APIConnectionError", "APITimeoutError", "APIStatusError",
    "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
    "ConflictError", "PayloadTooLargeError", "RateLimitError", "InternalServerError",
    "SyncState", "SQLiteSyncState", "RedisSyncState",
}  # fmt: skip


def test_public_names_are_exactly_all() -> None:
    public = {
        name
        for name, value in vars(analytex_async).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(analytex_async.__all__) - {"__version__"}
    assert analytex_async.__all__ == sorted(analytex_async.__all__, key=str)


def test_pytest_leaves_the_public_modules_names_as_they_are() -> None:
    """The pytest11 plugin makes pytest rewrite the package's asserts; the public modules opt
    out, so ``dir()`` of each shows only its own names under pytest too."""
    for module in (analytex_async, analytex_async.emulator, analytex_async.governors):
        assert [name for name in dir(module) if not name.isidentifier()] == [], module


def test_every_contract_name_is_exported() -> None:
    assert set(analytex_async.__all__) >= CONTRACT_NAMES


def test_every_public_name_has_a_docstring() -> None:
    for name in analytex_async.__all__:
        obj = getattr(analytex_async, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_error_hierarchy_matches_the_contract() -> None:
    a = analytex_async
    assert issubclass(a.ConfigurationError, a.AnalytexError)
    assert issubclass(a.ValidationError, a.AnalytexError)
    assert issubclass(a.JobFailedError, a.AnalytexError)
    assert issubclass(a.APIError, a.AnalytexError)
    assert issubclass(a.ImportAbortedError, a.APIError)
    assert issubclass(a.APITimeoutError, a.APIConnectionError)
    assert issubclass(a.APIConnectionError, a.APIError)
    for cls in (
        a.BadRequestError, a.AuthenticationError, a.PermissionDeniedError, a.NotFoundError,
        a.ConflictError, a.PayloadTooLargeError, a.RateLimitError, a.InternalServerError,
    ):  # fmt: skip
        assert issubclass(cls, a.APIStatusError)
    assert issubclass(a.APIStatusError, a.APIError)


def test_version_is_a_string() -> None:
    assert isinstance(analytex_async.__version__, str)
    assert analytex_async.__version__.count(".") >= 2


def test_the_client_is_one_class_that_holds_its_stages() -> None:
    """Composition: no base class carries a slice of the client; each call is its own method."""
    client = analytex_async.AsyncAnalytex
    assert client.__bases__ == (object,)
    calls = [
        "identify", "identify_company", "track", "bulk_identify", "bulk_identify_companies",
        "get_job", "list_jobs", "wait_for_job", "delete_users", "delete_companies",
        "import_users", "import_companies", "import_events", "sync_users", "sync_companies",
    ]  # fmt: skip
    for name in calls:
        method = vars(client)[name]
        assert inspect.iscoroutinefunction(method), name
        assert "Args:" in (inspect.getdoc(method) or "") or name == "list_jobs", name
