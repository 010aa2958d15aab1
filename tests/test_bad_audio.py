"""A bad-audio corpus through the engine: every damaged file gives a result or says what is wrong.

The corpus is made in a temporary folder (never committed): valid WAV, FLAC, Ogg Vorbis and
MP3 files written by libsndfile, then cut, emptied, mislabelled, filled with NaN or huge
values, given absurd headers, sample rates and channel counts, plus files that are no audio
at all. Each goes through :meth:`MoodEngine.classify` (decode, features, model) as a path and
as bytes. The outcome must be the one listed: a result whose every number is finite, or the
named :class:`MerError` subclass with a message naming the input and the reason; never
another exception, a hang, or NaN in a result.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_models.config import AnalysisConfig
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from mer_models.errors import (
    AudioDecodeError,
    AudioTooShortError,
    EmptyAudioError,
    MerError,
    SilentAudioError,
)
from mer_models.result import MoodResult
from tests.synth import SR, mood_clip

#: Longest any input may take (decode, features, model): far above the real cost, so only a
#: hang or a runaway read trips it.
LIMIT_S = 20.0
CLIP = mood_clip("Q1", 8.0, seed=3)


def encode(fmt: str, subtype: str | None = None, data: np.ndarray = CLIP, sr: int = SR) -> bytes:
    """``data`` as a file of ``fmt`` (libsndfile), in memory."""
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _float_wav(values: np.ndarray) -> bytes:
    return encode("WAV", "FLOAT", values.astype(np.float32))


def _with(array: np.ndarray, value: float) -> np.ndarray:
    spoiled = array.copy()
    spoiled[SR: 2 * SR] = value
    return spoiled


def _huge_wav_header() -> bytes:
    # RIFF and data sizes claim 4 GB; 1,000 bytes of audio follow.
    data = bytearray(encode("WAV", "PCM_16")[:1044])
    struct.pack_into("<I", data, 4, 0xFFFFFFF0)
    struct.pack_into("<I", data, 40, 0xFFFFFF00)
    return bytes(data)


def _flac_metadata(data: bytes) -> tuple[int, int]:
    """Offset of STREAMINFO's body and of the first audio frame of a FLAC file."""
    assert data[:4] == b"fLaC"
    offset, last = 4, False
    while not last:
        last = bool(data[offset] & 0x80)
        size = int.from_bytes(data[offset + 1: offset + 4], "big")
        offset += 4 + size
    return 8, offset


def _huge_flac_header() -> bytes:
    # STREAMINFO says 2**36 - 1 samples (36 days at 22,050 Hz); about a second follows.
    data = bytearray(encode("FLAC"))
    info, first_frame = _flac_metadata(bytes(data))
    # Bytes 13..17 of STREAMINFO: 4 bits of bits-per-sample, then 36 bits of total samples.
    field = int.from_bytes(data[info + 13: info + 18], "big")
    field |= (1 << 36) - 1
    data[info + 13: info + 18] = field.to_bytes(5, "big")
    return bytes(data[: first_frame + 30_000])


def _flac_header_only() -> bytes:
    data = encode("FLAC")
    return data[: _flac_metadata(data)[1]]


