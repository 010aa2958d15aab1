"""Settings: .env.example's empty values mean "unset", ~ is expanded, secrets stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_env_example_as_dotenv_gives_the_defaults(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("MER_")]:
        monkeypatch.delenv(name)
    settings = Settings(_env_file=REPO / ".env.example")  # type: ignore[call-arg]
    assert settings.models_dir is None  # empty MER_MODELS_DIR: the shipped weights
    assert settings.discord_token is None and settings.database_url is None
    assert "~" not in str(settings.data_dir)
    assert settings.data_dir == Path.home() / ".local" / "share" / "mood-companion"
    assert settings.resolved_database_url().endswith("/mood-companion/mood.db")


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MER_DISCORD_TOKEN", "very-secret-token")
    monkeypatch.setenv("MER_SPOTIFY_CLIENT_SECRET", "spotify-secret")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == "very-secret-token"
    shown = repr(settings) + str(settings.model_dump())
    assert "very-secret-token" not in shown and "spotify-secret" not in shown
