"""A seat belt for network tests: only loopback connections are allowed, and all are recorded.

Every TCP connection made from this process (aiohttp, requests, yt-dlp's own HTTP stack) goes
through ``socket.socket.connect`` or ``connect_ex``; the guard records the address and refuses
anything that is not loopback, so a bug can never send traffic to 10.0.0.1 or 169.254.169.254.
(ffmpeg, started by yt-dlp, is a separate process and is not covered.)
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest


class LoopbackGuard:
    """Records every connection attempt; refuses non-loopback ones."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.refused: list[str] = []

    def check(self, address: Any) -> None:
        if not isinstance(address, tuple):
            return  # AF_UNIX
        host = str(address[0])
        self.attempts.append(host)
        try:
            loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            self.refused.append(host)
            raise ConnectionRefusedError(f"test guard: no traffic to non-loopback {host}")


def install_loopback_guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    """Patch ``socket.socket`` for one test; returns the guard with its records."""
    guard = LoopbackGuard()
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        guard.check(address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        guard.check(address)
        return connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    return guard
