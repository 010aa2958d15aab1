"""Local libraries: walking folders for audio files, the identity a file is stored under.

A library changes while it is walked (files deleted, renamed) and holds names that are not
valid UTF-8 (Python keeps their bytes as surrogate escapes); neither may stop a scan. Such a
name is stored with its odd bytes written as ``\\xNN``, since a database text column cannot
hold surrogates; the file itself is always opened by its real path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.sources.local import AUDIO_EXTENSIONS

logger = logging.getLogger(__name__)

#: Called after each file of a scan with (files done, total, the file just done).
ScanProgress = Callable[[int, int, Path], None]


@dataclass
class ScanReport:
    """What a scan did.

    Attributes
    ----------
    total : int
        Audio files found.
    classified : int
        Files analysed now.
    unchanged : int
        Files skipped: same size and modification time as when the live models analysed them.
    failed : dict
        Reason per file that could not be analysed (path as text).
    quadrants : dict
        How many files of the library (classified or unchanged) fell in each quadrant.
    """

    total: int = 0
    classified: int = 0
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    quadrants: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        """Files handled so far (the count a stopped scan reached)."""
        return self.classified + self.unchanged + len(self.failed)


def storable(text: str) -> str:
    """``text`` as a database can store it: surrogate escapes become ``\\xNN``.

    Parameters
    ----------
    text : str
        A path or a name derived from one (possibly holding undecodable bytes).

    Returns
    -------
    str
        Valid UTF-8 text; equal to ``text`` when it already was.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def audio_files(directory: Path) -> list[Path]:
    """Audio files below a folder (recursively), in a stable order.

    Unreadable folders are skipped with a warning; files that vanish during the walk are not
    listed. Symbolic links to folders are not followed (no cycles).

    Parameters
    ----------
    directory : Path
        The library's folder.

    Returns
    -------
    list of Path
        Files whose extension is a known audio format.
    """
    found = []

    def skipped(error: OSError) -> None:
        logger.warning("skipping %s: %s", storable(str(error.filename)), error.strerror)

    for folder, subfolders, files in os.walk(directory, onerror=skipped):
        subfolders.sort()
        for name in files:
            path = Path(folder, name)
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                found.append(path)
    return sorted(found)
