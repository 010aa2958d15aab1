"""The models as front-ends see them: their cards, and the Spotify-feature model.

Front-ends never import :mod:`mer_models`; ``mer models`` and ``mer spotify`` call these, which
need no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bot.service.errors import ServiceError
from bot.settings import Settings
from mer_models.card import ModelCard, find_cards
from mer_models.errors import MerError
from mer_models.result import MoodResult


def models_dir(settings: Settings) -> Path:
    """The folder the live models come from: ``MER_MODELS_DIR``, else the set a retrain or
    rollback made live under the data folder, else the shipped weights."""
    from bot.service.models_admin import live_models_dir

    return live_models_dir(settings)


def model_cards(settings: Settings) -> list[ModelCard]:
    """The newest card of each kind in the models folder (fused or not).

    Raises
    ------
    ServiceError
        The folder holds no model card.
    """
    folder = models_dir(settings)
    paths = find_cards(folder) if folder.is_dir() else {}
    if not paths:
        raise ServiceError(f"{folder}: no trained models found; train them with "
                           "`python -m train all` or point MER_MODELS_DIR at a folder of "
                           "model cards")
    try:
        return [ModelCard.load(path) for path in paths.values()]
    except MerError as exc:
        raise ServiceError(str(exc)) from exc


def spotify_mood(settings: Settings, features: Mapping[str, float]) -> MoodResult:
    """The mood of a track from its Spotify audio features (for users who still have them).

    Parameters
    ----------
    settings : Settings
        Where the models are.
    features : mapping
        Spotify's audio features by name (``danceability``, ``energy``, ...).

    Raises
    ------
    ServiceError
        No Spotify-feature model, or a feature is missing or not a number.
    """
    from mer_models.spotify import SpotifyFeatureModel

    folder = models_dir(settings)
    card = find_cards(folder).get("spotify-ensemble") if folder.is_dir() else None
    if card is None:
        raise ServiceError(f"{folder}: no Spotify-feature model (train it: python -m train "
                           "reproduce-seed)")
    try:
        model = SpotifyFeatureModel(card)
        probabilities = model.predict(features)
    except MerError as exc:
        raise ServiceError(f"spotify features: {exc}") from exc
    return MoodResult(input="spotify features",
                      probabilities={q: round(p, 4) for q, p in probabilities.items()},
                      windows=[], models={model.card.kind: model.card.display_name},
                      weights={model.card.kind: 1.0})
