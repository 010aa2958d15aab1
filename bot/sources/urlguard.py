"""The private-network guard and URL hygiene shared by every network source.

- :func:`check_url` (async) and :func:`check_url_sync` (worker threads) refuse URLs that are
  not http(s) or whose host is, or resolves to, a private, loopback, link-local, multicast or
  reserved address (server-side request forgery), before anything connects;
- :class:`PublicOnlyResolver` applies the same rule to the addresses a connection really uses,
  so a DNS answer that changes between the check and the connection cannot slip through;
- :func:`safe_url` and :func:`redact_urls` keep credentials and signed query strings out of
  logs and messages.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable

import yarl
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from bot.sources.errors import SourceUnavailableError, UnsafeURLError

_URL_RE = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"<>]+")


def safe_url(url: str | yarl.URL) -> str:
    """A URL fit for logs and messages: scheme, host, port and path only.

    Parameters
    ----------
    url : str or yarl.URL
        Any URL, possibly with credentials, a signed query string or a fragment.

    Returns
    -------
    str
        ``scheme://host[:port]/path``, or ``"<invalid url>"`` when it cannot be parsed.
    """
    try:
        parsed = yarl.URL(url) if isinstance(url, str) else url
        if not parsed.absolute:
            return parsed.path or "<relative url>"
        port = f":{parsed.explicit_port}" if parsed.explicit_port is not None else ""
        return f"{parsed.scheme}://{parsed.raw_host}{port}{parsed.raw_path}"
    except (ValueError, TypeError):
        return "<invalid url>"


def redact_urls(text: str) -> str:
    """Replace every URL inside ``text`` with its :func:`safe_url` form."""
    return _URL_RE.sub(lambda m: safe_url(m.group(0)), text)


def is_public_address(address: str) -> bool:
    """Whether an IP address is on the public internet.

    Parameters
    ----------
    address : str
        An IPv4 or IPv6 address (a zone suffix such as ``%eth0`` is ignored).

    Returns
    -------
    bool
        False for private, loopback, link-local, multicast, reserved, unspecified and
        shared (carrier-grade NAT) addresses, also when wrapped in IPv6 (IPv4-mapped, 6to4,
        Teredo), and for anything that does not parse.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        if ip.teredo is not None:
            candidates += list(ip.teredo)
    return all(
        a.is_global and not (a.is_private or a.is_loopback or a.is_link_local or a.is_multicast
                             or a.is_reserved or a.is_unspecified)
        for a in candidates
    )


def _host_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def _parse_checked(url: str | yarl.URL, source: str) -> yarl.URL:
    try:
        parsed = yarl.URL(url) if isinstance(url, str) else url
    except (ValueError, TypeError) as exc:
        raise UnsafeURLError(source, "the URL cannot be parsed") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURLError(source, f"only http and https URLs are fetched, not "
                                     f"{parsed.scheme or 'a URL without scheme'!r}")
    if not parsed.host:
        raise UnsafeURLError(source, f"no host in {safe_url(parsed)}")
    return parsed


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(networks: Iterable[str]) -> Networks:
    """Parse CIDR strings (``"192.168.1.20/32"``) for ``allowed_networks``.

    Raises
    ------
    ValueError
        A string that is not a network.
    """
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks)


def _refuse_private(host: str, addresses: Iterable[str], source: str,
                    allowed_networks: Networks = ()) -> None:
    addresses = list(addresses)
    if not addresses:
        raise SourceUnavailableError(source, f"the host {host} has no address")
    for address in addresses:
        if is_public_address(address):
            continue
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in allowed_networks):
            continue
        raise UnsafeURLError(source, f"the host {host} resolves to a non-public address "
                                     f"({address}); private networks are not fetched")


async def check_url(url: str | yarl.URL, *, allow_private: bool = False,
                    allowed_networks: Networks = (), source: str = "http") -> yarl.URL:
    """Refuse a URL that must not be fetched, without connecting to it.

    Parameters
    ----------
    url : str or yarl.URL
        The URL about to be requested.
    allow_private : bool
        Accept hosts on any private or loopback network (tests, home setups).
    allowed_networks : tuple of ip_network
        Non-public networks accepted even when ``allow_private`` is False (one LAN server).
    source : str
        Name used in error messages.

    Returns
    -------
    yarl.URL
        The parsed URL.

    Raises
    ------
    UnsafeURLError
        Not http(s), no host, or the host is (or resolves to) a non-public address.
    SourceUnavailableError
        The host name does not resolve.
    """
    parsed = _parse_checked(url, source)
    host = parsed.raw_host or ""
    if allow_private:
        return parsed
    literal = _host_literal(host)
    if literal is not None:
        _refuse_private(host, [literal], source, allowed_networks)
        return parsed
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parsed.port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceUnavailableError(source, f"cannot resolve {host}: {exc}") from exc
    _refuse_private(host, (str(info[4][0]) for info in infos), source, allowed_networks)
    return parsed


def check_url_sync(url: str, *, allow_private: bool = False, allowed_networks: Networks = (),
                   source: str = "http") -> None:
    """Blocking twin of :func:`check_url` for worker threads (yt-dlp); same rules and errors."""
    parsed = _parse_checked(url, source)
    host = parsed.raw_host or ""
    if allow_private:
        return
    literal = _host_literal(host)
    if literal is not None:
        _refuse_private(host, [literal], source, allowed_networks)
        return
    try:
        infos = socket.getaddrinfo(host, parsed.port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceUnavailableError(source, f"cannot resolve {host}: {exc}") from exc
    _refuse_private(host, (str(info[4][0]) for info in infos), source, allowed_networks)


class PublicOnlyResolver(ThreadedResolver):
    """Resolves like the default resolver, then refuses non-public answers at connect time."""

    def __init__(self, allowed_networks: Networks = ()) -> None:
        super().__init__()
        self._allowed_networks = allowed_networks

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        _refuse_private(host, (r["host"] for r in results), "http", self._allowed_networks)
        return results
