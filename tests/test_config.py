"""Configuration: key and URL resolution, refusals, and the client's lifecycle."""

from __future__ import annotations

import httpx
import pytest
import respx

from analytex_async import AsyncAnalytex, ConfigurationError

from .conftest import API_KEY, BASE_URL

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANALYTEX_API_KEY", raising=False)
    monkeypatch.delenv("ANALYTEX_BASE_URL", raising=False)


async def test_missing_key_raises_configuration_error_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="ANALYTEX_API_KEY"):
        AsyncAnalytex()


async def test_empty_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no API key"):
        AsyncAnalytex(api_key="")


async def test_key_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTEX_API_KEY", API_KEY)
    async with AsyncAnalytex() as client:
        assert client.base_url == "https://analytex.userpilot.io"


@pytest.mark.parametrize("bad", ["key with space", "key\nX-Injected: 1", "kéy", "tab\tkey"])
async def test_key_that_cannot_be_a_header_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AsyncAnalytex(api_key=bad)
    assert bad not in str(info.value)


@pytest.mark.parametrize(
    ("region", "url"),
    [("us", "https://analytex.userpilot.io"), ("eu", "https://analytex-eu.userpilot.io"),
     ("EU", "https://analytex-eu.userpilot.io")],
)  # fmt: skip
async def test_region_picks_the_host(region: str, url: str) -> None:
    async with AsyncAnalytex(api_key=API_KEY, region=region) as client:
        assert client.base_url == url


async def test_unknown_region_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown region 'mars'"):
        AsyncAnalytex(api_key=API_KEY, region="mars")


async def test_base_url_beats_region_and_loses_its_trailing_slash() -> None:
    async with AsyncAnalytex(
        api_key=API_KEY, region="eu", base_url="https://proxy.example.com/analytex/"
    ) as client:
        assert client.base_url == "https://proxy.example.com/analytex"


async def test_base_url_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTEX_BASE_URL", "https://custom.example.com/")
    async with AsyncAnalytex(api_key=API_KEY) as client:
        assert client.base_url == "https://custom.example.com"


async def test_a_path_prefix_in_base_url_is_kept_on_the_wire() -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://proxy.example.com/analytex/v1/identify").respond(202)
        async with AsyncAnalytex(
            api_key=API_KEY, base_url="https://proxy.example.com/analytex/"
        ) as client:
            await client.identify("u1")
        assert route.called


@pytest.mark.parametrize(
    "url", ["http://analytex.userpilot.io", "http://10.0.0.5:8000", "http://example.com/"]
)
async def test_plain_http_is_refused_to_other_hosts(url: str) -> None:
    with pytest.raises(ConfigurationError, match="clear text"):
        AsyncAnalytex(api_key=API_KEY, base_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000", "http://127.0.0.1:9", "http://127.5.6.7", "http://[::1]:8000/"],
)
async def test_plain_http_is_allowed_to_loopback(url: str) -> None:
    async with AsyncAnalytex(api_key=API_KEY, base_url=url) as client:
        assert client.base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com", "analytex.userpilot.io", "https://", "https://u:p@example.com",
     "https://example.com/?a=1"],
)  # fmt: skip
async def test_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        AsyncAnalytex(api_key=API_KEY, base_url=url)


@pytest.mark.parametrize(
    ("option", "value"),
    [("timeout", 0), ("timeout", -1.0), ("max_retries", -1), ("max_retries", 1.5),
     ("rows_per_minute", 0), ("requests_per_minute", 0), ("requests_per_minute", 2.5),
     ("max_concurrency", 0)],
)  # fmt: skip
async def test_bad_numeric_options_are_refused(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL, **{option: value})  # type: ignore[arg-type]


async def test_own_http_client_is_closed_and_aclose_is_idempotent() -> None:
    client = AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL)
    inner = client._http_client
    await client.aclose()
    await client.aclose()
    assert inner.is_closed
    assert client.is_closed


async def test_caller_http_client_is_used_and_left_open() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http_client:
        async with AsyncAnalytex(
            api_key=API_KEY, base_url=BASE_URL, http_client=http_client
        ) as client:
            await client.identify("u1")
        assert not http_client.is_closed
    assert [str(r.url) for r in seen] == [f"{BASE_URL}/v1/identify"]


async def test_calls_on_a_closed_client_fail_clearly() -> None:
    client = AsyncAnalytex(api_key=API_KEY, base_url=BASE_URL)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.identify("u1")
