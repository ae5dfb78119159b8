"""Process settings for the server and workers, read from ``OPCOD_*`` environment variables (or ``.env``).

Why one object: the server, every worker and the migrations must agree on the database and the data
directory, and a researcher switches a team setup on with a single ``OPCOD_DATABASE_URL``. Defaults
give a private, single-user install: a SQLite file under ``./.opcod`` and a loopback-only server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPCOD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./.opcod"), description="Where the SQLite file, run outputs and caches live.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means the SQLite file <data_dir>/opcod.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db.")
    api_token: str | None = Field(None, description="When set, every /api/v1 call needs 'Bearer <token>'.")
    host: str = Field("127.0.0.1", description="Bind address; non-loopback needs api_token.")
    port: int = Field(8000, ge=1, le=65535)
    heartbeat_s: float = Field(5.0, gt=0, description="How often a worker refreshes its heartbeat.")
    stale_after_s: float = Field(30.0, gt=0, description="A run whose heartbeat is older is taken over.")
    max_body_bytes: int = Field(1 << 20, gt=0, description="Requests with a larger body are refused (413).")
    cache_dir: Path | None = Field(None, description="Model and warm-up cache; default <data_dir>/cache.")
    approval_poll_s: float = Field(0.5, gt=0, description="How often a worker waiting for approvals polls.")
    poll_s: float = Field(1.0, gt=0, description="How often an idle worker looks for queued runs and replays.")
    sse_poll_s: float = Field(0.5, gt=0, description="How often an open SSE stream looks for new events.")

    @property
    def runs_dir(self) -> Path:
        """Run outputs (checkpoints, events.jsonl): <data_dir>/runs/<run id>."""
        return (self.data_dir / "runs").resolve()

    @property
    def model_cache_dir(self) -> Path:
        return (self.cache_dir or self.data_dir / "cache").resolve()

    @model_validator(mode="after")
    def _default_database_url(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'opcod.db').resolve()}"
        if self.stale_after_s <= self.heartbeat_s:
            raise ValueError("stale_after_s must be greater than heartbeat_s")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()`` after changing env)."""
    return Settings()
