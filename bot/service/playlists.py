"""Playlists of picks: M3U8, XSPF or JSON, chosen by the file's extension.

Local files are written relative to the playlist's folder when they are below it (so the
playlist and the music can move together), absolute otherwise; streamed tracks by their URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from bot.service.errors import ServiceError
from bot.service.recommendations import Pick
from mer_models.moods import Quadrant

FORMATS = (".m3u8", ".m3u", ".xspf", ".json")


def _location(pick: Pick, folder: Path) -> str | None:
    where = pick.track.location
    if where is None or pick.track.provider != "local":
        return where
    path = Path(where)
    try:
        return path.relative_to(folder.resolve()).as_posix()
    except ValueError:
        return os.path.relpath(path, folder.resolve()) if path.is_absolute() else where


def m3u8(picks: Sequence[Pick], folder: Path) -> str:
    """Extended M3U (UTF-8): ``#EXTINF:<seconds>,<artist> - <title>`` then the location."""
    lines = ["#EXTM3U"]
    for pick in picks:
        location = _location(pick, folder)
        if location is None:
            continue
        track = pick.track
        seconds = round(track.duration_s) if track.duration_s else -1
        name = f"{track.artist} - {track.title}" if track.artist else track.title
        lines += [f"#EXTINF:{seconds},{name}", location]
    return "\n".join(lines) + "\n"


def shared_m3u8(picks: Sequence[Pick]) -> str:
    """M3U8 to send elsewhere (a chat attachment): streamed tracks by their URL, local files
    relative to the folder they all share (the library's root, usually), so that no path of
    this machine above that folder is shown."""
    local = [Path(p.track.location).parent for p in picks
             if p.track.provider == "local" and p.track.location]
    try:
        folder = Path(os.path.commonpath(local)) if local else Path(".")
    except ValueError:  # files on several Windows drives share no folder
        folder = Path(".")
    return m3u8(picks, folder)


def xspf(picks: Sequence[Pick], folder: Path) -> str:
    """XSPF 1 (XML Shareable Playlist Format)."""
    root = ET.Element("playlist", version="1", xmlns="http://xspf.org/ns/0/")
    tracks = ET.SubElement(root, "trackList")
    for pick in picks:
        location = _location(pick, folder)
        if location is None:
            continue
        item = ET.SubElement(tracks, "track")
        ET.SubElement(item, "location").text = (
            location if "://" in location else Path(location).as_posix())
        ET.SubElement(item, "title").text = pick.track.title
        if pick.track.artist:
            ET.SubElement(item, "creator").text = pick.track.artist
        if pick.track.duration_s:
            ET.SubElement(item, "duration").text = str(round(pick.track.duration_s * 1000))
        ET.SubElement(item, "annotation").text = pick.reason
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def as_json(picks: Sequence[Pick]) -> list[dict[str, object]]:
    """The picks as JSON objects (the CLI's ``--json`` list)."""
    out = []
    for pick in picks:
        t = pick.track
        obj: dict[str, object] = {
            "track_id": t.track_id, "title": t.title, "artist": t.artist,
            "location": t.location, "mood": Quadrant(t.quadrant).mood, "quadrant": t.quadrant,
            "valence": round(t.valence, 4), "arousal": round(t.arousal, 4),
            "confidence": round(t.confidence, 4), "reason": pick.reason}
        if pick.target is not None:
            obj["target"] = {"valence": round(pick.target[0], 4),
                             "arousal": round(pick.target[1], 4)}
        out.append(obj)
    return out


def write_playlist(picks: Sequence[Pick], path: Path) -> Path:
    """Write the picks to ``path`` in the format its extension names.

    Raises
    ------
    ServiceError
        Unknown extension, or the file cannot be written.
    """
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ServiceError(f"{path.name}: unknown playlist format (use "
                           f"{', '.join(FORMATS)})")
    folder = path.parent if str(path.parent) else Path(".")
    if suffix in (".m3u8", ".m3u"):
        text = m3u8(picks, folder)
    elif suffix == ".xspf":
        text = xspf(picks, folder)
    else:
        text = json.dumps(as_json(picks), indent=2) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ServiceError(f"{path}: cannot write the playlist: {exc.strerror}") from exc
    return path
