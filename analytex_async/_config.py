"""Settings and their rules: the API key, the base URL, positive numbers.

Everything a client checks at construction lives here, so the CLI and the governors apply the
same rules (and say the same thing) as ``AsyncAnalytex``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from urllib.parse import urlsplit

from ._constants import APPEX_REGIONS, REGIONS
from ._errors import ConfigurationError


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``).

    Args:
        host: A host name or IP address (IPv6 may be in brackets).

    Returns:
        True for loopback hosts.
    """
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(region: str, base_url: str | None) -> str:
    """Choose and check the API's base URL.

    Args:
        region: ``"us"`` or ``"eu"``, used when no base URL is given.
        base_url: An explicit base URL, or ``None`` to use ``ANALYTEX_BASE_URL`` or the region.

    Returns:
        The base URL without a trailing slash.

    Raises:
        ConfigurationError: The region is unknown, the URL is malformed, or it is plain
            ``http://`` to a host that is not loopback.
    """
    url = base_url if base_url is not None else os.environ.get("ANALYTEX_BASE_URL") or None
    if url is None:
        try:
            return REGIONS[region.lower()]
        except (KeyError, AttributeError):
            known = ", ".join(repr(r) for r in REGIONS)
            raise ConfigurationError(
                f"unknown region {region!r}; use one of {known} or pass base_url"
            ) from None
    return check_url("base_url", url)


def check_url(name: str, url: str) -> str:
    """Check an API base URL: http(s) with a host, no credentials or query, https off loopback.

    Args:
        name: The setting's name, for the messages (``"base_url"``, ``"appex_url"``).
        url: The URL.

    Returns:
        The URL without surrounding white space or a trailing slash.

    Raises:
        ConfigurationError: The URL is malformed, or plain ``http://`` to a host that is not
            loopback (the API key would travel in clear text).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"{name} must be a string, got {type(url).__name__}")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an http(s) URL with a host, got {url!r:.200}")
    if parts.username or parts.password:
        raise ConfigurationError(f"{name} must not carry credentials; pass api_key instead")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must not have a query or fragment: {url!r:.200}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname!r}: the API key would travel in clear "
            "text; use https:// (plain http is allowed only to loopback hosts)"
        )
    return url.rstrip("/")


def resolve_appex_url(region: str, base_url: str, appex_url: str | None) -> str | None:
    """Choose and check the export API's ("appex") base URL.

    ``appex_url``, else ``ANALYTEX_APPEX_URL``, else the client's base URL when it is not a
    region's default (an explicit ``base_url`` or ``ANALYTEX_BASE_URL``: the emulator serves
    both APIs), else the region's appex host. The EU region has none documented: ``None``,
    and the export calls then say that ``appex_url`` is needed.

    Args:
        region: The client's region.
        base_url: The client's resolved base URL.
        appex_url: An explicit appex URL, or ``None``.

    Returns:
        The URL without a trailing slash, or ``None`` when there is no default for the region.

    Raises:
        ConfigurationError: The URL is malformed or plain ``http://`` off loopback.
    """
    url = appex_url if appex_url is not None else os.environ.get("ANALYTEX_APPEX_URL") or None
    if url is not None:
        return check_url("appex_url", url)
    if base_url not in REGIONS.values():
        return base_url
    return APPEX_REGIONS.get(region.lower()) if isinstance(region, str) else None


def check_api_key(api_key: str | None) -> str:
    key = api_key if api_key is not None else os.environ.get("ANALYTEX_API_KEY")
    if key is None or key == "":
        raise ConfigurationError(
            "no API key: pass api_key=... or set the ANALYTEX_API_KEY environment variable"
        )
    if not isinstance(key, str):
        raise ConfigurationError(f"api_key must be a string, got {type(key).__name__}")
    # Refuse what cannot go in a header, without echoing the key in the message.
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigurationError(
            "api_key holds white space or characters that cannot be sent in an HTTP header"
        )
    return key


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (the API key) replaced by ``***``.

    The one redactor: the transport, the CLI and the governors use it on anything that may
    quote the key (a server's echo, a URL, an unexpected error).

    Args:
        text: Any text.
        secret: The secret to hide; ``None`` or empty leaves the text as it is.

    Returns:
        The redacted text.
    """
    if secret and secret in text:
        return text.replace(secret, "***")
    return text


def api_key_hash(api_key: str) -> str:
    """A stable, non-secret name for an API key, used to namespace the shared budget.

    It is a SHA-256 digest of the key (domain-separated, truncated to 128 bits), so keys in
    Redis name the account without revealing its API key. ``AsyncAnalytex`` computes it for the
    governor it is given; call it yourself to use a governor without a client.

    Args:
        api_key: The API key.

    Returns:
        32 lower-case hexadecimal characters.

    Raises:
        ConfigurationError: ``api_key`` is not a non-empty string.

    Examples:
        >>> len(api_key_hash("sk_live_example"))
        32
    """
    if not isinstance(api_key, str) or not api_key:
        raise ConfigurationError("api_key must be a non-empty string")
    digest = hashlib.sha256(b"analytex-async governor key\x00" + api_key.encode("utf-8"))
    return digest.hexdigest()[:32]


def is_positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_positive(value):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


def check_whole(name: str, value: object, *, minimum: int) -> None:
    """Check that a setting is a whole number of at least ``minimum``.

    Args:
        name: The setting's name, for the message.
        value: Its value.
        minimum: The least value allowed.

    Raises:
        ConfigurationError: ``value`` is not an ``int`` (``bool`` is refused) or is too small.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative" if minimum == 0 else "an"
        raise ConfigurationError(f"{name} must be {kind} integer, got {value!r}")
