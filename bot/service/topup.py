"""Top-up from the catalogue: when the library holds too few tracks for a request, search
Deezer/iTunes with words of the mood, classify their previews, and keep what fits.

Off unless ``recommend.top_up`` (``MER_TOP_UP``) is set. The searches are crude (the services
match words in titles, artists and albums, not moods): the classifier decides what fits, and
everything it classified is stored like any other track, so the next request finds it in the
library. A source that fails (offline, rate-limited) is not asked again in the same top-up; the
report says why, so the caller can say how many tracks it found instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bot.recommend.values import mood
from bot.service.errors import ServiceError
from bot.service.records import source_key
from bot.sources.errors import SourceError
from bot.sources.models import Provider, TrackInfo

if TYPE_CHECKING:
    from bot.service.mood import MoodService, TrackMood

logger = logging.getLogger(__name__)

#: Search words per quadrant, the most telling first.
MOOD_QUERIES: Final[dict[str, tuple[str, ...]]] = {
    "Q1": ("happy", "upbeat", "feel good", "party", "sunshine"),
    "Q2": ("angry", "aggressive", "rage", "intense", "fury"),
    "Q3": ("sad", "melancholy", "heartbreak", "lonely", "tears"),
    "Q4": ("calm", "relaxing", "peaceful", "chill", "ambient"),
}
#: Results asked of one search.
SEARCH_LIMIT: Final = 10

Search = Callable[[str], Awaitable[list[TrackInfo]]]


@dataclass
class TopUpReport:
    """What one top-up did.

    Attributes
    ----------
    quadrant : str
        The mood it looked for, ``Q1`` .. ``Q4``.
    sources : list of str
        The catalogues it could search (``deezer``, ``itunes``).
    classified : int
        Catalogue previews downloaded and classified (and stored).
    fits : int
        Of those, the ones in ``quadrant`` with enough confidence.
    skipped : int
        Previews that could not be downloaded or classified.
    failures : dict
        Source name -> why its search failed (it is not asked again).
    """

    quadrant: str
    sources: list[str] = field(default_factory=list)
    classified: int = 0
    fits: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def tried(self) -> int:
        """Previews downloaded or attempted."""
        return self.classified + self.skipped

    def fail(self, source: str, reason: str) -> None:
        """Note that a source's search failed (the first reason per source is kept)."""
        self.failures.setdefault(source, reason)

    def describe(self) -> str:
        """One line: what the catalogue gave, and why not more."""
        why = "; ".join(f"{name}: {reason}" for name, reason in self.failures.items())
        if not self.sources:
            return ("no catalogue to search (MER_SOURCE_ORDER lists neither deezer nor "
                    "itunes)")
        if self.classified == 0 and why:
            return f"the catalogue could not be searched ({why})"
        text = (f"{self.classified} catalogue previews classified, {self.fits} of them "
                f"{mood(self.quadrant)}")
        if self.skipped:
            text += f", {self.skipped} unusable"
        return f"{text} ({why})" if why else text


class CatalogueTopUp:
    """Classify catalogue tracks of a mood until enough fit or the budget is spent.

    Parameters
    ----------
    service : MoodService
        Its resolver searches and downloads; it classifies and stores.
    max_previews : int
        Most previews downloaded for one top-up.
    min_confidence : float
        A classified track fits when its quadrant is the one wanted with at least this
        probability (the recommender's floor).
    """

    def __init__(self, service: MoodService, *, max_previews: int,
                 min_confidence: float) -> None:
        self._service = service
        self.max_previews = max_previews
        self.min_confidence = min_confidence

    def searches(self) -> dict[str, Search]:
        """The catalogues to search, in the configured source order."""
        resolver = self._service.resolver
        known: dict[str, Search] = {
            Provider.DEEZER.value: lambda text: resolver.deezer.search(text,
                                                                       limit=SEARCH_LIMIT),
            Provider.ITUNES.value: lambda text: resolver.itunes.search(text,
                                                                       limit=SEARCH_LIMIT),
        }
        order = [Provider(p).value for p in resolver.config.sources.source_order]
        return {name: known[name] for name in order if name in known}

    async def run(self, quadrant: str, missing: int) -> TopUpReport:
        """Look for ``missing`` more tracks of ``quadrant`` in the catalogues.

        Parameters
        ----------
        quadrant : str
            ``Q1`` .. ``Q4``.
        missing : int
            How many fitting tracks the request lacks.

        Returns
        -------
        TopUpReport
            Never raises for a failing source: failures are in the report.
        """
        searches = self.searches()
        report = TopUpReport(quadrant, sources=list(searches))
        seen: set[tuple[str, str]] = set()
        for name, text in _queries(quadrant, searches, report):
            if self._done(report, missing):
                break
            for track in await self._search(searches[name], name, text, report):
                if self._done(report, missing):
                    break
                if await self._is_new(track, seen):
                    await self._classify(track, quadrant, report)
        return report

    def _done(self, report: TopUpReport, missing: int) -> bool:
        return report.fits >= missing or report.tried >= self.max_previews

    def fits(self, found: TrackMood, quadrant: str) -> bool:
        """Whether a classified track serves a request for ``quadrant``."""
        result = found.result
        return result.quadrant.value == quadrant and result.confidence >= self.min_confidence

    @staticmethod
    async def _search(search: Search, name: str, text: str,
                      report: TopUpReport) -> list[TrackInfo]:
        try:
            return await search(text)
        except SourceError as exc:
            logger.info("top-up: %s search for %r failed: %s", name, text, exc)
            report.fail(name, exc.reason)
            return []

    async def _is_new(self, track: TrackInfo, seen: set[tuple[str, str]]) -> bool:
        """A result with a preview, not met before in this top-up nor stored already."""
        if not track.preview_url or not track.provider_id:
            return False
        key = source_key(track)
        if key in seen:
            return False
        seen.add(key)
        service = self._service
        stored = await service.store.find_analysis(*key, service.models_key)
        return stored is None or stored.prediction is None

    async def _classify(self, track: TrackInfo, quadrant: str, report: TopUpReport) -> None:
        """Download, classify and store one result; count it in the report."""
        service = self._service
        try:
            found = await service.classify_preview(await service.resolver.preview_of(track))
        except (SourceError, ServiceError) as exc:  # the next result may do
            logger.info("top-up: %s skipped: %s", track.display_name, exc)
            report.skipped += 1
            return
        report.classified += 1
        report.fits += self.fits(found, quadrant)


def _queries(quadrant: str, searches: dict[str, Search],
             report: TopUpReport) -> Iterator[tuple[str, str]]:
    """(source, search text) pairs: each word of the mood in each source, skipping sources
    that failed meanwhile."""
    for text in MOOD_QUERIES[quadrant]:
        for name in searches:
            if name not in report.failures:
                yield name, text
