"""Companion mode's reading of other music bots: which track a "now playing" or "added to
queue" message names.

Pure text work, no I/O: :func:`parse_announcement` reads a message's content and embeds as
the common music bots write them (JMusicBot, FredBoat, Rythm, Jockie Music, Hydra, Green-bot,
Chip, Vexera, MEE6 and the Lavalink bots such as Lavamusic and EvoBot) and gives an
:class:`Announcement` (title, artist, link, kind) or None. The rules are generic rather than
one template per bot: a line that opens with a marker ("Now playing", "Started playing",
"Added to queue", "... has been added to the queue"), then the track named on that line (a
markdown link, bold or code text, or the rest of the line), else in the embed (its linked
title, its description, a "Track" field). Markdown, emoji, mentions, durations, "requested
by" tails and "(Official Video)"-style decorations are removed.

Not announcements (None): anything without a marker, "nothing is playing" and "queue ended"
notices, playlists ("Added 25 tracks", "Found and added `12` songs from playlist ...") and
queue listings (numbered lines). A playlist names no single track, and each of its tracks is
announced again when it starts.

Titles are cleaned as the sources clean them for search queries
(:func:`bot.service.text.clean_title`), plus the decorations only announcements carry
("- Official Video", stray separators).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

import discord

from bot.service.text import clean_title as search_title

Kind = Literal["now playing", "queued"]
NOW_PLAYING: Final[Kind] = "now playing"
QUEUED: Final[Kind] = "queued"
#: Longest title or artist kept (longer text is not a track name).
_NAME_MAX = 200

# --- Markdown and Discord markup ----------------------------------------------------------

# ``[text](url)``: the text may hold one level of brackets, the URL one level of parentheses.
_LINK = re.compile(r"\[(?P<text>(?:[^\[\]\\]|\\.|\[[^\[\]]*\])+)\]\(\s*<?"
                   r"(?P<url>https?://[^\s<>()]*(?:\([^\s<>()]*\)[^\s<>()]*)*)>?"
                   r"(?:\s+\"[^\"]*\")?\s*\)")
_BOLD = re.compile(r"\*\*(?P<text>.+?)\*\*|__(?P<under>.+?)__|`(?P<code>[^`\n]+)`")
_BARE_URL = re.compile(r"<?(?P<url>https?://[^\s<>()\[\]]+)>?")
_CUSTOM_EMOJI = re.compile(r"<a?:\w{1,32}:\d+>")
_MARKUP = re.compile(r"<(?:@[!&]?|#)\d+>|</[\w -]{1,100}:\d+>|<t:-?\d+(?::[tTdDfFR])?>")
_EMOJI = re.compile("[\u2190-\u21ff\u2300-\u23ff\u2460-\u24ff\u2500-\u27bf\u2900-\u297f"
                    "\u2b00-\u2bff\u3030\u303d\u3297\u3299\ufe0e\ufe0f\u200d\u20e3"
                    "\U0001f000-\U0001faff\U000e0020-\U000e007f]")
_ESCAPED = re.compile(r"\\([*_`~|>\\\[\]()#-])")
_EMPHASIS = re.compile(r"\*\*|__|~~|\|\||`")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_LINE_START = re.compile(r"^\s*(?:>{1,3}|#{1,3}|-#)\s+")
_EDGES = " \t|•·:,;-–—>=+"

# --- What the track name carries besides the name ------------------------------------------

_DURATION = r"\d{1,2}(?::\d{2}){1,2}"
_DURATIONS = re.compile(rf"[\(\[]\s*(?:{_DURATION}\s*/\s*)?{_DURATION}\s*[\)\]]"
                        rf"|\s+[-|•·]?\s*{_DURATION}\s*$")
_REQUESTED = re.compile(r"\s*(?:[-|•·,(\[]\s*)?(?:requested|added|queued)\s+by\b.*$", re.I)
_NOISE_SUFFIX = re.compile(r"\s*[|\-–—]\s*(?:official\s+)?(?:music\s+)?(?:video|audio|"
                           r"lyrics?(?:\s+video)?|visuali[sz]er|hd|hq|4k)\s*$", re.I)
_ARTIST_TITLE = re.compile(r"\s+[-–—]\s+")
_UPLOADER_TAIL = re.compile(r"\s*-\s*topic$|\s+official(?:\s+(?:channel|music))?$", re.I)
_VEVO = re.compile(r"vevo$", re.I)

# --- What a line says ----------------------------------------------------------------------

_SEP = r"[\s:\-–—|]*"
_NOW_RULES: Final = tuple(re.compile(p, re.I) for p in (
    rf"^(?:now|currently)\s+playing\b{_SEP}(?P<t>.*)$",
    rf"^(?:started|starting|start)\s+playing\b{_SEP}(?P<t>.*)$",
    rf"^playing(?:\s+now)?\b{_SEP}(?P<t>.*)$",
    # "X is now playing", not "shows what is now playing" (a help text)
    r"^(?P<t>.+?)(?<!\bwhat)(?<!\bwhich)(?<!\bthat)(?<!\bsong)(?<!\btrack)"
    r"\s+(?:is\s+now\s+playing|will\s+now\s+play)\b",
))
_QUEUED_RULES: Final = tuple(re.compile(p, re.I) for p in (
    rf"^added\s+to\s+(?:the\s+)?queue\b{_SEP}(?P<t>.*)$",
    rf"^(?:track\s+|song\s+)?(?:en)?queued\b{_SEP}(?P<t>.*)$",
    r"^added\s+(?P<t>.+?)\s+to\s+(?:the\s+)?(?:(?:top|front|end)\s+of\s+the\s+)?"
    r"(?:queue|begin\s+playing|play\s+next)\b",
    r"^(?P<t>.+?)\s+(?:has\s+been|was|got)\s+(?:added|queued)\b",
))
#: Marker words alone: a span saying only this is no track.
_MARKER_ONLY = re.compile(r"^(?:now\s+playing|currently\s+playing|playing(?:\s+now)?|"
                          r"started\s+playing|added\s+to\s+(?:the\s+)?queue|queued|"
                          r"enqueued|track\s+queued|up\s+next|now)\W*$", re.I)
_NOTHING = re.compile(r"\b(?:no\s+music|nothing)\s+(?:is\s+)?(?:currently\s+)?"
                      r"(?:playing|queued|in\s+the\s+queue)\b|"
                      r"\bnot\s+(?:currently\s+)?playing\b|\bqueue\s+(?:has\s+)?ended\b|"
                      r"\bqueue\s+is\s+(?:now\s+)?empty\b|\bend\s+of\s+(?:the\s+)?queue\b",
                      re.I)
_PLAYLIST = re.compile(r"\bplaylist\b|\b\d+\s+(?:songs|tracks|videos|items)\b|"
                       r"\b(?:songs|tracks)\s+(?:have\s+been|were)\s+added\b", re.I)
_LISTED = re.compile(r"^\s*(?:\*\*|`)?\s*#?\d{1,3}\s*[.):\]]")
_IN_CHANNEL = re.compile(r"(?P<verb>playing)\s+in\s+(?:<#\d+>|\*\*[^*\n]{1,100}\*\*|"
                         r"`[^`\n]{1,100}`|[^:*`\n]{1,60}?)\s*(?::|\.{2,}|…)", re.I)
_NOT_A_NAME = re.compile(r"^(?:click\s+here|link|here|open|listen|watch|source|live|"
                         r"stream|nothing|none|n/a|unknown)$|^[!/;?$%&+=~^.][\w-]+(?:\s|$)",
                         re.I)
#: ``Volume: 100%``, ``Duration: 3:45``: a label, not a track.
_GENERIC_LABEL = re.compile(r"^[\w ]{1,24}:\s")
_BY = re.compile(r"^\s*(?:\*\*|__)?\s*by\s+(?P<artist>\[[^\]\n]+\]\([^)\s]+\)|\*\*[^*\n]+\*\*|"
                 r"__[^_\n]+__|`[^`\n]+`|[^\n•|(\[<*`]+)", re.I)
_LABELLED = re.compile(r"^\s*(?P<label>artists?|by|author|uploader|channel|source|creator)"
                       r"\s*[:：]\s*(?P<value>.+)$", re.I)
_ARTIST_LABELS = frozenset({"artist", "artists", "artist(s)", "by"})
_UPLOADER_LABELS = frozenset({"author", "uploader", "channel", "source", "creator"})
_TRACK_LABELS = frozenset({"track", "song", "title", "now playing", "playing", "current song",
                           "currently playing"})

# --- Links the service can classify --------------------------------------------------------

_YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com",
                            "music.youtube.com"})
_SOUNDCLOUD_HOSTS = frozenset({"soundcloud.com", "www.soundcloud.com", "m.soundcloud.com"})
_YOUTUBE_ID = re.compile(r"^[\w-]{11}$")
_SPOTIFY_TRACK = re.compile(r"^/(?:intl-[a-z]{2}(?:-[a-z]{2})?/)?track/(?P<id>[0-9A-Za-z]{22})/?$")
_DEEZER_TRACK = re.compile(r"^/(?:[a-z]{2}(?:-[a-z]{2})?/)?track/(?P<id>\d{1,20})/?$")
_SOUNDCLOUD_TRACK = re.compile(r"^/(?P<user>[\w-]+)/(?P<track>[\w-]+)/?$")
_SOUNDCLOUD_NOT_TRACKS = frozenset({"sets", "likes", "tracks", "albums", "reposts",
                                    "popular-tracks", "discover", "search", "stream", "you",
                                    "charts"})


@dataclass(frozen=True)
class Announcement:
    """A track another music bot announced.

    Attributes
    ----------
    kind : {"now playing", "queued"}
        Whether it started playing or was added to the queue.
    title : str
        The track's title, without decorations.
    artist : str
        Its artist; empty when the message does not say.
    link : str or None
        Its page on YouTube, Spotify, SoundCloud or Deezer, in a canonical form (tracking
        parameters and playlist context dropped); None when there is none of those.
    """

    kind: Kind
    title: str
    artist: str = ""
    link: str | None = None

    @property
    def name(self) -> str:
        """``Artist - Title``, or the title alone."""
        return f"{self.artist} - {self.title}" if self.artist else self.title

    @property
    def queries(self) -> tuple[str, ...]:
        """What to ask the service, best first: the link, then ``Artist - Title``."""
        return (self.link, self.name) if self.link else (self.name,)

    @property
    def keys(self) -> frozenset[str]:
        """Names under which this track counts as already answered: its link, its name."""
        keys = {f"name:{normal(self.name)}"}
        if self.link:
            keys.add(f"link:{self.link}")
        return frozenset(keys)


def parse_announcement(message: discord.Message) -> Announcement | None:
    """The track a music bot's message announces, or None when it announces none.

    Parameters
    ----------
    message : discord.Message
        Any message; only its content and embeds are read.
    """
    return parse_parts(message.content, message.embeds)


def parse_parts(content: str, embeds: Sequence[discord.Embed] = ()) -> Announcement | None:
    """:func:`parse_announcement` from a message's parts.

    Parameters
    ----------
    content : str
        The message's text.
    embeds : sequence of discord.Embed
        Its embeds (``discord.Embed.from_dict`` of the gateway payload).
    """
    message = _Message.of(content, embeds)
    flat = [_flat(line.raw) for line in message.lines]
    if any(_NOTHING.search(text) for text in flat):
        return None
    marker = _find_marker(message)
    if marker is None:
        return None
    kind, line, remainder = marker
    headlines = [_flat(x.raw) for x in message.lines if x.part in ("content", "author", "title",
                                                                   "description")]
    if any(_PLAYLIST.search(text) for text in headlines):
        return None
    listed = [x for x in message.lines if x.part in ("content", "description")
              and _LISTED.match(x.raw)]
    if len(listed) >= 2:
        return None
    found = _on_marker_line(line, remainder) or _elsewhere(message, line)
    if found is None:
        return None
    return _announcement(kind, found, message)


def clean_title(text: str) -> str:
    """A title without decorations: ``"Song (Official Video) [4K] feat. X"`` is ``"Song"``.

    Bracketed parts, "feat." tails and ``- Official Video`` or ``- Remastered 2011`` suffixes
    go; a title that would become empty is kept as it was. Apply it to a title split from
    its artist: ``"Artist - Live Forever"`` would lose its title.
    """
    cleaned = search_title(_NOISE_SUFFIX.sub("", text))
    return " ".join(cleaned.split()).strip(_EDGES) or text.strip()


def normal(text: str) -> str:
    """A name for comparison: case folded, accents and punctuation removed (letters of any
    script are kept)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", bare).split())


