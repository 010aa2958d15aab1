"""What the bot shows: embeds for a track's mood, a list of picks and a mood mix.

Pure functions from service results to :class:`discord.Embed`, so that tests read the embeds
without a gateway. Names that come from tags or users are escaped (a title such as
``**live**`` stays text) and every field is cut to Discord's limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

import discord
from discord.utils import escape_markdown

from bot.service.charts import COLOURS
from bot.service.tracks import MOODS

if TYPE_CHECKING:
    from bot.discord.queue import QueueItem
    from bot.service import TrackMood
    from bot.service.recommendations import Pick
    from bot.service.tracks import MoodMix

#: The emoji of each mood (as the command line shows them).
EMOJI: Final[Mapping[str, str]] = {"Q1": "😄", "Q2": "😬", "Q3": "😢", "Q4": "😌"}
#: The file name charts are attached under (embeds point at ``attachment://<name>``).
CHART: Final = "mood.png"
BAR_CELLS: Final = 12
_TITLE_MAX, _DESCRIPTION_MAX, _FOOTER_MAX, _LINE_MAX = 256, 4096, 2048, 160


def colour(quadrant: str) -> discord.Colour:
    """The colour of a mood (the charts' colours)."""
    return discord.Colour(int(COLOURS[quadrant].lstrip("#"), 16))


def mood_label(quadrant: str) -> str:
    """``😄 happy``."""
    return f"{EMOJI[quadrant]} {MOODS[quadrant]}"


def bar(share: float, cells: int = BAR_CELLS) -> str:
    """A bar of ``cells`` characters, filled in proportion to ``share`` (clipped to [0, 1])."""
    filled = round(min(max(share, 0.0), 1.0) * cells)
    return "█" * filled + "░" * (cells - filled)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def track_name(title: str, artist: str) -> str:
    """``Artist - Title``, or the title alone."""
    return f"{artist} - {title}" if artist else title


def track_embed(mood: TrackMood, *, chart: bool = True) -> discord.Embed:
    """The mood of one track: its mood, four probability bars, valence and arousal.

    Parameters
    ----------
    mood : TrackMood
        What the service answered.
    chart : bool
        Show the attached chart (:data:`CHART`) as the embed's image.
    """
    result = mood.result
    quadrant = result.quadrant.value
    embed = discord.Embed(
        title=shorten(escape_markdown(track_name(mood.title, mood.artist)), _TITLE_MAX),
        description=f"{EMOJI[quadrant]} **{MOODS[quadrant]}** · {result.confidence:.0%} sure",
        colour=colour(quadrant))
    bars = "\n".join(f"{EMOJI[q]} {MOODS[q]:<5} {bar(result.probabilities.get(q, 0.0))} "
                     f"{result.probabilities.get(q, 0.0):4.0%}" for q in MOODS)
    embed.add_field(name="Mood probabilities", value=f"```\n{bars}\n```", inline=False)
    embed.add_field(name="Valence", value=f"{result.valence:.2f} · "
                    f"{'positive' if result.valence >= 0.5 else 'negative'}")
    embed.add_field(name="Arousal", value=f"{result.arousal:.2f} · "
                    f"{'high energy' if result.arousal >= 0.5 else 'low energy'}")
    if chart:
        embed.set_image(url=f"attachment://{CHART}")
    models = ", ".join(result.models.values())
    origin = "from the library" if mood.cached else "classified just now"
    embed.set_footer(text=shorten(f"{origin} · {len(result.windows)} windows · {models}",
                                  _FOOTER_MAX))
    return embed


def picks_embed(picks: Sequence[Pick], *, title: str, note: str | None = None,
                chart: bool = False) -> discord.Embed:
    """A numbered list of picks, each with its mood and why it was chosen.

    Parameters
    ----------
    picks : sequence of Pick
        Best (or first) first.
    title : str
        What was asked (``Calm picks``, ``Journey: sad → happy``).
    note : str, optional
        Why the list is shorter than asked (shown in the footer).
    chart : bool
        Show the attached chart (:data:`CHART`) as the embed's image.
    """
    lines: list[str] = []
    size = 0
    for i, pick in enumerate(picks, start=1):
        track = pick.track
        name = escape_markdown(track_name(track.title, track.artist))
        line = shorten(f"`{i:>2}.` {EMOJI[track.quadrant]} **{name}** · "
                       f"{escape_markdown(pick.reason)}", _LINE_MAX)
        if size + len(line) + 1 > _DESCRIPTION_MAX - 20:
            lines.append(f"… and {len(picks) - i + 1} more")
            break
        lines.append(line)
        size += len(line) + 1
    first = picks[0].track.quadrant if picks else "Q4"
    embed = discord.Embed(title=shorten(title, _TITLE_MAX),
                          description="\n".join(lines) or "Nothing fits.",
                          colour=colour(first))
    if chart:
        embed.set_image(url=f"attachment://{CHART}")
    if note:
        embed.set_footer(text=shorten(note, _FOOTER_MAX))
    return embed


def mix_embed(mix: MoodMix, *, title: str) -> discord.Embed:
    """A mood mix: a bar, a count and a share per mood, and the chart attached."""
    rows = "\n".join(f"{EMOJI[q]} {MOODS[q]:<5} {bar(mix.share(q))} {mix.counts[q]:>5} "
                     f"{mix.share(q):4.0%}" for q in MOODS)
    top = max(MOODS, key=lambda q: mix.counts[q])
    embed = discord.Embed(title=shorten(title, _TITLE_MAX),
                          description=f"```\n{rows}\n```", colour=colour(top))
    embed.set_image(url=f"attachment://{CHART}")
    embed.set_footer(text=f"{mix.total} tracks · mostly {MOODS[top]}")
    return embed


def queue_embed(items: Sequence[QueueItem], moods: Mapping[int, str], *, waiting: int,
                shown: int = 15) -> discord.Embed:
    """A guild's queue: the current track, then the waiting ones with mood and requester.

    Parameters
    ----------
    items : sequence of QueueItem
        The queue from its start (the current track first when there is one).
    moods : mapping of int to str
        Quadrant of each track id the live models classified (others show ``·``).
    waiting : int
        How many tracks wait in all (``items`` may hold fewer).
    shown : int
        The most waiting tracks listed.
    """
    def line(item: QueueItem) -> str:
        emoji = EMOJI.get(moods.get(item.track_id, ""), "·")
        who = "auto-DJ" if not item.requested_by.isdigit() else f"<@{item.requested_by}>"
        length = f" · {_minutes(item.duration_s)}" if item.duration_s else ""
        return shorten(f"{emoji} **{escape_markdown(item.name)}**{length} · {who}", _LINE_MAX)

    current = next((i for i in items if i.playing), None)
    upcoming = [i for i in items if not i.playing][:shown]
    parts = [f"**Now:** {line(current)}" if current else "**Now:** nothing"]
    parts += [f"`{i.position:>2}.` {line(i)}" for i in upcoming]
    if waiting > len(upcoming):
        parts.append(f"… and {waiting - len(upcoming)} more")
    embed = discord.Embed(title="Queue", description="\n".join(parts),
                          colour=colour(moods.get(current.track_id, "Q4") if current else "Q4"))
    total = sum(i.duration_s or 0.0 for i in items)
    embed.set_footer(text=f"{waiting} waiting" + (f" · {_minutes(total)} listed" if total else ""))
    return embed


def now_playing_embed(mood: TrackMood, picks: Sequence[Pick]) -> discord.Embed:
    """A track that started, with its mood and the picks that fit it (numbered)."""
    embed = track_embed(mood, chart=False)
    embed.title = shorten(f"Now playing: {embed.title}", _TITLE_MAX)
    if picks:
        lines = [shorten(f"`{i}.` {EMOJI[p.track.quadrant]} "
                         f"{escape_markdown(track_name(p.track.title, p.track.artist))}",
                         _LINE_MAX) for i, p in enumerate(picks, start=1)]
        embed.add_field(name="Fits next", value="\n".join(lines), inline=False)
    return embed


def _minutes(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
