"""A forward HTTP proxy on 127.0.0.1 through which a confined child reaches only checked hosts.

yt-dlp (and the ffmpeg it starts) runs in a child process that may open no connection but one
to this proxy (:mod:`bot.sources.ytdlp`). For each client connection the proxy reads one
request head:

- ``CONNECT host:port`` (https): the host is resolved once, refused unless every address is
  public or allowed (:func:`~bot.sources.urlguard.resolve_checked`), and the tunnel is opened
  to the address that was checked, never to the name again (no DNS rebinding);
- an absolute-form request ``GET http://host/path`` (plain http): checked and connected the
  same way, forwarded with ``Connection: close`` both ways, so one connection carries one
  request to one checked host.

A redirect reaches the proxy as a new request, so every hop is checked. A refused target gets
``403`` and is recorded in :attr:`GuardedProxy.refusals`. The bytes relayed from servers to the
client are counted against a budget; past it every connection is cut
(:attr:`GuardedProxy.over_budget`). Either event sets :attr:`GuardedProxy.tripped`, so the
owner can stop the child at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import TracebackType
from typing import Any, Self

import yarl

from bot.sources.errors import SourceError, UnsafeURLError
from bot.sources.urlguard import Networks, redact_url, resolve_checked

log = logging.getLogger(__name__)

_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
# Small kernel buffers: a client that stops reading (yt-dlp leaves a response open while
# ffmpeg fetches the media) then stalls the server at once instead of letting megabytes
# pile up, and count against the budget, in buffers nobody reads.
SOCKET_BUFFER = 256 * 1024
# Hop-by-hop headers: they describe the client's connection to us, not ours to the server.
_HOP_HEADERS = frozenset({b"connection", b"proxy-connection", b"keep-alive",
                          b"proxy-authorization", b"proxy-authenticate", b"te", b"trailer",
                          b"upgrade"})


class _BadRequest(Exception):
    """A request head the proxy does not accept (answered 400)."""


class _Refused(Exception):
    """Upstream could not be reached (answered 502)."""


def _split_head(head: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    first = lines[0].split(b" ")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadRequest("malformed header line")
        headers.append((name.strip(), value.strip()))
    return first, headers


def _join_head(first: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    kept = [(n, v) for n, v in headers if n.lower() not in _HOP_HEADERS]
    kept.append((b"Connection", b"close"))
    return first + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in kept) + b"\r\n"


class GuardedProxy:
    """An in-process HTTP proxy that connects only to checked, pinned addresses.

    Use as ``async with GuardedProxy(max_bytes=...) as proxy:`` and give the child
    :attr:`url`. Every connection is closed when the context ends.

    Parameters
    ----------
    max_bytes : int
        Budget of bytes relayed from servers to the client, all connections together.
    allow_private : bool
        Accept hosts on any private or loopback network.
    allowed_networks : tuple of ip_network
        Non-public networks accepted even when ``allow_private`` is False.
    connect_timeout_s : float
        Limit for reading a request head and for connecting to a server, in seconds.
    source : str
        Name used in errors and logs.
    """

    def __init__(self, *, max_bytes: int, allow_private: bool = False,
                 allowed_networks: Networks = (), connect_timeout_s: float = 10.0,
                 source: str = "proxy") -> None:
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.allowed_networks = allowed_networks
        self.connect_timeout_s = connect_timeout_s
        self.source = source
        #: Targets refused by the private-network guard, in order.
        self.refusals: list[UnsafeURLError] = []
        #: Bytes relayed from servers to the client so far.
        self.bytes_relayed = 0
        #: Whether the byte budget was exhausted (and connections cut).
        self.over_budget = False
        #: Set on the first refusal or when the budget is exhausted.
        self.tripped = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0,
                                                  limit=_HEAD_LIMIT)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the proxy listens on."""
        assert self._server is not None, "the proxy is not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, for the client's proxy setting."""
        host, port = self.address
        return f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:  # aborted transports end their handlers; a stuck one is cancelled
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- one client connection ---------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        client = writer.get_extra_info("socket")
        if client is not None:
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        upstream: asyncio.StreamWriter | None = None
        try:
            upstream = await self._serve(reader, writer)
            await self._close_gently(writer)
        except UnsafeURLError as exc:
            self.refusals.append(exc)
            self.tripped.set()
            log.info("%s: proxy refused %s", self.source, exc.reason)
            await self._answer(writer, b"403 Forbidden", exc.reason)
        except _BadRequest as exc:
            await self._answer(writer, b"400 Bad Request", str(exc))
        except (_Refused, SourceError) as exc:
            await self._answer(writer, b"502 Bad Gateway", str(exc))
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError):
            pass  # a peer went away or stalled: nothing to tell anyone
        except asyncio.CancelledError:
            # Only close() cancels these tasks. Python 3.11's start_server callback logs a
            # cancelled handler as an error, so the handler ends normally instead.
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.transport.abort()
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _answer(self, writer: asyncio.StreamWriter, status: bytes, reason: str) -> None:
        body = reason.encode("utf-8", "replace")[:1000]
        with contextlib.suppress(OSError):
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                         b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
        await self._close_gently(writer)

    async def _close_gently(self, writer: asyncio.StreamWriter) -> None:
        # close() sends what is still buffered first; the abort() that follows in _accept
        # would drop it.
        with contextlib.suppress(OSError, TimeoutError):
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), self.connect_timeout_s)

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> asyncio.StreamWriter:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.connect_timeout_s)
        first, headers = _split_head(head)
        if len(first) != 3:
            raise _BadRequest("malformed request line")
        method, target, version = first
        try:
            if method == b"CONNECT":
                url = yarl.URL(f"//{target.decode('ascii', 'replace')}")
                if not url.raw_host or url.explicit_port is None:
                    raise _BadRequest("CONNECT needs host:port")
                host, port = url.raw_host, url.explicit_port
                where = f"{host}:{port}"
            else:
                url = yarl.URL(target.decode("ascii", "replace"))
                if url.scheme != "http" or not url.raw_host:
                    raise _BadRequest("only absolute http:// requests and CONNECT are proxied")
                host, port = url.raw_host, url.port or 80
                where = redact_url(url)
        except ValueError as exc:
            raise _BadRequest("unreadable request target") from exc
        up_reader, up_writer = await self._connect(host, port, where)
        if method == b"CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            path = (url.raw_path or "/") + (f"?{url.raw_query_string}" if url.raw_query_string
                                            else "")
            up_writer.write(_join_head(b" ".join((method, path.encode(), version)), headers))
        await self._relay(reader, writer, up_reader, up_writer,
                          rewrite_response=method != b"CONNECT")
        return up_writer

    async def _connect(self, host: str, port: int, where: str,
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Resolved once here; the connection goes to these literal addresses, so nothing
        # resolves the name again between the check and the connect.
        addresses = await resolve_checked(host, port, allow_private=self.allow_private,
                                          allowed_networks=self.allowed_networks,
                                          source=self.source)
        errors = []
        for address in addresses:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    self._open(address, port), self.connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
                continue
            self._writers.add(up_writer)
            log.debug("%s: proxy %s via %s", self.source, where, address)
            return up_reader, up_writer
        raise _Refused(f"cannot connect to {host}:{port} ({'; '.join(errors)})")

    @staticmethod
    async def _open(address: str, port: int,
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=_HEAD_LIMIT)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, *,
                     rewrite_response: bool) -> None:
        async def upload() -> None:
            while chunk := await reader.read(_CHUNK):
                up_writer.write(chunk)
                await up_writer.drain()
            if up_writer.can_write_eof():
                up_writer.write_eof()

        async def download() -> None:
            if rewrite_response:
                # The client must not reuse this connection for another host: it is pinned.
                response = await up_reader.readuntil(b"\r\n\r\n")
                try:
                    status, headers = _split_head(response)
                except _BadRequest as exc:
                    raise _Refused("the server sent a malformed response head") from exc
                self._count(len(response))
                writer.write(_join_head(b" ".join(status), headers))
            while chunk := await up_reader.read(_CHUNK):
                self._count(len(chunk))
                writer.write(chunk)
                await writer.drain()

        sending, receiving = asyncio.ensure_future(upload()), asyncio.ensure_future(download())
        try:
            # Either side closing ends the exchange: a server's end of response, or a client
            # that went away (a server keeping its side open must not hold the tunnel).
            await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, receiving):
                task.cancel()
            await asyncio.gather(sending, receiving, return_exceptions=True)
        failure = None if receiving.cancelled() else receiving.exception()
        if failure is not None:
            raise failure  # the budget cut, or a broken peer

    def _count(self, n: int) -> None:
        self.bytes_relayed += n
        if self.bytes_relayed > self.max_bytes:
            self.over_budget = True
            self.tripped.set()
            raise OSError(f"proxy budget of {self.max_bytes} bytes exhausted")
