"""Kabina's configuration: one typed settings object read from the environment and `.env`."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage.errors import ConfigError

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def _id_set(value: Any) -> frozenset[int]:
    """Parse `ALLOWED_USERS="1, 2"` (or a list) into a set of Telegram ids."""
    if value is None:
        return frozenset()
    if isinstance(value, int):
        return frozenset({value})
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        value = [p for p in parts if p]
    try:
        return frozenset(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("expected comma-separated numeric Telegram ids, e.g. 12345,67890") from None


class Settings(BaseSettings):
    """Every variable of ARCHITECTURE.md's configuration table."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False, frozen=True
    )

    bot_token: SecretStr | None = Field(None, description="Telegram bot token (secret; never logged)")
    telegram_api_url: str | None = Field(None, description="base URL of the Bot API server; empty = Telegram cloud")
    data_dir: Path = Field(Path("./data"), description="SQLite database and all files")
    database_url: str = Field(
        "", repr=False, description="sqlite:///path or postgresql://user:password@host/db; empty = sqlite:///$DATA_DIR/kabina.sqlite3"
    )
    base_model: Path | None = Field(None, description="local diffusers folder or single-file .safetensors checkpoint")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    train_steps: int | None = Field(None, ge=1, le=20_000, description="training steps; empty = chosen from the photo count")
    prior: Literal["class-images", "output", "off"] | None = Field(
        None, description="prior preservation: class-images (the paper's), output (the frozen base model's) or off; "
                          "empty = the family's (output)")
    num_class_images: int | None = Field(
        None, ge=0, le=5_000, description="class images for PRIOR=class-images; empty = the family's (SD 200, the others 100)")
    train_resolution: int | Literal["native"] | None = Field(
        None, description="training side in pixels, or native; empty = the family's (native)")
    draw_steps: int | None = Field(None, ge=1, le=100, description="default denoising steps for /draw; empty = the family's")
    compile_denoiser: bool = Field(
        False, description="torch.compile the denoiser for /draw (CUDA): users' LoRAs are hot-swapped into it, so "
                           "switching never recompiles; the first draws after start compile it (minutes)")
    compile_backend: str = Field(
        "inductor", description="torch.compile backend for COMPILE_DENOISER; eager or aot_eager only to debug it")
    min_photos: int = Field(3, ge=1, le=100, description="fewest photos /train accepts")
    max_photos: int = Field(20, ge=1, le=100, description="most photos a set may hold")
    allowed_users: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="comma-separated Telegram user ids allowed to train; empty = everyone"
    )
    admin_ids: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="comma-separated Telegram user ids with admin commands"
    )
    daily_trainings: int = Field(
        5, ge=0, le=1_000, description="trainings one user may start per 24 hours (cancelled ones count)"
    )
    max_pending_draws: int = Field(3, ge=1, le=100, description="queued-or-running draw jobs per user")
    retention_days: int = Field(30, ge=1, le=3_650, description="days drawn pictures are kept")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("text", description="text (one line per event) or json (one JSON object per line)")
    metrics_host: str = Field("127.0.0.1", description="address the /metrics and /healthz endpoints listen on")
    metrics_port: int = Field(0, ge=0, le=65_535, description="the bot's /metrics and /healthz port; 0 = off")
    engine_metrics_port: int = Field(
        0, ge=0, le=65_535, description="an engine's /metrics and /healthz port; 0 = off"
    )
    blob_url: str | None = Field(
        None, description="where files live: file:///path or s3://bucket[/prefix]; empty = files under DATA_DIR"
    )
    engine_cache_dir: Path | None = Field(
        None, description="an engine's local copies of blobs (photos, LoRAs, class images); empty = DATA_DIR/cache/<host>"
    )
    engine_cache_mb: int = Field(20_000, ge=100, le=10_000_000, description="most megabytes the engine's cache holds")
    leader_lease_s: float = Field(
        15.0, ge=1.0, le=600.0,
        description="seconds a bot's lead over DATA_DIR lasts unrenewed; a standby bot takes over after twice that",
    )

    @field_validator("allowed_users", "admin_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: Any) -> frozenset[int]:
        return _id_set(value)

    @field_validator("bot_token", "telegram_api_url", "base_model", "train_steps", "draw_steps", "blob_url",
                     "prior", "num_class_images", "train_resolution",
                     "engine_cache_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `.env.example` leaves optional variables empty; an empty string means "not set".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.match(value):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///path/to/file.sqlite3 or postgresql://user:password@host:port/database")
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            # The settings are frozen once built; this fills in the one default that depends on another value.
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'kabina.sqlite3'}")
        return self

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"text", "json"}:
            raise ValueError("expected text or json")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL of a Bot API server")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_photo_bounds(self) -> Settings:
        if self.min_photos > self.max_photos:
            raise ValueError(f"MIN_PHOTOS ({self.min_photos}) is larger than MAX_PHOTOS ({self.max_photos})")
        return self

    def require_bot_token(self) -> str:
        if self.bot_token is None or not self.bot_token.get_secret_value().strip():
            raise ConfigError("BOT_TOKEN is not set: put the token @BotFather gave you into .env as BOT_TOKEN=...")
        return self.bot_token.get_secret_value().strip()

    def require_base_model(self) -> Path:
        hint = (
            "put the path of a local diffusers folder (SD1.x, SD2.x, SDXL, FLUX.1, FLUX.2 [klein]) or a single-file "
            ".safetensors checkpoint there (or try everything on a tiny model: python -m engine tiny-model ./tiny "
            "and BASE_MODEL=./tiny)"
        )
        if self.base_model is None:
            raise ConfigError(f"BASE_MODEL is not set: {hint}")
        path = self.base_model.expanduser()
        if not path.exists():
            raise ConfigError(f"BASE_MODEL={path} does not exist: {hint}")
        if path.is_file() and path.suffix not in {".safetensors", ".ckpt"}:
            raise ConfigError(f"BASE_MODEL={path} is a file but not a .safetensors checkpoint: {hint}")
        return path

    # The local Bot API server (telegram-bot-api --local): no 20 MB cap of its own, files read from its disk.
    telegram_api_local: bool = Field(False, description="true: TELEGRAM_API_URL is a telegram-bot-api --local server")
    telegram_api_files: str | None = Field(
        None, description="SERVER_DIR:BOT_DIR, where the local server's working folder is mounted for the bot"
    )

    @field_validator("telegram_api_files", mode="before")
    @classmethod
    def _empty_files_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_local_api(self) -> Settings:
        if self.telegram_api_local:
            if self.telegram_api_url is None:
                raise ValueError("TELEGRAM_API_LOCAL=true needs TELEGRAM_API_URL, the local Bot API server's URL")
            self.local_api_files()  # a malformed mapping is a start-up error, not a refused photo later
        return self

    def local_api_files(self) -> tuple[PurePosixPath, Path]:
        """(the local server's working folder on its own disk, the same folder as this process sees it)."""
        hint = "expected TELEGRAM_API_FILES=SERVER_DIR:BOT_DIR, e.g. /var/lib/telegram-bot-api:/srv/telegram-bot-api"
        server, sep, local = (self.telegram_api_files or "").strip().partition(":")
        if not sep or not server.startswith("/") or not local.startswith("/"):
            raise ValueError(f"TELEGRAM_API_FILES: {hint}, both absolute")
        if ".." in PurePosixPath(server).parts or ".." in Path(local).parts:
            raise ValueError(f"TELEGRAM_API_FILES: {hint}, without '..'")
        return PurePosixPath(server), Path(local)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; any problem becomes one ConfigError line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]).upper() if err["loc"] else "configuration"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError("; ".join(problems)) from None
