"""Application settings, read once from the environment (prefix ``MER_``) and ``.env``."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """

    model_config = SettingsConfigDict(env_prefix="MER_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path.home() / ".local" / "share" / "mood-companion")
    models_dir: Path | None = None
    n_windows: int = Field(default=3, ge=1, le=64)
    threads: int = Field(default=0, ge=0)
    workers: int = Field(default=0, ge=0)
    prefer_gpu: bool = True
    discord_token: SecretStr | None = None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings()
