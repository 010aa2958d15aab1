"""The listener: follow a :class:`~bot.service.player.Player`, classify ahead, suggest and add.

:class:`Listener` is the listening logic that every player front-end shares (the MPD plugin,
the Discord queue). On start and on each change event of the player it

- notices a new current track: reports it with its mood and records it as played in the
  player's scope (so the recommender leaves it out for a while);
- classifies the current track and the next ``ahead`` queued tracks before they play
  (listen-ahead); a track that cannot be classified (a stream, no file under the music root,
  audio that cannot be decoded) is reported once, on one line, and the listener goes on;
- hands each newly classified track to an optional annotation hook (the MPD front-end
  writes the mood, valence and arousal as stickers), in every mode; outside ``annotate``
  mode a refused annotation is reported once and annotation stops for the run;
- then acts according to its mode:

  ``annotate``
      nothing more: classify ahead and annotate;
  ``suggest``
      when a track starts, reports three stored tracks whose mood matches it;
  ``autodj``
      when fewer than ``keep`` tracks remain after the current one, adds mood-matched tracks
      the player can play (a local file under its music root), right after the current one
      or at the end, with the recommender's artist cap and history window;
  ``journey``
      plans a walk from the first track's mood to a target mood in ``steps`` tracks, and each
      time a track starts adds the next step right after it.

What happens is reported as :class:`ListenEvent` values to a callback, so a front-end renders
them its own way. Classification runs through the service (its worker pool or a thread) and
the player's file look-ups run in threads: nothing blocks the event loop. The listener never
stops on a player outage: the player reconnects on its own and reports every subsystem as
changed, and the listener picks up from there.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from bot.recommend import Candidate, RecommendError, quadrant_of
from bot.recommend.values import mood as mood_name
from bot.service.errors import ServiceError
from bot.service.player import (
    SUBSYSTEMS,
    NoLocalFile,
    OutsideMusicRoot,
    Player,
    PlayerError,
    PlayerUnavailable,
    QueuedTrack,
)

if TYPE_CHECKING:
    from bot.recommend import MoodRecommender
    from bot.service.mood import TrackMood
    from bot.service.recommendations import Pick, Picks

logger = logging.getLogger(__name__)

Mode = Literal["annotate", "suggest", "autodj", "journey"]
#: The modes of :class:`Listener`, in the order a help text lists them.
MODES: tuple[Mode, ...] = ("annotate", "suggest", "autodj", "journey")

EventKind = Literal["playing", "classified", "annotated", "suggested", "added", "problem",
                    "info"]

#: How many classified tracks the listener remembers (by song URI).
_CACHE = 512


class ListeningService(Protocol):
    """What the listener needs from the service: :class:`~bot.service.mood.MoodService`."""

    async def classify(self, query: str) -> TrackMood:
        """Mood of a query (a local file path here)."""
        ...

    @property
    def recommendations(self) -> ListeningRecommendations:
        """Suggestions and journeys over the stored library."""
        ...


class ListeningRecommendations(Protocol):
    """What the listener needs from :class:`~bot.service.recommendations.Recommendations`."""

    @property
    def recommender(self) -> MoodRecommender:
        """Scoring settings (the artist cap)."""
        ...

    async def recommend(self, target: Candidate | str | tuple[float, float], n: int = 10, *,
                        seed: int = 0, scope: str | None = None) -> Picks:
        """Up to ``n`` stored tracks for a target."""
        ...

    async def journey(self, start: Candidate | str | tuple[float, float],
                      end: Candidate | str | tuple[float, float], steps: int = 5, *,
                      route: Literal["line", "circumplex"] = "line", seed: int = 0,
                      scope: str | None = None) -> Picks:
        """``steps`` stored tracks from one mood to another."""
        ...

    async def played(self, scope: str, track_ids: Sequence[int]) -> None:
        """Record plays in a scope's history."""
        ...


