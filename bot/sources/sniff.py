"""Recognising audio containers from their first bytes (downloads, cache names, local files)."""

from __future__ import annotations


def sniff_audio(head: bytes) -> str | None:
    """Recognise an audio container from its first bytes.

    Parameters
    ----------
    head : bytes
        The first bytes of a file (12 are enough).

    Returns
    -------
    str or None
        A file extension (``"mp3"``, ``"aac"``, ``"wav"``, ``"flac"``, ``"ogg"``, ``"m4a"``,
        ``"webm"``, ``"aiff"``, ``"caf"``), or None when the bytes are not a known audio
        format.
    """
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean an ADTS (AAC) header instead.
        return "aac" if (head[1] >> 1) & 0x3 == 0 else "mp3"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b"caff"):
        return "caf"
    return None
