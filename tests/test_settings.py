"""Settings: sections, .env.example's empty values mean "unset", ~ expanded, secrets secret."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot import settings as settings_module
from bot.settings import Settings, SettingsError, get_settings
from bot.sources.models import Provider

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("MER_")]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_env_example_as_dotenv_gives_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.load(REPO / ".env.example")
    assert settings.engine.models_dir is None  # empty MER_MODELS_DIR: the shipped weights
    assert settings.discord.discord_token is None and settings.storage.database_url is None
    assert "~" not in str(settings.data_dir)
    assert settings.data_dir == Path.home() / ".local" / "share" / "mood-companion"
    assert settings.database_url.endswith("/mood-companion/mood.db")
    assert settings.sources.source_order == [Provider.DEEZER, Provider.ITUNES, Provider.YTDLP]
    assert settings == Settings.load(None)  # the file repeats the defaults, nothing else


def test_env_example_lists_every_setting_once() -> None:
    listed = re.findall(r"^(MER_[A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M)
    sections = [f for f in Settings.model_fields if f != "data_dir"]
    names = {"MER_DATA_DIR"} | {
        f"MER_{name.upper()}" for section in sections
        for name in Settings.model_fields[section].annotation.model_fields}  # type: ignore[union-attr]
    assert sorted(listed) == sorted(names)


def test_sections_read_the_flat_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MER_N_WINDOWS", "5")
    clean_env.setenv("MER_SOURCE_ORDER", "itunes, deezer")
    clean_env.setenv("MER_MPD_MUSIC_ROOT", "~/Music")
    settings = Settings.load(None, engine={"workers": 2})
    assert (settings.engine.n_windows, settings.engine.workers) == (5, 2)
    assert settings.sources.source_order == [Provider.ITUNES, Provider.DEEZER]
    assert settings.player.mpd_music_root == Path.home() / "Music"


def test_invalid_settings_are_one_line_naming_the_variable(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MER_N_WINDOWS", "zero")
    clean_env.setenv("MER_SOURCE_ORDER", "deezer,napster")
    with pytest.raises(SettingsError) as caught:
        get_settings()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("invalid settings: ")
    assert "MER_N_WINDOWS" in message and "MER_SOURCE_ORDER" in message


def test_recommend_settings(clean_env: pytest.MonkeyPatch) -> None:
    defaults = Settings.load(None).recommend
    assert (defaults.history_window, defaults.top_up, defaults.top_up_max_previews) == (
        50, False, 20)
    clean_env.setenv("MER_HISTORY_WINDOW", "0")
    clean_env.setenv("MER_TOP_UP", "true")
    settings = Settings.load(None)
    assert (settings.recommend.history_window, settings.recommend.top_up) == (0, True)
    clean_env.setenv("MER_HISTORY_WINDOW", "-1")
    clean_env.setenv("MER_TOP_UP_MAX_PREVIEWS", "0")
    with pytest.raises(SettingsError) as caught:
        Settings.load(None)
    assert "MER_HISTORY_WINDOW" in str(caught.value)
    assert "MER_TOP_UP_MAX_PREVIEWS" in str(caught.value)


def test_a_provider_without_previews_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="serve no previews"):
        Settings.load(None, sources={"source_order": ["deezer", "spotify"]})
    with pytest.raises(TypeError, match="unknown settings sections"):
        Settings.load(None, engines={})


def test_secrets_are_not_shown(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MER_DISCORD_TOKEN", "very-secret-token")
    clean_env.setenv("MER_SPOTIFY_CLIENT_SECRET", "spotify-secret")
    clean_env.setenv("MER_MPD_PASSWORD", "mpd-secret")
    clean_env.setenv("MER_DATABASE_URL", "postgresql+asyncpg://u:db-secret@h/mood")
    settings = Settings.load(None)
    assert settings.discord.discord_token is not None
    assert settings.discord.discord_token.get_secret_value() == "very-secret-token"
    shown = repr(settings) + str(settings.model_dump())
    for secret in ("very-secret-token", "spotify-secret", "mpd-secret", "db-secret"):
        assert secret not in repr(settings), secret
    assert "spotify-secret" not in shown and "very-secret-token" not in shown
    assert settings_module.Settings is Settings
