"""Retrying rate-limited and failing requests: ``Retry-After``, exponential backoff, jitter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from bot.sources.errors import RateLimitedError, SourceUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Parameters
    ----------
    value : str or None
        The header's value.

    Returns
    -------
    float or None
        Seconds (never negative), or None when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_delay(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry number ``attempt + 1``: exponential, with jitter.

    Parameters
    ----------
    attempt : int
        Attempts made so far minus one (0 after the first failure).
    base_s : float
        First step in seconds.
    cap_s : float
        Largest step in seconds.

    Returns
    -------
    float
        A random delay in ``[step / 2, step]`` with ``step = min(cap_s, base_s * 2**attempt)``
        ("equal jitter": clients that failed together do not retry together).
    """
    step = min(cap_s, base_s * 2**attempt)
    return step / 2 + random.uniform(0, step / 2)


async def with_retries(attempt: Callable[[], Awaitable[T]], *, source: str, retries: int,
                       max_retry_after_s: float, backoff_base_s: float) -> T:
    """Run ``attempt`` until it succeeds, retrying rate limits and outages.

    Parameters
    ----------
    attempt : callable
        A coroutine function making one attempt. It signals a retryable failure by raising
        :class:`RateLimitedError` (its ``retry_after`` is honoured) or
        :class:`SourceUnavailableError`; anything else propagates at once.
    source : str
        Name used in messages and logs.
    retries : int
        Further attempts after the first.
    max_retry_after_s : float
        Longest wait; a ``retry_after`` above it ends the retries at once.
    backoff_base_s : float
        First backoff step (see :func:`backoff_delay`).

    Returns
    -------
    Any
        What ``attempt`` returned.

    Raises
    ------
    RateLimitedError, SourceUnavailableError
        After the last attempt, saying how many were made.
    """
    tries = retries + 1
    for n in range(tries):
        try:
            return await attempt()
        except RateLimitedError as exc:
            too_long = exc.retry_after is not None and exc.retry_after > max_retry_after_s
            if n == tries - 1 or too_long:
                why = (f"asks to wait {exc.retry_after:.0f} s, more than the "
                       f"{max_retry_after_s:g} s allowed") if too_long else \
                      f"still refusing after {tries} tries"
                raise RateLimitedError(source, f"{exc.reason}; {why}",
                                       retry_after=exc.retry_after) from exc
            wait = exc.retry_after if exc.retry_after is not None else \
                backoff_delay(n, base_s=backoff_base_s, cap_s=max_retry_after_s)
            log.info("%s: rate limited (%s), retrying in %.2f s", source, exc.reason, wait)
        except SourceUnavailableError as exc:
            if n == tries - 1:
                suffix = f" (after {tries} tries)" if tries > 1 else ""
                raise SourceUnavailableError(source, exc.reason + suffix) from exc
            wait = backoff_delay(n, base_s=backoff_base_s, cap_s=max_retry_after_s)
            log.info("%s: %s, retrying in %.2f s", source, exc.reason, wait)
        await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