def music_link(url: str) -> str | None:
    """The canonical form of a track's page on YouTube, Spotify, SoundCloud or Deezer.

    Returns
    -------
    str or None
        ``https://www.youtube.com/watch?v=<id>``, ``https://open.spotify.com/track/<id>``,
        ``https://www.deezer.com/track/<id>``, ``https://soundcloud.com/<user>/<track>``;
        None for any other URL (other sites, playlists, albums, profiles).
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        return None
    host = (parts.hostname or "").lower()
    if host in _YOUTUBE_HOSTS:
        video = (parse_qs(parts.query).get("v") or [""])[0] if parts.path == "/watch" else (
            parts.path.removeprefix("/shorts/") if parts.path.startswith("/shorts/") else "")
        return f"https://www.youtube.com/watch?v={video}" if _YOUTUBE_ID.match(video) else None
    if host in ("youtu.be", "www.youtu.be"):
        video = parts.path.strip("/")
        return f"https://www.youtube.com/watch?v={video}" if _YOUTUBE_ID.match(video) else None
    if host == "open.spotify.com" and (found := _SPOTIFY_TRACK.match(parts.path)):
        return f"https://open.spotify.com/track/{found['id']}"
    if host in ("deezer.com", "www.deezer.com") and (found := _DEEZER_TRACK.match(parts.path)):
        return f"https://www.deezer.com/track/{found['id']}"
    if (host in _SOUNDCLOUD_HOSTS and (found := _SOUNDCLOUD_TRACK.match(parts.path))
            and found["track"].lower() not in _SOUNDCLOUD_NOT_TRACKS):
        return f"https://soundcloud.com/{found['user']}/{found['track']}"
    return None


# --- The message as lines ------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """One line of the message: where it is (``content``, ``author``, ``title``,
    ``description``, ``field``, ``footer``), in which embed, its raw markdown."""

    part: str
    embed: int | None
    raw: str
    label: str = ""


@dataclass
class _Message:
    lines: list[_Line] = field(default_factory=list)
    embeds: list[discord.Embed] = field(default_factory=list)

    @classmethod
    def of(cls, content: str, embeds: Sequence[discord.Embed]) -> _Message:
        message = cls(embeds=list(embeds))
        message.lines += [_Line("content", None, raw) for raw in _split(content)]
        for i, embed in enumerate(embeds):
            message.lines += [_Line("author", i, raw) for raw in _split(embed.author.name)]
            message.lines += [_Line("title", i, raw) for raw in _split(embed.title)]
            message.lines += [_Line("description", i, raw) for raw in _split(embed.description)]
            for item in embed.fields:
                label = _flat(item.name or "").lower()
                message.lines += [_Line("field name", i, raw, label) for raw in _split(item.name)]
                message.lines += [_Line("field", i, raw, label) for raw in _split(item.value)]
            message.lines += [_Line("footer", i, raw) for raw in _split(embed.footer.text)]
        return message


def _split(text: str | None) -> list[str]:
    return [line for line in (text or "").splitlines() if line.strip()]


@dataclass(frozen=True)
class _Found:
    """A track name as found: its text, its link, the line it is on and where it ends."""

    text: str
    url: str | None
    line: _Line | None
    end: int | None = None


def _find_marker(message: _Message) -> tuple[Kind, _Line, str] | None:
    for line in message.lines:
        if line.part == "footer":
            continue
        text = _flat(_IN_CHANNEL.sub(r"\g<verb>:", line.raw))
        for kind, rules in ((NOW_PLAYING, _NOW_RULES), (QUEUED, _QUEUED_RULES)):
            for rule in rules:
                match = rule.search(text)
                if match is not None:
                    return kind, line, match["t"] or ""
    return None


def _spans(raw: str) -> list[tuple[int, int, str, str | None]]:
    """Links, bold, underlined and code text of a line, in order: (start, end, text, url).

    Emphasis around or inside a link is the link (``**[title](url)**``, ``[**title**](url)``).
    """
    links = [(m.start(), m.end(), m["text"], m["url"]) for m in _LINK.finditer(raw)]
    found: list[tuple[int, int, str, str | None]] = list(links)
    for span in _BOLD.finditer(raw):
        if any(span.start() < end and start < span.end() for start, end, _, _ in links):
            continue
        found.append((span.start(), span.end(), span["text"] or span["under"] or span["code"],
                      None))
    return sorted(found)


def _on_marker_line(line: _Line, remainder: str) -> _Found | None:
    raw = _IN_CHANNEL.sub(r"\g<verb>:", line.raw)
    for _, end, text, url in _spans(raw):
        if _acceptable(text):
            return _Found(text, url, _Line(line.part, line.embed, raw, line.label), end)
    if _acceptable(remainder):
        return _Found(remainder, None, None)
    return None


def _elsewhere(message: _Message, marker: _Line) -> _Found | None:
    """The track in the marker's embed (or every embed, for a marker in the content), then
    in the content."""
    embeds = [marker.embed] if marker.embed is not None else list(range(len(message.embeds)))
    for i in embeds:
        found = _in_embed(message, i, marker)
        if found is not None:
            return found
    if marker.part != "content":
        for line in message.lines:
            if line.part == "content":
                for _, end, text, url in _spans(line.raw):
                    if _acceptable(text):
                        return _Found(text, url, line, end)
    return None


def _in_embed(message: _Message, i: int, marker: _Line) -> _Found | None:
    embed = message.embeds[i]
    lines = [x for x in message.lines if x.embed == i and x != marker]
    description = [x for x in lines if x.part == "description"]
    for line in description:
        for _, end, text, url in _spans(line.raw):
            if url is not None and _acceptable(text):
                return _Found(text, url, line, end)
    title = [x for x in lines if x.part == "title"]
    if title and embed.url and _acceptable(title[0].raw):
        return _Found(title[0].raw, embed.url, None)
    for line in description:
        for _, end, text, url in _spans(line.raw):
            if _acceptable(text):
                return _Found(text, url, line, end)
    for line in lines:
        if line.part == "field" and line.label in _TRACK_LABELS and _acceptable(line.raw):
            spans = _spans(line.raw)
            if spans:
                return _Found(spans[0][2], spans[0][3], line, spans[0][1])
            return _Found(line.raw, None, line)
    if title and _acceptable(title[0].raw):
        return _Found(title[0].raw, None, None)
    if description and not _GENERIC_LABEL.match(_flat(description[0].raw)) \
            and _acceptable(description[0].raw):
        return _Found(description[0].raw, None, description[0])
    return None


def _acceptable(text: str) -> bool:
    name = _clean_name(text)
    return (bool(name) and len(name) <= _NAME_MAX and re.search(r"\w", name) is not None
            and not _MARKER_ONLY.match(name) and not _NOT_A_NAME.match(name)
            and not re.fullmatch(r"[\d\s:/.#]+", name))


# --- From the found text to an announcement -----------------------------------------------


def _announcement(kind: Kind, found: _Found, message: _Message) -> Announcement | None:
    name = _clean_name(found.text)
    link = music_link(found.url) if found.url else None
    if link is None:
        link = _any_link(message, found)
    artist, uploader = _artist(found, message)
    if artist and uploader and link is not None and "youtube" not in link \
            and "soundcloud" not in link:
        uploader = False  # Lavalink's "author" of a Spotify or Deezer track is its artist
    title = name
    split = _ARTIST_TITLE.split(name, maxsplit=1)
    if artist and len(split) == 2 and normal(split[0]) == normal(artist):
        title = split[1]
    elif len(split) == 2 and (not artist or uploader) and all(p.strip() for p in split):
        artist, title = split[0], split[1]
    elif uploader:
        artist = _uploader_as_artist(artist)
    title = clean_title(title)
    artist = " ".join(artist.split()).strip(_EDGES)
    if not title or len(title) > _NAME_MAX or len(artist) > _NAME_MAX:
        return None
    return Announcement(kind=kind, title=title, artist=artist, link=link)


def _any_link(message: _Message, found: _Found) -> str | None:
    """A track link elsewhere in the message: the embed's own URL when the name came from
    it, else the first one on the found line, in descriptions or in the content."""
    if found.line is None:
        for embed in message.embeds:
            if embed.url and (link := music_link(embed.url)):
                return link
    lines = ([found.line] if found.line is not None else []) + [
        x for x in message.lines if x.part in ("content", "description")]
    for line in lines:
        for candidate in _BARE_URL.finditer(line.raw):
            link = music_link(candidate["url"])
            if link is not None:
                return link
    return None


def _artist(found: _Found, message: _Message) -> tuple[str, bool]:
    """The artist the message names, and whether it is an uploader (a YouTube channel)
    rather than the artist: ``by X`` after the name, a field, or a labelled line."""
    if found.line is not None and found.end is not None:
        by = _BY.match(found.line.raw[found.end:])
        if by is not None:
            artist = _person(by["artist"])
            if artist:
                return artist, False
    for line in message.lines:
        if line.part == "field" and line.label in _ARTIST_LABELS | _UPLOADER_LABELS:
            artist = _person(line.raw)
            if artist:
                return artist, line.label in _UPLOADER_LABELS
    for line in message.lines:
        if line.part in ("footer", "description", "content"):
            labelled = _LABELLED.match(_flat(line.raw))
            if labelled is not None and (artist := _person(labelled["value"])):
                return artist, labelled["label"].lower() in _UPLOADER_LABELS
    return "", False


def _person(raw: str) -> str:
    """A name as written in a field or after "by": not a mention or a Discord profile."""
    if _MARKUP.fullmatch(raw.strip()) or "discord.com/users" in raw:
        return ""
    name = _clean_name(raw)
    return name if 0 < len(name) <= _NAME_MAX and re.search(r"\w", name) else ""


def _uploader_as_artist(uploader: str) -> str:
    """``RickAstleyVEVO`` is Rick Astley, ``Daft Punk - Topic`` is Daft Punk."""
    name = _UPLOADER_TAIL.sub("", uploader)
    if _VEVO.search(name) and len(name) > 4:
        name = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", _VEVO.sub("", name))
    return name.strip()


def _clean_name(text: str) -> str:
    """What a span or line says, as plain text without the decorations around a name."""
    name = _flat(text)
    name = _REQUESTED.sub("", name)
    name = _DURATIONS.sub(" ", name)
    name = " ".join(name.split()).strip(_EDGES)
    return _NOISE_SUFFIX.sub("", name).strip(_EDGES)


_PROTECT = {c: chr(0xE000 + i) for i, c in enumerate("*_`~|>\\[]()#-")}
_RESTORE = {v: k for k, v in _PROTECT.items()}


def _flat(text: str) -> str:
    """Markdown and Discord markup to plain text: link texts kept, emoji, mentions, custom
    emoji, emphasis and quote marks removed, escapes undone, spaces collapsed."""
    text = _ESCAPED.sub(lambda m: _PROTECT[m[1]], text)
    text = _LINK.sub(lambda m: m["text"], text)
    text = _ESCAPED.sub(lambda m: _PROTECT[m[1]], text)
    text = _CUSTOM_EMOJI.sub(" ", _MARKUP.sub(" ", text))
    text = _EMOJI.sub(" ", text)
    text = _LINE_START.sub("", _ITALIC.sub(r"\1", _EMPHASIS.sub("", text)))
    text = "".join(_RESTORE.get(c, c) for c in text)
    return " ".join(text.split()).strip(_EDGES)
