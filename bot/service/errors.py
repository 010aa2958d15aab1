"""The one error type the service lets reach a front-end, and the redaction it applies."""

from __future__ import annotations

import re

# Credentials in URLs of any scheme (a database URL's password, say); http(s) URLs get the
# sources' fuller treatment first (secret query values, signatures).
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


class ServiceError(Exception):
    """A request could not be served; the message is one line, safe to show to a user.

    Credentials in URLs (``user:password@``, ``?token=...``) are redacted from the message.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(" ".join(str(message).split())))


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced.

    Parameters
    ----------
    text : str
        Any message or user input that may contain URLs.

    Returns
    -------
    str
        ``https://host/x?token=REDACTED``, ``postgresql://***@db/mood``.
    """
    from bot.sources.urlguard import redact_urls

    return _USERINFO.sub(r"\g<scheme>***@", redact_urls(text))