@dataclass(frozen=True)
class ListenConfig:
    """How a :class:`Listener` behaves.

    Attributes
    ----------
    mode : {"annotate", "suggest", "autodj", "journey"}
        What it does besides classifying ahead (see the module's description).
    ahead : int
        How many queued tracks after the current one are classified before they play.
    keep : int
        ``autodj``: the fewest tracks queued after the current one.
    after_current : bool
        ``autodj``: add right after the current track (True) or at the end of the queue.
    suggestions : int
        ``suggest``: how many tracks are suggested when a track starts.
    to : str or None
        ``journey``: the target mood (``happy``, ``calm``, ``Q3``, ...).
    steps : int
        ``journey``: tracks in the journey, the target included.
    suggest : bool
        Suggest when a track starts whatever the mode (the Discord queue does it with
        auto-DJ on); the ``suggest`` mode always does.
    """

    mode: Mode = "annotate"
    ahead: int = 3
    keep: int = 3
    after_current: bool = False
    suggestions: int = 3
    to: str | None = None
    steps: int = 8
    suggest: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.ahead < 0 or self.keep < 1 or self.suggestions < 1 or self.steps < 2:
            raise ValueError("ahead must be 0 or more, keep and suggestions 1 or more, "
                             "steps 2 or more")
        if self.mode == "journey":
            if not self.to:
                raise ValueError("journey mode needs a target mood (--to happy)")
            try:
                quadrant_of(self.to)
            except RecommendError as exc:
                raise ValueError(str(exc)) from exc


@dataclass(frozen=True)
class ListenEvent:
    """Something the listener did or met, for a front-end to render.

    Attributes
    ----------
    kind : {"playing", "classified", "annotated", "suggested", "added", "problem", "info"}
        ``playing``: a new current track (``track``, ``mood`` when known); ``classified``:
        a queued track's mood is known before it plays; ``annotated``: the annotation hook
        ran; ``suggested``: ``picks`` match the current track; ``added``: the listener queued
        ``picks[0]`` (``reason`` says why); ``problem``: something failed and the listener
        goes on; ``info``: anything else worth a line.
    message : str
        One line saying what happened, ready to print.
    track : QueuedTrack or None
        The queue entry it is about.
    mood : TrackMood or None
        Its mood.
    picks : tuple of Pick
        Suggested or added tracks.
    reason : str or None
        Why a track was added.
    """

    kind: EventKind
    message: str
    track: QueuedTrack | None = None
    mood: TrackMood | None = None
    picks: tuple[Pick, ...] = ()
    reason: str | None = None


#: Receives the listener's events (must not block: it runs on the event loop).
Reporter = Callable[[ListenEvent], None]
#: Called with each classified track in ``annotate`` mode (the MPD front-end writes stickers).
Annotator = Callable[[QueuedTrack, "TrackMood"], Awaitable[None]]


def describe_mood(mood: TrackMood) -> str:
    """``calm (valence 0.71, arousal 0.30, 82 %)``: a mood on one line.

    Parameters
    ----------
    mood : TrackMood
        A classified track.

    Returns
    -------
    str
        Mood name, valence, arousal and confidence.
    """
    result = mood.result
    return (f"{result.mood} (valence {result.valence:.2f}, arousal {result.arousal:.2f}, "
            f"{result.confidence:.0%})")


def track_label(track: QueuedTrack) -> str:
    """``Artist - Title``, else the title, else the song URI."""
    if track.artist and track.title:
        return f"{track.artist} - {track.title}"
    return track.title or track.uri


def mood_stickers(mood: TrackMood) -> dict[str, str]:
    """The stickers an annotating front-end writes: ``mood``, ``valence``, ``arousal``.

    Parameters
    ----------
    mood : TrackMood
        A classified track.

    Returns
    -------
    dict of str to str
        ``{"mood": "calm", "valence": "0.712", "arousal": "0.301"}``.
    """
    result = mood.result
    return {"mood": result.mood, "valence": f"{result.valence:.3f}",
            "arousal": f"{result.arousal:.3f}"}


