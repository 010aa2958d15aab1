"""Application settings, read once from the environment (prefix ``MER_``) and ``.env``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the application; ``.env.example`` lists them all.

    Attributes
    ----------
    data_dir : Path
        Where caches and the database live.
    models_dir : Path or None
        Folder of model cards and artifacts (default: the shipped weights).
    n_windows : int
        Analysis windows per clip (spread over the clip).
    threads : int
        onnxruntime threads per process (0: all cores).
    workers : int
        Worker processes for batch classification (0: one per core).
    discord_token : SecretStr or None
        Bot token; never logged.
    spotify_client_id : str or None
        Spotify app client id (client-credentials flow); None: Spotify is not used.
    spotify_client_secret : SecretStr or None
        Spotify app client secret; never logged.
    spotify_api_base : str
        Spotify Web API base URL (ends with ``/``).
    spotify_token_url : str
        Spotify token endpoint.
    deezer_api_base : str
        Deezer API base URL (no key needed).
    itunes_api_base : str
        iTunes Search API base URL.
    source_order : list of str
        Preview sources tried in this order: any of ``deezer``, ``itunes``, ``ytdlp``
        (comma-separated or a JSON list in the environment).
    allow_private_urls : bool
        Fetch URLs whose host is on a private or loopback network (off: SSRF guard).
    http_timeout_s : float
        Limit for one attempt of one HTTP request, in seconds.
    http_retries : int
        Further attempts after 429, 5xx, timeouts and connection errors.
    max_retry_after_s : float
        Longest wait honoured from a ``Retry-After`` header, in seconds.
    max_download_mb : float
        Largest audio download, in MB.
    audio_cache_mb : float
        Size cap of the audio cache, in MB (least recently used files go first).
    audio_cache_dir : Path or None
        Folder of the audio cache; None: ``data_dir / "audio-cache"``
        (see :attr:`audio_cache_path`).
    database_url : str or None
        SQLAlchemy async URL of the database (None: the SQLite file ``mood.db`` in
        ``data_dir``); for example ``postgresql+asyncpg://user:password@host/mood``.
    auto_upgrade : bool
        Upgrade the database schema at start instead of refusing an out-of-date one.
    sqlite_busy_timeout_ms : int
        How long a SQLite connection waits for another writer before "database is locked".
    """

    model_config = SettingsConfigDict(env_prefix="MER_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path.home() / ".local" / "share" / "mood-companion")
    models_dir: Path | None = None
    n_windows: int = Field(default=3, ge=1, le=64)
    threads: int = Field(default=0, ge=0)
    workers: int = Field(default=0, ge=0)
    prefer_gpu: bool = True
    discord_token: SecretStr | None = None
    # --- music sources (bot.sources) ---
    spotify_client_id: str | None = None
    spotify_client_secret: SecretStr | None = None
    spotify_api_base: str = "https://api.spotify.com/v1/"
    spotify_token_url: str = "https://accounts.spotify.com/api/token"
    deezer_api_base: str = "https://api.deezer.com"
    itunes_api_base: str = "https://itunes.apple.com"
    source_order: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["deezer", "itunes", "ytdlp"])
    allow_private_urls: bool = False
    http_timeout_s: float = Field(default=10.0, gt=0)
    http_retries: int = Field(default=3, ge=0, le=10)
    max_retry_after_s: float = Field(default=30.0, ge=0)
    max_download_mb: float = Field(default=15.0, gt=0)
    audio_cache_mb: float = Field(default=500.0, gt=0)
    audio_cache_dir: Path | None = None
    database_url: str | None = None
    auto_upgrade: bool = False
    sqlite_busy_timeout_ms: int = Field(default=30000, ge=0)

    def resolved_database_url(self) -> str:
        """The database URL: ``database_url``, else the SQLite file in ``data_dir``.

        Returns
        -------
        str
            A SQLAlchemy URL.
        """
        from bot.db.engine import default_database_url

        return self.database_url or default_database_url(self.data_dir)

    @field_validator("spotify_client_id", "spotify_client_secret", "audio_cache_dir",
                     "models_dir", "discord_token", "database_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # An empty line in .env (``MER_AUDIO_CACHE_DIR=``) means "not set", not Path(".").
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("data_dir", "models_dir", "audio_cache_dir")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        # .env.example writes MER_DATA_DIR=~/...; the shell does not expand it in .env files.
        return value.expanduser() if value is not None else None

    @field_validator("source_order", mode="before")
    @classmethod
    def _split_source_order(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("source_order")
    @classmethod
    def _check_source_order(cls, value: list[str]) -> list[str]:
        names = [v.strip().lower() for v in value]
        unknown = sorted(set(names) - {"deezer", "itunes", "ytdlp"})
        if unknown:
            raise ValueError(f"unknown preview source(s) {unknown}: use deezer, itunes, ytdlp")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"source_order must list each source at most once: {value}")
        return names

    @property
    def audio_cache_path(self) -> Path:
        """The audio cache folder: ``audio_cache_dir`` or ``data_dir / "audio-cache"``."""
        folder = self.audio_cache_dir or self.data_dir / "audio-cache"
        return folder.expanduser()


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings()