def _ogg_header_only() -> bytes:
    # Vorbis puts its three headers on the first pages; audio starts on page 3.
    data = encode("OGG", "VORBIS")
    pages = [i for i in range(len(data)) if data.startswith(b"OggS", i)]
    return data[: pages[2]]


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)  # 8x8 RGB
    pixels = zlib.compress(b"".join(b"\0" + bytes(24) for _ in range(8)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def _noise(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(11)
    shape = (int(seconds * sr), channels) if channels > 1 else (int(seconds * sr),)
    return (0.2 * rng.standard_normal(shape)).astype(np.float32)


@dataclass(frozen=True)
class Bad:
    """One corpus entry: how to make it, and what must come out.

    ``error`` None means a valid result; otherwise the exact error class and a regular
    expression its reason must match (for the path and for the bytes alike).
    """

    name: str
    make: Callable[[], bytes]
    error: type[MerError] | None = None
    reason: str = ""


NOT_DECODABLE = r"not a decodable audio file: unknown format or corrupt data \(ffmpeg: .+\)"

CORPUS = [
    Bad("valid.wav", lambda: encode("WAV", "PCM_16")),
    Bad("valid.flac", lambda: encode("FLAC")),
    Bad("valid.ogg", lambda: encode("OGG", "VORBIS")),
    Bad("valid.mp3", lambda: encode("MP3")),
    # Cut short: what is left (4.8 s) is analysed, as from a download that ended early.
    Bad("cut-60%.wav", lambda: (d := encode("WAV", "PCM_16"))[: int(len(d) * 0.6)]),
    Bad("cut-60%.flac", lambda: (d := encode("FLAC"))[: int(len(d) * 0.6)]),
    Bad("cut-60%.ogg", lambda: (d := encode("OGG", "VORBIS"))[: int(len(d) * 0.6)]),
    Bad("cut-60%.mp3", lambda: (d := encode("MP3"))[: int(len(d) * 0.6)]),
    # Cut to almost nothing.
    Bad("cut-64.wav", lambda: encode("WAV", "PCM_16")[:64], AudioTooShortError,
        r"the audio is 0\.00 s long; at least 3 s needed"),
    Bad("cut-64.flac", lambda: encode("FLAC")[:64], AudioDecodeError, NOT_DECODABLE),
    Bad("cut-64.ogg", lambda: encode("OGG", "VORBIS")[:64], AudioDecodeError, NOT_DECODABLE),
    Bad("cut-64.mp3", lambda: encode("MP3")[:64], AudioDecodeError, NOT_DECODABLE),
    # A header and no audio.
    Bad("header-only.wav", lambda: encode("WAV", "PCM_16")[:44], EmptyAudioError,
        "the input decodes to no audio samples"),
    Bad("header-only.flac", _flac_header_only, EmptyAudioError,
        "the input decodes to no audio samples"),
    Bad("header-only.ogg", _ogg_header_only, EmptyAudioError,
        "the input decodes to no audio samples"),
    Bad("id3-tag-only.mp3", lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00", AudioDecodeError,
        NOT_DECODABLE),
    # Headers that promise far more than follows.
    Bad("4GB-declared.wav", _huge_wav_header, AudioTooShortError,
        r"the audio is 0\.02 s long; at least 3 s needed"),
    Bad("2^36-samples-declared.flac", _huge_flac_header, AudioTooShortError,
        r"the audio is 1\.\d\d s long; at least 3 s needed"),
    # Not audio, or not what the name says.
    Bad("random.mp3", lambda: np.random.default_rng(1).bytes(50_000), AudioDecodeError,
        NOT_DECODABLE),
    Bad("random.wav", lambda: b"RIFF" + np.random.default_rng(2).bytes(50_000),
        AudioDecodeError, NOT_DECODABLE),
    Bad("text.mp3", lambda: b"not audio at all, just words\n" * 100, AudioDecodeError,
        NOT_DECODABLE),
    Bad("image.flac", _png, AudioDecodeError, r"no audio stream in it \(not an audio file\)"),
    Bad("mp3-named.ogg", lambda: encode("MP3")),
    Bad("flac-named.wav", lambda: encode("FLAC")),
    # Samples that are not numbers, or not sound.
    Bad("nan.wav", lambda: _float_wav(_with(CLIP, math.nan)), AudioDecodeError,
        "decoded samples are not finite"),
    Bad("inf.wav", lambda: _float_wav(_with(CLIP, math.inf)), AudioDecodeError,
        "decoded samples are not finite"),
    Bad("1e30.wav", lambda: _float_wav(CLIP * 1e30), AudioDecodeError,
        r"decoded samples reach 1e\+30, far beyond full scale \(1\.0\)"),
    Bad("int16-range-floats.wav", lambda: _float_wav(CLIP * 32767.0)),
    Bad("silence.wav", lambda: encode("WAV", "PCM_16", np.zeros(5 * SR)), SilentAudioError,
        r"silent \(peak below -80 dBFS\)"),
    Bad("one-sample.wav", lambda: encode("WAV", "PCM_16", np.array([0.5])), AudioTooShortError,
        r"the audio is 0\.00 s long"),
    # One sample short of the minimum: said as 2.99 s (it read "3.00 s long; at least 3 s").
    Bad("3s-minus-1-sample.wav", lambda: encode("WAV", "PCM_16", CLIP[: 3 * SR - 1]),
        AudioTooShortError, r"the audio is 2\.99 s long; at least 3 s needed"),
    # Extreme rates and layouts.
    Bad("1Hz.wav", lambda: encode("WAV", "FLOAT", _noise(10, 1), sr=1)),
    Bad("1Hz-2-samples.wav", lambda: encode("WAV", "FLOAT", _noise(2, 1), sr=1),
        AudioTooShortError, r"the audio is 2\.00 s long; at least 3 s needed"),
    Bad("8kHz.wav", lambda: encode("WAV", "PCM_16", _noise(5, 8000), sr=8000)),
    Bad("192kHz.flac", lambda: encode("FLAC", None, _noise(4, 192_000), sr=192_000)),
    Bad("8-channels.wav", lambda: encode("WAV", "PCM_16", _noise(5, SR, 8))),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> MoodEngine:
    """The shipped CLDNN alone: a real model, loaded in a second.

    It classifies one valid clip before the corpus, so that first use (numba compiling
    librosa's kernels, the onnxruntime session's first run: 10-20 s on a busy CI machine)
    is not counted against the first case's time limit, which is there to catch hangs.
    """
    folder = tmp_path_factory.mktemp("cldnn")
    for path in DEFAULT_MODELS_DIR.glob("mood-4q-cldnn-*"):
        shutil.copy(path, folder)
    engine = MoodEngine(folder, threads=1, prefer_gpu=False)
    engine.classify(encode("WAV", "PCM_16"), name="<warm-up>")
    return engine


def _check(engine: MoodEngine, source: Path | bytes, label: str, case: Bad) -> None:
    start = time.monotonic()
    try:
        result = engine.classify(source, name=label)
    except MerError as exc:
        assert case.error is not None, f"{label}: refused, but it is valid audio: {exc}"
        assert type(exc) is case.error, f"{label}: {type(exc).__name__}: {exc}"
        assert str(exc).startswith(f"{label}: "), str(exc)
        reason = getattr(exc, "reason", "")
        assert reason and "\n" not in reason
        assert re.search(case.reason, reason), f"{label}: {reason!r}"
    else:
        assert case.error is None, f"{label}: expected {case.error.__name__}, got a result"
        _check_result(result, label)
    assert time.monotonic() - start < LIMIT_S, f"{label}: took {time.monotonic() - start:.1f} s"


def _check_result(result: MoodResult, label: str) -> None:
    assert result.input == label
    values = [*result.probabilities.values(), result.valence, result.arousal, result.duration,
              *(p for w in result.windows for p in w.probabilities.values()),
              *result.descriptors.values()]
    assert all(math.isfinite(v) for v in values), f"{label}: a number is not finite"
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert result.duration >= AnalysisConfig().min_duration


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_bad_audio_gives_a_result_or_says_what_is_wrong(engine: MoodEngine, case: Bad,
                                                        tmp_path: Path) -> None:
    data = case.make()
    path = tmp_path / case.name
    path.write_bytes(data)
    _check(engine, path, str(path), case)
    _check(engine, data, f"<{case.name}>", case)


def test_an_empty_file_and_empty_bytes(engine: MoodEngine, tmp_path: Path) -> None:
    path = tmp_path / "zero-length.mp3"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match=r"zero-length\.mp3: the file is empty \(0 bytes\)"):
        engine.classify(path)
    with pytest.raises(EmptyAudioError, match="no audio bytes were given"):
        engine.classify(b"")


def test_the_corpus_is_what_it_says(tmp_path: Path) -> None:
    """The damaged headers really claim hours, the valid files really are valid."""
    wav, flac = tmp_path / "a.wav", tmp_path / "a.flac"
    wav.write_bytes(_huge_wav_header())
    flac.write_bytes(_huge_flac_header())
    assert struct.unpack_from("<I", wav.read_bytes(), 40)[0] == 0xFFFFFF00  # 4 GB of data
    assert sf.info(str(wav)).frames == 500  # libsndfile believes the file's size instead
    assert sf.info(str(flac)).frames == 2**36 - 1
    assert len(_flac_header_only()) < 8192 and _ogg_header_only().count(b"OggS") == 2
    assert sf.info(io.BytesIO(encode("MP3"))).duration == pytest.approx(8.0, abs=0.1)
