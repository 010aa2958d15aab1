"""Application settings, read once from the environment (prefix ``MER_``) and ``.env``.

Settings are grouped in sections, one per part of the application, each with its defaults
declared here and nowhere else: :class:`EngineSettings`, :class:`SourceSettings`,
:class:`StorageSettings`, :class:`RecommendSettings`, :class:`DiscordSettings`,
:class:`PlayerSettings`. Every section reads
the same flat variables (``MER_N_WINDOWS``, ``MER_DEEZER_API_BASE``, ...), so a section is only
a grouping in code; ``.env.example`` lists them all. Code receives the section it needs.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.sources.models import PREVIEW_PROVIDERS, Provider

_ENV = SettingsConfigDict(env_prefix="MER_", env_file=".env", extra="ignore")


class SettingsError(ValueError):
    """The settings are invalid; the message names each bad variable and why, on one line."""


def _blank_is_none(value: object) -> object:
    # An empty line in .env (``MER_AUDIO_CACHE_DIR=``) means "not set", not Path(".").
    return None if isinstance(value, str) and not value.strip() else value


class _Section(BaseSettings):
    model_config = _ENV
    #: Fields where an empty value means "not set".
    _optional: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return {k: _blank_is_none(v) if k in cls._optional else v
                    for k, v in values.items()}
        return values

    @model_validator(mode="after")
    def _expand_user(self) -> Any:
        # .env.example writes MER_DATA_DIR=~/...; the shell does not expand it in .env files.
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, value.expanduser())
        return self


class EngineSettings(_Section):
    """The models and how they run.

    Attributes
    ----------
    models_dir : Path or None
        Folder of model cards and artifacts (None: the shipped weights).
    n_windows : int
        Analysis windows per clip (5 s each, spread over the clip).
    threads : int
        onnxruntime threads per process (0: all cores).
    workers : int
        Worker processes for batch classification (0: one per core).
    prefer_gpu : bool
        Use onnxruntime-gpu's CUDA provider when installed and a GPU is present.
    retrain_command : str or None
        The training command ``/mood-admin retrain`` runs, as a shell would split it; the
        admin appends ``--run <folder> --version <n>``. None: ``<this Python> -m train models``
        (ensemble, CLDNN, musicnn head and fusion; nothing shipped) with ``retrain_data``.
    retrain_data : Path or None
        The ``--data`` folder of the default retrain command (holding ``4q/``); None: the
        training code's default, ``../shared/data`` beside the repository.
    retrain_timeout_s : float
        Longest a retrain may run, in seconds; then its process group is killed and the
        live models stay.
    retrain_tolerance : float
        How much lower than the live models' a retrained set's validation figures may be
        and still go live (rounding and seed noise).
    """

    _optional = ("models_dir", "retrain_command", "retrain_data")
    models_dir: Path | None = None
    n_windows: int = Field(default=3, ge=1, le=64)
    threads: int = Field(default=0, ge=0)
    workers: int = Field(default=0, ge=0)
    prefer_gpu: bool = True
    retrain_command: str | None = None
    retrain_data: Path | None = None
    retrain_timeout_s: float = Field(default=4 * 3600.0, gt=0)
    retrain_tolerance: float = Field(default=0.002, ge=0, le=0.1)


class SourceSettings(_Section):
    """Music sources: metadata, previews, downloads (:mod:`bot.sources`).

    Attributes
    ----------
    spotify_client_id : str or None
        Spotify app client id (client-credentials flow); None: Spotify is not used.
    spotify_client_secret : SecretStr or None
        Spotify app client secret; never logged.
    spotify_api_base, spotify_token_url, deezer_api_base, itunes_api_base : str
        Service endpoints (tests and proxies point them elsewhere).
    source_order : list of Provider
        Preview sources in the order tried: ``deezer``, ``itunes``, ``ytdlp``
        (comma-separated or a JSON list in the environment).
    allow_private_urls : bool
        Fetch URLs whose host is on a private or loopback network (off: SSRF guard).
    http_timeout_s : float
        Limit for one attempt of one HTTP request, in seconds.
    http_retries : int
        Further attempts after 429, 5xx, timeouts and connection errors.
    max_retry_after_s : float
        Longest wait honoured from a ``Retry-After`` header, in seconds.
    backoff_base_s : float
        First step of the retry backoff, in seconds.
    deezer_quota_wait_s : float
        Wait after Deezer's quota error before retrying, in seconds.
    ytdlp_section_s : float
        Seconds of a track yt-dlp downloads, from its start.
    ytdlp_deadline_s : float or None
        Limit for one whole yt-dlp run (extraction and download), in seconds; its process is
        killed after it. None: ``6 * http_timeout_s``.
    ytdlp_max_processes : int
        yt-dlp processes running at once.
    allowed_networks : list of str
        Non-public networks (CIDR) fetched even with ``allow_private_urls`` off (one LAN
        server, say).
    max_download_mb : float
        Largest audio download, in MB (10**6 bytes).
    audio_cache_mb : float
        Size cap of the audio cache, in MB (least recently used files go first).
    audio_cache_dir : Path or None
        Folder of the audio cache; None: ``<data_dir>/audio-cache``.
    """

    _optional = ("spotify_client_id", "spotify_client_secret", "audio_cache_dir",
                 "ytdlp_deadline_s")
    spotify_client_id: str | None = None
    spotify_client_secret: SecretStr | None = None
    spotify_api_base: str = "https://api.spotify.com/v1/"
    spotify_token_url: str = "https://accounts.spotify.com/api/token"
    deezer_api_base: str = "https://api.deezer.com"
    itunes_api_base: str = "https://itunes.apple.com"
    source_order: Annotated[list[Provider], NoDecode] = Field(
        default_factory=lambda: list(PREVIEW_PROVIDERS))
    allow_private_urls: bool = False
    http_timeout_s: float = Field(default=10.0, gt=0)
    http_retries: int = Field(default=3, ge=0, le=10)
    max_retry_after_s: float = Field(default=30.0, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    deezer_quota_wait_s: float = Field(default=5.0, ge=0)
    ytdlp_section_s: float = Field(default=30.0, gt=0)
    ytdlp_deadline_s: float | None = Field(default=None, gt=0)
    ytdlp_max_processes: int = Field(default=2, ge=1)
    allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_download_mb: float = Field(default=15.0, gt=0)
    audio_cache_mb: float = Field(default=500.0, gt=0)
    audio_cache_dir: Path | None = None

    @field_validator("source_order", "allowed_networks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip().lower() for part in text.split(",") if part.strip()]
        return value

    @field_validator("source_order")
    @classmethod
    def _check_order(cls, value: list[Provider]) -> list[Provider]:
        unknown = [p.value for p in value if p not in PREVIEW_PROVIDERS]
        if unknown:
            raise ValueError(f"{unknown} serve no previews: use "
                             f"{', '.join(p.value for p in PREVIEW_PROVIDERS)}")
        if not value or len(set(value)) != len(value):
            raise ValueError("list each preview source at most once")
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @property
    def ytdlp_deadline(self) -> float:
        """``ytdlp_deadline_s``, or six HTTP timeouts when unset."""
        return self.ytdlp_deadline_s or 6 * self.http_timeout_s

    @property
    def max_download_bytes(self) -> int:
        """``max_download_mb`` in bytes."""
        return int(self.max_download_mb * 1_000_000)

    @property
    def spotify_configured(self) -> bool:
        """Whether both Spotify credentials are set."""
        return bool(self.spotify_client_id and self.spotify_client_secret
                    and self.spotify_client_secret.get_secret_value())


#: Database URL schemes without an asyncio driver, and the driver the service uses instead.
_ASYNC_SCHEMES: Final = {
    "sqlite": "sqlite+aiosqlite", "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg", "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}


class StorageSettings(_Section):
    """The database (:mod:`bot.storage`).

    Attributes
    ----------
    database_url : str or None
        SQLAlchemy URL (None: the SQLite file ``mood.db`` in ``data_dir``); for example
        ``postgresql+asyncpg://user:password@host/mood`` (needs the ``postgres`` extra).
        ``sqlite://``, ``postgres://`` and ``postgresql://`` URLs (no driver, or a blocking
        one) get the asyncio driver: ``sqlite+aiosqlite``, ``postgresql+asyncpg``.
    auto_upgrade : bool
        Upgrade the schema at start instead of refusing an out-of-date database.
    sqlite_busy_timeout_ms : int
        How long a SQLite connection waits for another writer before "database is locked".
    """

    _optional = ("database_url",)
    database_url: str | None = Field(default=None, repr=False)  # may hold a password
    auto_upgrade: bool = False
    sqlite_busy_timeout_ms: int = Field(default=30000, ge=0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        # The URLs people copy (sqlite:///mood.db, postgres://... from a hosting panel) name
        # no driver or a blocking one; the service needs the asyncio driver of the dialect.
        if url is None:
            return None
        scheme, sep, rest = url.partition("://")
        return f"{_ASYNC_SCHEMES.get(scheme.lower(), scheme)}{sep}{rest}"


class RecommendSettings(_Section):
    """Suggestions and journeys (:mod:`bot.recommend`, through the service).

    Attributes
    ----------
    history_window : int
        How many of the tracks most recently played or suggested in a scope (the CLI, a
        Discord guild, an MPD server) are not suggested again there; 0 turns the history off
        (nothing is read or remembered). When the window would leave too few tracks, its
        oldest tracks come back first.
    top_up : bool
        When the library holds fewer fitting tracks than asked, search Deezer/iTunes with
        words of the mood and classify their previews (stored like any classified track).
    top_up_max_previews : int
        Most catalogue previews downloaded and classified for one request.
    """

    history_window: int = Field(default=50, ge=0)
    top_up: bool = False
    top_up_max_previews: int = Field(default=20, ge=1, le=200)


class DiscordSettings(_Section):
    """The Discord bot.

    Attributes
    ----------
    discord_token : SecretStr or None
        Bot token; never logged. None: console mode.
    discord_companion : bool
        Companion mode: ask Discord for the privileged message-content intent, so that the
        bot can read other music bots' announcements in the channels admins name (the intent
        must also be switched on in the developer portal). Off: no privileged intent.
    """

    _optional = ("discord_token",)
    discord_token: SecretStr | None = None
    discord_companion: bool = False


class PlayerSettings(_Section):
    """The music-player plugin (MPD).

    Attributes
    ----------
    mpd_host : str
        MPD host name or address, or the path of its Unix socket.
    mpd_port : int
        MPD TCP port.
    mpd_password : SecretStr or None
        MPD password; never logged.
    mpd_music_root : Path or None
        MPD's music directory on this machine (song URIs are relative to it).
    mpd_autodj_next : bool
        ``mer listen --mode autodj`` adds its tracks right after the current one (``addid URI
        +0``) instead of at the end of the queue.
    """

    _optional = ("mpd_password", "mpd_music_root")
    mpd_host: str = "localhost"
    mpd_port: int = Field(default=6600, ge=1, le=65535)
    mpd_password: SecretStr | None = None
    mpd_music_root: Path | None = None
    mpd_autodj_next: bool = False


class Settings(_Section):
    """Every setting of the application, by section.

    Attributes
    ----------
    data_dir : Path
        Where the database and caches live by default.
    engine, sources, storage, recommend, discord, player
        The sections.
    """

    data_dir: Path = Field(default=Path.home() / ".local" / "share" / "mood-companion")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    player: PlayerSettings = Field(default_factory=PlayerSettings)

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", *, data_dir: Path | None = None,
             **sections: dict[str, Any]) -> Settings:
        """Read every section from the environment and ``env_file``, with overrides.

        Parameters
        ----------
        env_file : str, Path or None
            The dotenv file every section reads (None: the environment only).
        data_dir : Path, optional
            Overrides ``MER_DATA_DIR``.
        **sections : dict
            Overrides per section, e.g. ``engine={"workers": 1}``.

        Raises
        ------
        SettingsError
            A value is invalid (one line naming every bad variable of every section).
        """
        kinds = {name: info.annotation for name, info in cls.model_fields.items()
                 if isinstance(info.annotation, type) and issubclass(info.annotation, _Section)}
        unknown = set(sections) - set(kinds)
        if unknown:
            raise TypeError(f"unknown settings sections {sorted(unknown)}; "
                            f"known: {sorted(kinds)}")
        parts: dict[str, Any] = {} if data_dir is None else {"data_dir": data_dir}
        problems: list[str] = []
        for name, kind in kinds.items():
            try:
                parts[name] = kind(_env_file=env_file,  # type: ignore[call-arg]
                                   **sections.get(name, {}))
            except ValidationError as exc:
                problems.append(_describe(exc))
        try:
            settings = (cls(_env_file=env_file, **parts)  # type: ignore[call-arg]
                        if not problems else None)
        except ValidationError as exc:
            problems.append(_describe(exc))
        if settings is None or problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings

    @property
    def database_url(self) -> str:
        """The database URL: ``storage.database_url``, else the SQLite file in ``data_dir``."""
        if self.storage.database_url:
            return self.storage.database_url
        path = self.data_dir.absolute() / "mood.db"
        return f"sqlite+aiosqlite:///{path.as_posix()}"

    @property
    def audio_cache_dir(self) -> Path:
        """The audio cache folder: ``sources.audio_cache_dir`` or ``<data_dir>/audio-cache``."""
        return self.sources.audio_cache_dir or self.data_dir / "audio-cache"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use.

    Raises
    ------
    SettingsError
        A variable is invalid (one line naming each one and why).
    """
    return Settings.load()


def _describe(exc: ValidationError) -> str:
    """``MER_NAME: why`` for each invalid variable, joined by ``;``."""
    return "; ".join(
        f"MER_{str(error['loc'][0]).upper()}: {error['msg']}" if error["loc"]
        else error["msg"] for error in exc.errors())
