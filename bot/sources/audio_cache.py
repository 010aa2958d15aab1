"""On-disk, content-addressed cache of downloaded audio, size-capped with LRU eviction.

A file lives at ``<directory>/<first two hex digits>/<sha256>.<ext>``. Files are written to a
temporary name in the same folder and moved into place with :func:`os.replace`, so readers
(other threads or processes) never see half a file. Recency is the file's modification time,
refreshed on every hit; when the cache grows past its cap the least recently used files go.
All methods block (file I/O): call them from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.sources.errors import AudioCacheError
from bot.sources.sniff import sniff_audio

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"
#: Temporary files older than this (seconds) are leftovers of a crash and are removed.
_STALE_TMP_S = 3600.0


@dataclass(frozen=True)
class CachedAudio:
    """One entry of the cache.

    Attributes
    ----------
    path : Path
        The file.
    sha256 : str
        Hex SHA-256 of its bytes (also its name).
    """

    path: Path
    sha256: str


class AudioCache:
    """Content-addressed audio files under one folder, at most ``max_bytes`` in all.

    Parameters
    ----------
    directory : Path
        Root folder, created when missing.
    max_bytes : int
        Size cap in bytes; the newest file is kept even when it alone exceeds the cap.
    """

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        if not self.directory.is_dir():
            return []
        now = time.time()
        for shard in self.directory.iterdir():
            if not shard.is_dir():
                continue
            for path in shard.iterdir():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # evicted by someone else meanwhile
                if path.name.startswith(_TMP_PREFIX):
                    if now - st.st_mtime > _STALE_TMP_S:
                        path.unlink(missing_ok=True)
                    continue
                entries.append((st.st_mtime, st.st_size, path))
        return entries

    def size_bytes(self) -> int:
        """Total size of the cached files in bytes."""
        return sum(size for _, size, _ in self._entries())

    def get(self, sha256: str) -> CachedAudio | None:
        """The cached file with this hash, marked as just used, or None.

        Parameters
        ----------
        sha256 : str
            Hex SHA-256 of the wanted bytes.
        """
        sha256 = sha256.lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a hex SHA-256: {sha256!r}")
        shard = self.directory / sha256[:2]
        for path in shard.glob(f"{sha256}.*"):
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)
                return CachedAudio(path, sha256)
        return None

    def put(self, data: bytes, *, ext: str | None = None) -> CachedAudio:
        """Store bytes (or find them already stored) and evict old files past the cap.

        Parameters
        ----------
        data : bytes
            The audio file's content.
        ext : str, optional
            File extension without the dot; by default recognised from the bytes
            (``"bin"`` when unknown).

        Returns
        -------
        CachedAudio

        Raises
        ------
        AudioCacheError
            The file could not be written (disk full, no permission); no partial file is
            left and the cached files are untouched.
        """
        sha = hashlib.sha256(data).hexdigest()
        hit = self.get(sha)
        if hit is not None:
            return hit
        ext = (ext or sniff_audio(data[:12]) or "bin").lstrip(".").lower()
        shard = self.directory / sha[:2]
        path = shard / f"{sha}.{ext}"
        try:
            shard.mkdir(parents=True, exist_ok=True)
            self._write(shard, path, data)
        except OSError as exc:
            raise AudioCacheError("cache", f"cannot store {len(data)} bytes in "
                                           f"{self.directory}: "
                                           f"{exc.strerror or type(exc).__name__}") from exc
        self.evict(keep=path)
        return CachedAudio(path, sha)

    @staticmethod
    def _write(shard: Path, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` through a temporary file, removed if anything fails."""
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=shard)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def evict(self, *, keep: Path | None = None) -> int:
        """Remove least recently used files until the cache fits its cap.

        Parameters
        ----------
        keep : Path, optional
            A file never removed (the one just written).

        Returns
        -------
        int
            Bytes freed.
        """
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            freed += size
        if freed:
            log.debug("audio cache: evicted %d bytes, %d left", freed, total)
        return freed
