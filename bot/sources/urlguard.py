"""The private-network guard and URL hygiene shared by every network source.

- :func:`check_url` refuses URLs that are not http(s) or whose host is, or resolves to, a
  private, loopback, link-local, multicast or reserved address (server-side request forgery),
  before anything connects; :func:`resolve_checked` does the same for a host and returns the
  addresses it checked, for callers that then connect to exactly those addresses (the proxy
  that confines yt-dlp, :mod:`bot.sources.proxy`);
- :func:`refuse_private` is the check itself, also run by the resolver of
  :class:`~bot.sources.http.HttpClient`'s connector
  (:class:`~bot.sources.http.PublicOnlyResolver`): the addresses it checks are the ones
  aiohttp connects to (aiohttp does not resolve again), so a DNS answer that changes after
  :func:`check_url` cannot slip through;
- :func:`redact_url` (one URL) and :func:`redact_urls` (any text) keep passwords, tokens and
  signatures out of logs and messages; :func:`url_identity` names a plain URL in the
  database: query string kept, secrets replaced by a digest.

Nothing here imports aiohttp (the connector's resolver lives in :mod:`bot.sources.http`): the
service redacts every query and message with this module, a local file's too, and importing
aiohttp costs about 0.2 s of a start.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import unquote_plus

import yarl

from bot.sources.errors import SourceUnavailableError, UnsafeURLError

#: What replaces a secret in messages and logs.
REDACTED = "REDACTED"

_URL_RE = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"<>]+")
# Query parameter names (split on punctuation, or with it removed) that hold credentials:
# API keys, OAuth tokens, presigned-URL signatures (AWS, GCS, CloudFront, Akamai's hdnea).
_SECRET_NAMES = frozenset({
    "token", "key", "apikey", "sig", "signature", "secret", "password", "passwd", "pass", "pwd",
    "auth", "authorization", "credential", "credentials", "session", "sessionid", "sid",
    "hmac", "hdnea", "hdntl", "jwt", "code", "otp", "ticket", "policy", "accesstoken",
    "apitoken", "authtoken", "clientsecret", "privatekey",
})
# A value that is itself a signed query ("exp=1~acl=*~hmac=...") or a JWT.
_SECRET_VALUE_RE = re.compile(r"(?i)(?:token|sig|hmac|secret|passw|key)\w*=|^eyJ[\w-]+\.")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def _parse(url: str | yarl.URL) -> yarl.URL:
    return yarl.URL(url) if isinstance(url, str) else url


def _is_secret_param(name: str, value: str) -> bool:
    lowered = unquote_plus(name).lower()
    parts = set(re.split(r"[^a-z0-9]+", lowered))
    joined = re.sub(r"[^a-z0-9]", "", lowered)
    return bool(parts & _SECRET_NAMES) or joined in _SECRET_NAMES or \
        _SECRET_VALUE_RE.search(unquote_plus(value)) is not None


def _origin_and_path(parsed: yarl.URL) -> str:
    """``scheme://host[:port]/path``: no credentials, no query, no fragment."""
    host = parsed.raw_host or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    port = parsed.explicit_port
    port_text = "" if port is None or port == _DEFAULT_PORTS.get(parsed.scheme) else f":{port}"
    return f"{parsed.scheme}://{host}{port_text}{parsed.raw_path}"


def _map_query(parsed: yarl.URL, secret: Callable[[str], str]) -> str:
    pairs = []
    for pair in parsed.raw_query_string.split("&"):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        pairs.append(f"{name}{sep}{secret(value)}" if _is_secret_param(name, value) else pair)
    return "?" + "&".join(pairs) if pairs else ""