@dataclass
class _Journey:
    """A planned journey: the steps not queued yet."""

    steps: list[Pick] = field(default_factory=list)
    planned: bool = False
    finished: bool = False
    queued: int = 0


class Listener:
    """Follow a player: classify ahead, record plays, annotate, suggest, auto-DJ or journey.

    Parameters
    ----------
    player : Player
        The player to follow and steer (connected, or reconnecting on its own).
    service : ListeningService
        The service (:class:`~bot.service.mood.MoodService`, created with local files
        allowed).
    config : ListenConfig, optional
        The mode and its numbers (default: annotate, 3 ahead).
    report : callable, optional
        Receives each :class:`ListenEvent` (default: log them).
    annotate : callable, optional
        ``annotate`` mode: awaited with each newly classified track and its mood.
    """

    def __init__(self, player: Player, service: ListeningService,
                 config: ListenConfig | None = None, *, report: Reporter | None = None,
                 annotate: Annotator | None = None) -> None:
        self.player = player
        self.service = service
        self.config = config or ListenConfig()
        self._report = report if report is not None else _log_event
        self._annotate = annotate
        self._moods: OrderedDict[str, TrackMood] = OrderedDict()
        self._failed: dict[str, str] = {}
        self._annotated: set[str] = set()
        self._current_id: int | None = None
        self._unavailable = False
        self._journey = _Journey()
        self._short_reported = False

    # --- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the player until its events end (the player closed) or this is cancelled.

        Never raises for a player outage or a track that cannot be classified: those are
        reported as ``problem`` events.
        """
        events = self.player.events()  # subscribe before the first look: no change is lost
        await self.step(SUBSYSTEMS)
        async for changes in events:
            await self.step(changes)

    async def step(self, changes: frozenset[str] = frozenset()) -> None:
        """Look at the player once and act: what :meth:`run` does on each event.

        Parameters
        ----------
        changes : frozenset of str
            The subsystems that changed (``database`` forgets the tracks that failed, since
            files may have appeared; a player reports it after each reconnection too).
        """
        if "database" in changes:
            self._failed.clear()
        try:
            await self._step()
        except PlayerUnavailable as exc:
            if not self._unavailable:
                self._unavailable = True
                self._emit("problem", f"{exc}; waiting for the player to come back")
            return
        except PlayerError as exc:
            self._emit("problem", str(exc))
            return
        if self._unavailable:
            self._unavailable = False
            self._emit("info", f"the player at {self.player.scope} is back")

    async def _step(self) -> None:
        current = await self.player.current()
        wanted = max(self.config.ahead, self.config.keep if self.config.mode == "autodj" else 0)
        upcoming = await self.player.upcoming(wanted)
        started = current is not None and current.song_id != self._current_id
        self._current_id = current.song_id if current is not None else None
        current_mood = await self._mood(current) if current is not None else None
        if started and current is not None:
            await self._started(current, current_mood)
        for track in upcoming[: self.config.ahead]:
            await self._mood(track)
        if self.config.mode == "autodj":
            await self._auto_dj(current, current_mood, upcoming)

    async def _started(self, current: QueuedTrack, mood: TrackMood | None) -> None:
        """A new current track: report it, record the play, suggest or walk on."""
        if mood is not None:
            try:
                await self.service.recommendations.played(self.player.scope, [mood.track_id])
            except ServiceError as exc:
                self._emit("problem",
                           f"cannot record the play of {track_label(current)}: {exc}")
        text = f"now playing {track_label(current)}"
        self._emit("playing", f"{text}: {describe_mood(mood)}" if mood else text,
                   track=current, mood=mood)
        if mood is None:
            return
        if self.config.mode == "suggest" or self.config.suggest:
            await self._suggest(current, mood)
        if self.config.mode == "journey":
            await self._journey_step(current, mood)

    # --- listen-ahead --------------------------------------------------------------------

    async def _mood(self, track: QueuedTrack) -> TrackMood | None:
        """The track's mood, classified once (None, reported once, when it cannot be)."""
        known = self._moods.get(track.uri)
        if known is not None:
            self._moods.move_to_end(track.uri)
            return known
        if track.uri in self._failed:
            return None
        try:
            mood = await self.service.classify(track.classify_query())
        except NoLocalFile as exc:
            self._fail(track, f"cannot classify {track_label(track)}: {exc}")
            return None
        except ServiceError as exc:
            self._fail(track, f"cannot classify {track_label(track)}: {exc}")
            return None
        self._moods[track.uri] = mood
        while len(self._moods) > _CACHE:
            self._moods.popitem(last=False)
        self._emit("classified", f"classified {track_label(track)}: {describe_mood(mood)}",
                   track=track, mood=mood)
        if self._annotate is not None:
            await self._annotate_track(track, mood)
        return mood

    def _fail(self, track: QueuedTrack, message: str) -> None:
        self._failed[track.uri] = message
        self._emit("problem", message, track=track)

    async def _annotate_track(self, track: QueuedTrack, mood: TrackMood) -> None:
        assert self._annotate is not None
        try:
            await self._annotate(track, mood)
        except PlayerUnavailable:
            self._moods.pop(track.uri, None)  # annotate it again once the player is back
            raise
        except (PlayerError, ValueError) as exc:
            self._emit("problem", f"cannot annotate {track_label(track)}: {exc}", track=track)
            if self.config.mode != "annotate":  # a side job here: say it once, then stop
                self._annotate = None
                self._emit("info", "annotation is off for this run (the player refused it)")
            return
        self._emit("annotated", f"annotated {track_label(track)} as {mood.result.mood}",
                   track=track, mood=mood)

    # --- suggest -------------------------------------------------------------------------

    async def _suggest(self, current: QueuedTrack, mood: TrackMood) -> None:
        try:
            picks = await self.service.recommendations.recommend(
                _candidate(mood), self.config.suggestions, scope=self.player.scope)
        except ServiceError as exc:
            self._emit("problem", f"no suggestions like {track_label(current)}: {exc}")
            return
        names = "; ".join(f"{_pick_name(p)} ({mood_name(p.track.quadrant)})"
                          for p in picks) or "none"
        self._emit("suggested", f"like {track_label(current)}: {names}", track=current,
                   mood=mood, picks=tuple(picks))

    # --- auto-DJ -------------------------------------------------------------------------

    async def _auto_dj(self, current: QueuedTrack | None, mood: TrackMood | None,
                       upcoming: list[QueuedTrack]) -> None:
        missing = self.config.keep - len(upcoming)
        if missing <= 0:
            self._short_reported = False
            return
        seed = mood or next((self._moods[t.uri] for t in reversed(upcoming)
                             if t.uri in self._moods), None)
        if seed is None:
            return  # nothing to match yet: wait for a classified track
        queued = [t for t in (current, *upcoming) if t is not None]
        queued_ids = {self._moods[t.uri].track_id for t in queued if t.uri in self._moods}
        artists = Counter(_artist_key(self._moods[t.uri].artist if t.uri in self._moods
                                      else t.artist) for t in queued)
        cap = self.service.recommendations.recommender.artist_cap
        try:
            picks = await self.service.recommendations.recommend(
                _candidate(seed), missing + len(queued) + 8, scope=self.player.scope)
        except ServiceError as exc:
            self._emit("problem", f"auto-DJ found nothing like {seed.title}: {exc}")
            return
        added = 0
        for pick in picks:
            if added >= missing:
                break
            artist = _artist_key(pick.track.artist)
            if pick.track.track_id in queued_ids or (artist and artists[artist] >= cap):
                continue
            path = self.player.playable(pick)
            if path is None:
                continue
            try:
                await self.player.add(path, after_current=self.config.after_current)
            except OutsideMusicRoot:
                continue
            except PlayerUnavailable:
                raise
            except PlayerError as exc:
                self._emit("problem", f"auto-DJ could not queue {pick.track.title}: {exc}")
                continue
            added += 1
            queued_ids.add(pick.track.track_id)
            if artist:
                artists[artist] += 1
            reason = f"auto-DJ, like {seed.title} ({seed.result.mood}): {pick.reason}"
            self._emit("added", f"added {_pick_name(pick)} "
                                f"({mood_name(pick.track.quadrant)}): {reason}",
                       picks=(pick,), reason=reason)
        if added < missing and not self._short_reported:
            self._short_reported = True
            self._emit("problem", f"auto-DJ added {added} of {missing}: no more stored tracks "
                                  "under the player's music root fit (artist cap "
                                  f"{cap}, history window); scan more of the library")
        elif added >= missing:
            self._short_reported = False

    # --- journey -------------------------------------------------------------------------

    async def _journey_step(self, current: QueuedTrack, mood: TrackMood) -> None:
        plan = self._journey
        assert self.config.to is not None
        if plan.finished:
            return
        if not plan.planned:
            plan.planned = True
            start = (mood.result.valence, mood.result.arousal)
            try:
                picks = await self.service.recommendations.journey(
                    start, self.config.to, self.config.steps, scope=self.player.scope)
            except ServiceError as exc:
                plan.planned = False  # try again when the next track starts
                self._emit("problem", f"cannot plan a journey to {self.config.to}: {exc}")
                return
            plan.steps = [p for p in picks if p.track.track_id != mood.track_id]
            self._emit("info", f"journey from {mood.result.mood} to {self.config.to}: "
                               f"{len(plan.steps)} steps planned"
                               + (f" ({picks.note})" if picks.note else ""))
        while plan.steps:
            pick = plan.steps.pop(0)
            path = self.player.playable(pick)
            if path is None:
                continue
            try:
                await self.player.add(path, after_current=True)
            except OutsideMusicRoot:
                continue
            except PlayerUnavailable:
                plan.steps.insert(0, pick)
                raise
            except PlayerError as exc:
                self._emit("problem", f"journey could not queue {pick.track.title}: {exc}")
                continue
            plan.queued += 1
            reason = f"journey to {self.config.to}, {pick.reason}"
            self._emit("added", f"added {_pick_name(pick)} "
                                f"({mood_name(pick.track.quadrant)}): {reason}",
                       track=current, picks=(pick,), reason=reason)
            return
        if not plan.finished:
            plan.finished = True  # from here on the listener only classifies ahead
            if plan.queued:
                self._emit("info", f"journey to {self.config.to}: all {plan.queued} steps "
                                   "are queued")
            else:
                self._emit("problem", f"journey to {self.config.to}: no step could be queued "
                                      "(no planned track is a file under the player's music "
                                      "root)")

    # --- reporting -----------------------------------------------------------------------

    def _emit(self, kind: EventKind, message: str, *, track: QueuedTrack | None = None,
              mood: TrackMood | None = None, picks: tuple[Pick, ...] = (),
              reason: str | None = None) -> None:
        event = ListenEvent(kind, message, track=track, mood=mood, picks=picks, reason=reason)
        try:
            self._report(event)
        except Exception:  # a renderer's bug must not stop the listener
            logger.exception("reporting %s failed", kind)


def _log_event(event: ListenEvent) -> None:
    level = logging.WARNING if event.kind == "problem" else logging.INFO
    logger.log(level, "%s", event.message)


def _candidate(mood: TrackMood) -> Candidate:
    """A classified track as the recommender's "like this one" target."""
    result = mood.result
    embedding = tuple(result.embedding) if result.embedding else None
    return Candidate(mood.track_id, mood.title, mood.artist, result.quadrant.value,
                     result.valence, result.arousal, result.confidence, embedding)


def _pick_name(pick: Pick) -> str:
    """``Artist - Title``, or the title alone."""
    track = pick.track
    return f"{track.artist} - {track.title}" if track.artist else track.title


def _artist_key(artist: str | None) -> str:
    return (artist or "").strip().casefold()

