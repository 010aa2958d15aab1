"""Local audio files: metadata from the file name, the file itself as the preview (no copy)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import soundfile as sf

from bot.sources.errors import NotAudioError, TrackNotFoundError
from bot.sources.models import Preview, TrackInfo
from bot.sources.sniff import sniff_audio
from mer_models.audio import quiet_stderr

SOURCE = "local"
#: Extensions accepted even when the first bytes are not recognised (ffmpeg decodes them).
AUDIO_EXTENSIONS = frozenset({
    ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".mka",
    ".aif", ".aiff", ".caf", ".wma", ".ape", ".wv", ".ac3", ".alac",
})


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalSource:
    """Audio files on this machine."""

    name = SOURCE

    def info(self, path: str | Path) -> TrackInfo:
        """Metadata of a local file: its tags, else ``"Artist - Title.ext"`` names split.

        Parameters
        ----------
        path : str or Path
            An existing audio file.

        Returns
        -------
        TrackInfo
            Title and artist from the file's tags when libsndfile reads them (FLAC, Ogg,
            WAV), else from the file name; the duration when libsndfile reads the header;
            ``provider_id`` the absolute path.

        Raises
        ------
        TrackNotFoundError
            The path does not exist or is not a file.
        NotAudioError
            Neither the first bytes nor the extension say audio.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            # Name what is there: a FIFO or a device opened as audio would block or mislead.
            what = ("a directory" if file.is_dir() else "not a regular file" if file.exists()
                    else None)
            raise TrackNotFoundError(SOURCE, f"{what}, not an audio file" if what
                                     else "no such file")
        if file.stat().st_size == 0:  # before any model or decoder is asked
            raise NotAudioError(SOURCE, "the file is empty (0 bytes)")
        with file.open("rb") as fh:
            head = fh.read(12)
        if sniff_audio(head) is None and file.suffix.lower() not in AUDIO_EXTENSIONS:
            raise NotAudioError(SOURCE, f"{file.name} is not a known audio format")
        artist, title = "", file.stem
        if " - " in file.stem:
            artist, title = (part.strip() for part in file.stem.split(" - ", 1))
        try:
            with quiet_stderr(), sf.SoundFile(str(file)) as sound:  # libmpg123 prints resync
                duration: float | None = sound.frames / sound.samplerate  # notes on damage
                tagged_artist, tagged_title = (sound.artist or "").strip(), (
                    sound.title or "").strip()
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            duration = None  # not a libsndfile format (m4a ...): not worth an ffmpeg run
        else:
            if tagged_title:  # tags (FLAC, Ogg, WAV INFO) say better than the file name
                artist, title = tagged_artist or artist, tagged_title
        resolved = file.resolve()
        return TrackInfo(title=title, artist=artist, duration_s=duration, provider=SOURCE,
                         provider_id=str(resolved), url=resolved.as_uri())

    async def preview(self, path: str | Path) -> Preview:
        """The file itself as a :class:`Preview` (hashed in a worker thread, not copied).

        Raises
        ------
        TrackNotFoundError, NotAudioError
            As for :meth:`info`.
        """
        track = await asyncio.to_thread(self.info, path)
        file = Path(track.provider_id)
        sha = await asyncio.to_thread(_sha256_file, file)
        return Preview(track=track, path=file, provider=SOURCE, sha256=sha)
