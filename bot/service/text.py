"""Names of tracks as the sources compare them, for front-ends that read titles themselves
(companion mode reads other music bots' messages).

Front-ends do not import :mod:`bot.sources` (docs/ARCHITECTURE.md); these are the sources'
own functions, so a title is cleaned one way wherever it comes from.
"""

from __future__ import annotations

from bot.sources.matching import clean_title, normalize

__all__ = ["clean_title", "normalize"]
