"""Between the engine's results and the database's rows, and between the sources' metadata and
the database's track records: the only place that knows both sides."""

from __future__ import annotations

from typing import Any

from bot.service.library import storable
from bot.sources.models import Preview, Provider, TrackInfo
from bot.storage.models import Prediction
from bot.storage.store import FeatureRecord, PredictionRecord, TrackRecord, file_fingerprint
from mer_models.features import FEATURES_VERSION
from mer_models.result import MoodResult, WindowResult

#: Version of the Spotify audio-feature vectors we store (Spotify's API has one).
SPOTIFY_FEATURES_VERSION = "1"


def track_record(preview: Preview) -> TrackRecord:
    """The database record of the track a preview belongs to.

    Local files are named by their absolute path and carry their fingerprint, so that a
    rewritten file is analysed again.
    """
    info = preview.track
    provider, provider_id = source_key(info)
    fingerprint = file_fingerprint(info.provider_id) if provider == Provider.LOCAL else None
    return TrackRecord(title=storable(info.title), artist=storable(info.artist) or None,
                       album=info.album,
                       duration_s=info.duration_s, isrc=info.isrc, provider=provider,
                       provider_id=provider_id, url=info.url, fingerprint=fingerprint,
                       served_preview=preview.provider == info.provider)


def source_key(info: TrackInfo) -> tuple[str, str]:
    """``(provider, provider_id)`` as stored: the track's identity for lookups.

    For local files the id is the resolved absolute path that :mod:`bot.sources.local` gives,
    made storable (:func:`bot.service.library.storable`).
    """
    return Provider(info.provider).value, storable(info.provider_id)


def prediction_record(result: MoodResult) -> PredictionRecord:
    """The database record of a classification."""
    return PredictionRecord(
        models=dict(result.models), weights=dict(result.weights),
        probabilities=dict(result.probabilities),
        quadrant=result.quadrant.value, valence=result.valence, arousal=result.arousal,
        confidence=result.confidence,
        timeline=[{"start": w.start, "end": w.end, "quadrant": w.quadrant.value,
                   "probabilities": dict(w.probabilities)} for w in result.windows],
        embedding=result.embedding,
        elapsed_ms=float(result.timings_ms.get("total", 0.0)))


def feature_records(result: MoodResult, info: TrackInfo) -> list[FeatureRecord]:
    """The feature vectors worth keeping: our descriptors, and Spotify's features if given."""
    records = []
    if result.descriptors:
        records.append(FeatureRecord("descriptors", str(FEATURES_VERSION), result.descriptors))
    if info.spotify_features:
        records.append(FeatureRecord("spotify", SPOTIFY_FEATURES_VERSION,
                                     info.spotify_features))
    return records


def mood_result(row: Prediction, name: str) -> MoodResult:
    """A stored prediction as the engine's result (what the front-ends render)."""
    windows = [WindowResult(start=w["start"], end=w["end"],
                            probabilities=dict(w["probabilities"])) for w in row.timeline]
    timings: dict[str, Any] = {"total": row.elapsed_ms}
    return MoodResult(input=name, probabilities=dict(row.probabilities), windows=windows,
                      models=dict(row.models), timings_ms=timings,
                      duration=windows[-1].end if windows else 0.0,
                      embedding=list(row.embedding) if row.embedding else None)
