"""Loose matching of track names across providers ("Song (Remastered 2011)" is "Song")."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

from bot.sources.models import TrackInfo

_BRACKETS = re.compile(r"[\(\[][^\)\]]*[\)\]]")
_DASH_SUFFIX = re.compile(r"\s+-\s+.*\b(remaster(ed)?|version|edit|mix|live|mono|stereo)\b.*$",
                          re.IGNORECASE)
_FEAT = re.compile(r"\s+(feat\.?|ft\.?|featuring)\s+.*$", re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w]+")

#: Lowest similarity (0..1) of both artist and title for a search result to count as the track.
MIN_SIMILARITY = 0.6


def clean_title(text: str) -> str:
    """A title without decorations, for search queries.

    ``"Song (2011 Remaster)"``, ``"Song - Remastered 2011"`` and ``"Song feat. X"`` all become
    ``"Song"``; case and accents are kept. A title that would become empty is kept as is.
    """
    cleaned = _FEAT.sub("", _DASH_SUFFIX.sub("", _BRACKETS.sub(" ", text)))
    return " ".join(cleaned.split()) or text.strip()


def normalize(text: str) -> str:
    """Lower-case ASCII words of a title or artist, without decorations.

    Parameters
    ----------
    text : str
        A track title or artist name.

    Returns
    -------
    str
        Accents, bracketed parts, "feat." tails, " - Remastered ..." suffixes and punctuation
        removed; words separated by one space.
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _FEAT.sub("", _DASH_SUFFIX.sub("", _BRACKETS.sub(" ", text)))
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def similarity(a: str, b: str) -> float:
    """How alike two names are, from 0 to 1 (1 when one contains the other)."""
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return 0.0
    if na in nb or nb in na:
        return 1.0
    return difflib.SequenceMatcher(None, na, nb).ratio()


def pick_best(candidates: Sequence[TrackInfo], *, artist: str | None,
              title: str | None) -> TrackInfo | None:
    """The search result that is the wanted track.

    Parameters
    ----------
    candidates : sequence of TrackInfo
        Search results, best first (as the provider ranked them).
    artist, title : str or None
        What is wanted; when both are None the first result is taken.

    Returns
    -------
    TrackInfo or None
        The best result whose artist and title are both at least :data:`MIN_SIMILARITY`
        alike, or None (a wrong song is worse than no song: its mood would be reported).
    """
    if not candidates:
        return None
    if not artist and not title:
        return candidates[0]
    best, best_score = None, MIN_SIMILARITY
    for cand in candidates:
        score = min(similarity(artist, cand.artist) if artist else 1.0,
                    similarity(title, cand.title) if title else 1.0)
        if score >= best_score and (best is None or score > best_score):
            best, best_score = cand, score
    return best
