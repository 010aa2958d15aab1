"""Play a guild's queue in the voice channel the bot joined.

:class:`VoicePlayback` keeps one rule: the voice client plays the queue's current entry.
It looks again whenever the queue changes (a skip, a new current track, an empty queue)
and when a track ends, which it reports to the queue as played; so ``/queue skip`` needs no
voice of its own, and a queue used without voice works the same.

Audio is a stored track's local file, or its preview fetched again through the resolver
(bounded in size and time, kept in the audio cache); ffmpeg decodes it
(:class:`discord.FFmpegOpusAudio`). Voice needs a connection to Discord and cannot be
tested here: the tests drive this state machine with a stand-in voice client, and
docs/DISCORD.md says how to try real voice by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot.service import ServiceError

if TYPE_CHECKING:
    from bot.discord.queue import GuildQueues
    from bot.service.tracks import StoredTracks

logger = logging.getLogger(__name__)

#: Builds the audio source of a local file (tests give a silent one).
AudioFactory = Callable[[str], discord.AudioSource]


class VoiceOutput(Protocol):
    """What playback needs of :class:`discord.VoiceClient`."""

    def play(self, source: discord.AudioSource, *,
             after: Callable[[Exception | None], Any] | None = None) -> None:
        """Start playing ``source``; ``after`` is called (from another thread) at its end."""
        ...

    def stop(self) -> None:
        """Stop what plays (``after`` is still called)."""
        ...

    def is_playing(self) -> bool:
        """Whether audio is playing."""
        ...

    def is_paused(self) -> bool:
        """Whether audio is paused."""
        ...


def ffmpeg_audio(path: str) -> discord.AudioSource:
    """Decode a local file with ffmpeg into Opus for Discord (audio only)."""
    return discord.FFmpegOpusAudio(path, options="-vn")


class VoicePlayback:
    """Keep a voice client playing one guild's current queue entry.

    Parameters
    ----------
    queues : GuildQueues
        The guild queues.
    tracks : StoredTracks
        Finds each track's audio.
    guild_id : int
        The guild.
    voice : VoiceOutput
        The connected voice client.
    audio : callable, optional
        Builds the audio source of a file (default :func:`ffmpeg_audio`).

    Attributes
    ----------
    entry_id : int or None
        The queue entry whose audio plays now.
    """

    def __init__(self, queues: GuildQueues, tracks: StoredTracks, guild_id: int,
                 voice: VoiceOutput, *, audio: AudioFactory = ffmpeg_audio) -> None:
        self.queues = queues
        self.tracks = tracks
        self.guild_id = guild_id
        self.voice = voice
        self.audio = audio
        self.entry_id: int | None = None
        self._loop = asyncio.get_running_loop()
        self._ended: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        """Follow the queue until cancelled (the bot left the channel)."""
        changes = self.queues.changes(self.guild_id)
        try:
            await self.sync()
            async for _ in changes:
                await self.sync()
        finally:
            changes.close()
            self.stop()

    async def sync(self) -> None:
        """Make the voice client play the queue's current entry (or nothing)."""
        current = await self.queues.current(self.guild_id)
        busy = self.voice.is_playing() or self.voice.is_paused()
        if current is not None and current.entry_id == self.entry_id and busy:
            return
        if busy:
            self.stop()
        if current is None:
            return
        try:
            path = await self.tracks.audio(current.track_id)
            source = await asyncio.to_thread(self.audio, path)
        except (ServiceError, discord.ClientException, OSError) as exc:
            logger.warning("guild %s: cannot play %s (%s); skipping it", self.guild_id,
                           current.name, exc)
            await self.queues.advance(self.guild_id, skipped=True, entry_id=current.entry_id)
            return
        entry_id = current.entry_id
        self.entry_id = entry_id
        self.voice.play(source, after=lambda error: self._loop.call_soon_threadsafe(
            self._track_ended, entry_id, error))

    def stop(self) -> None:
        """Stop the audio (the queue is left as it is)."""
        self.entry_id = None
        if self.voice.is_playing() or self.voice.is_paused():
            self.voice.stop()

    def _track_ended(self, entry_id: int, error: Exception | None) -> None:
        """On the event loop: the audio of ``entry_id`` ended (or was stopped)."""
        if error is not None:
            logger.warning("guild %s: playback of entry %s failed: %s", self.guild_id,
                           entry_id, error)
        if entry_id != self.entry_id:
            return  # stopped for a skip or a leave: the queue moved on already
        self.entry_id = None
        task = asyncio.create_task(self.queues.advance(self.guild_id, entry_id=entry_id))
        self._ended.add(task)
        task.add_done_callback(self._ended.discard)