def redact_url(url: str | yarl.URL) -> str:
    """A URL fit for logs and messages: no credentials, no secret query values, no fragment.

    Parameters
    ----------
    url : str or yarl.URL
        Any URL, possibly with ``user:password@``, tokens or signatures in its query string.

    Returns
    -------
    str
        ``scheme://host[:port]/path?query`` where the value of every credential-like query
        parameter (``token``, ``key``, ``sig``, ``signature``, ``access_token``, ``api_key``,
        ``X-Amz-Credential``, ``hdnea``, ...) is ``REDACTED``; ``"<invalid url>"`` when
        ``url`` cannot be parsed.
    """
    try:
        parsed = _parse(url)
        if not parsed.absolute:
            return parsed.raw_path or "<relative url>"
        return _origin_and_path(parsed) + _map_query(parsed, lambda _: REDACTED)
    except (ValueError, TypeError):
        return "<invalid url>"


def url_identity(url: str | yarl.URL) -> str:
    """What names a plain http(s) URL in the database (``TrackInfo.provider_id``).

    Two URLs that differ only in their query string are different tracks, so the query is
    kept; credentials never reach the database: ``user:password@`` is dropped and each secret
    query value is replaced by a digest (different tokens still give different identities).

    Parameters
    ----------
    url : str or yarl.URL
        An absolute http(s) URL.

    Returns
    -------
    str
        ``scheme://host[:port]/path?query`` with secret values as ``sha256-<16 hex>``.
    """
    parsed = _parse(url)

    def digest(value: str) -> str:
        return "sha256-" + hashlib.sha256(value.encode()).hexdigest()[:16]

    return _origin_and_path(parsed) + _map_query(parsed, digest)


def url_secrets(url: str | yarl.URL) -> tuple[str, ...]:
    """The secrets inside a URL (user, password, secret query values), raw and decoded.

    For scrubbing text that may quote parts of the URL without its scheme (yt-dlp names a
    page by its last path segment, query included): see ``redact_urls(text, secrets=...)``.
    """
    try:
        parsed = _parse(url)
    except (ValueError, TypeError):
        return ()
    found: set[str] = set()
    for part in (parsed.raw_user, parsed.raw_password):
        if part:
            found.update({part, unquote_plus(part)})
    for pair in parsed.raw_query_string.split("&"):
        name, _, value = pair.partition("=")
        if value and _is_secret_param(name, value):
            found.update({value, unquote_plus(value)})
    # Very short strings would blank out unrelated words; they are no secret worth the name.
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def redact_urls(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Replace every URL inside ``text`` with its :func:`redact_url` form.

    Parameters
    ----------
    text : str
        A message, possibly quoting URLs.
    secrets : iterable of str
        Strings also replaced wherever they appear (:func:`url_secrets` of the URL the text
        is about).
    """
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


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
        raise UnsafeURLError(source, f"no host in {redact_url(parsed)}")
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


def refuse_private(host: str, addresses: Iterable[str], source: str,
                   allowed_networks: Networks = ()) -> None:
    """Refuse a host unless every address it resolved to may be fetched.

    Parameters
    ----------
    host : str
        The host name (for the message).
    addresses : iterable of str
        Its IP addresses.
    source : str
        Name used in error messages.
    allowed_networks : tuple of ip_network
        Non-public networks accepted all the same.

    Raises
    ------
    UnsafeURLError
        An address is non-public and not allowed.
    SourceUnavailableError
        No address at all.
    """
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


async def resolve_checked(host: str, port: int, *, allow_private: bool = False,
                          allowed_networks: Networks = (), source: str = "http") -> list[str]:
    """Resolve a host once and refuse it unless every address may be fetched.

    Connect to the returned addresses, never to the name again: a second lookup could
    answer differently (DNS rebinding).

    Parameters
    ----------
    host : str
        A host name or an IP literal (IPv6 with or without brackets).
    port : int
        The port that will be connected to.
    allow_private, allowed_networks, source
        As for :func:`check_url`.

    Returns
    -------
    list of str
        The checked IP addresses, in resolver order, without duplicates.

    Raises
    ------
    UnsafeURLError
        An address is non-public and not allowed.
    SourceUnavailableError
        The name does not resolve.
    """
    literal = _host_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise SourceUnavailableError(source, f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        refuse_private(host, addresses, source, allowed_networks)
    return addresses


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
    if not allow_private:
        await resolve_checked(parsed.raw_host or "", parsed.port or 0,
                              allowed_networks=allowed_networks, source=source)
    return parsed
