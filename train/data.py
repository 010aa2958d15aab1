"""The 4Q dataset and an on-disk cache of its features.

Features come from :mod:`mer_models` (the same decode, windows and descriptors as serving)
and are cached in one compressed ``.npz`` per setting, keyed by a hash of everything that
changes them, so a second run does not decode again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mer_models.audio import load_windows, nested_windows
from mer_models.config import AnalysisConfig
from mer_models.features import DESCRIPTOR_NAMES, FEATURES_VERSION, extract_features

logger = logging.getLogger(__name__)

#: ../shared/data beside the repository, where the real data lives.
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Git-ignored cache folder of the project.
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "features"
#: Windows cached per clip; 5 evenly spread windows contain the 3 serving windows (0, 2, 4).
CACHE_WINDOWS = 5
QUADRANT_NAMES = ("Q1", "Q2", "Q3", "Q4")


class DataMissingError(FileNotFoundError):
    """The labelled data is not where it was expected."""


@dataclass(frozen=True)
class Clip:
    """One labelled 4Q clip."""

    song_id: str
    quadrant: str
    artist: str
    fold: int
    path: Path


@dataclass(frozen=True)
class FeatureSet:
    """Cached features of every clip, in ``clips`` order.

    Attributes
    ----------
    logmel : ndarray, shape (n_clips, n_windows, n_mels, frames), float16
    descriptors : ndarray, shape (n_clips, n_windows, n_descriptors), float32
    labels : ndarray, shape (n_clips,), int64 (0..3 for Q1..Q4)
    folds : ndarray, shape (n_clips,), int64
    song_ids : ndarray of str
    """

    logmel: NDArray[np.float16]
    descriptors: NDArray[np.float32]
    labels: NDArray[np.int64]
    folds: NDArray[np.int64]
    song_ids: NDArray[np.str_]


def load_4q(root: Path = DEFAULT_DATA_ROOT) -> list[Clip]:
    """The labelled clips of ``root/4q`` with their artist-disjoint folds.

    Raises
    ------
    DataMissingError
        ``splits.csv`` or an audio file is missing.
    """
    splits = root / "4q" / "splits.csv"
    if not splits.is_file():
        raise DataMissingError(
            f"{splits} not found: the 4Q data is expected in ../shared/data/4q "
            "(pass --data to point elsewhere)"
        )
    clips = []
    with splits.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = root / "4q" / "audio" / row["quadrant"] / f"{row['song_id']}.mp3"
            if not path.is_file():
                raise DataMissingError(f"{path} listed in {splits} is missing")
            clips.append(Clip(row["song_id"], row["quadrant"], row["artist"], int(row["fold"]),
                              path))
    return sorted(clips, key=lambda c: c.song_id)


def serving_windows(n_cached: int, n_serving: int) -> list[int]:
    """Indices of the cached windows that coincide with the serving windows.

    Raises
    ------
    ValueError
        The serving positions are not among the cached ones
        (:func:`mer_models.audio.nested_windows`).
    """
    index = nested_windows(n_cached, n_serving)
    if index is None:
        raise ValueError(f"{n_serving} serving windows are not a subset of {n_cached} cached")
    return index


def cache_key(config: AnalysisConfig) -> str:
    """Hash of everything that changes the cached arrays."""
    payload = {"preprocessing": config.preprocessing(), "n_windows": config.n_windows,
               "max_duration": config.max_duration, "descriptors": list(DESCRIPTOR_NAMES),
               "features_version": FEATURES_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _clip_features(args: tuple[str, AnalysisConfig]) -> tuple[NDArray[np.float16],
                                                              NDArray[np.float32]]:
    path, config = args
    audio = load_windows(path, config)
    features = extract_features(audio.windows, config)
    return features.logmel.astype(np.float16), features.descriptors


def compute_features(clips: list[Clip], config: AnalysisConfig, *,
                     cache_dir: Path = DEFAULT_CACHE_DIR, workers: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> FeatureSet:
    """Features of every clip, from the cache when it holds them.

    Parameters
    ----------
    clips : list of Clip
    config : AnalysisConfig
        Preprocessing and the number of windows per clip.
    cache_dir : Path
        Where ``4q-<key>.npz`` is kept.
    workers : int, optional
        Decoding processes (default: all cores).
    progress : callable, optional
        Called with (done, total) as clips finish.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    ids = np.array([c.song_id for c in clips])
    path = cache_dir / f"4q-{cache_key(config)}.npz"
    if path.is_file():
        with np.load(path) as cached:
            if np.array_equal(cached["song_ids"], ids):
                logger.info("features from cache %s", path)
                return FeatureSet(cached["logmel"], cached["descriptors"], cached["labels"],
                                  cached["folds"], cached["song_ids"])
    logmels, descriptors = [], []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        jobs = [(str(c.path), config) for c in clips]
        for i, (logmel, desc) in enumerate(pool.map(_clip_features, jobs, chunksize=8)):
            logmels.append(logmel)
            descriptors.append(desc)
            if progress:
                progress(i + 1, len(clips))
    features = FeatureSet(
        np.stack(logmels), np.stack(descriptors).astype(np.float32),
        np.array([QUADRANT_NAMES.index(c.quadrant) for c in clips], dtype=np.int64),
        np.array([c.fold for c in clips], dtype=np.int64), ids)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, logmel=features.logmel, descriptors=features.descriptors,
                        labels=features.labels, folds=features.folds, song_ids=ids)
    tmp.replace(path)
    return features
