"""Process settings for the server and workers, read from ``OPCOD_*`` environment variables (or ``.env``).

Why one object: the server, every worker and the migrations must agree on the database and the data
directory, and a researcher switches a team setup on with a single ``OPCOD_DATABASE_URL``. Defaults
give a private, single-user install: a SQLite file under ``./.opcod`` and a loopback-only server.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
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
    torch_threads: int | None = Field(None, ge=1, le=1024, description="CPU threads each worker's torch uses; "
                                      "default: torch's (all cores) for `opcod worker`; `opcod serve --workers N` "
                                      "sets (cores - 1) / N (at least 1): one core stays with the web server, "
                                      "and N workers do not oversubscribe the CPU.")
    stall_after_s: float = Field(7200.0, gt=0, description="A worker whose trainer reports nothing (no event, no "
                                 "step boundary) for this long stops refreshing its run's heartbeat, so another "
                                 "worker takes the run over (a hung trainer must not hold a run for ever).")
    max_body_bytes: int = Field(1 << 20, gt=0, description="Requests with a larger body are refused (413).")
    cache_dir: Path | None = Field(None, description="Model and warm-up cache; default <data_dir>/cache.")
    approval_poll_s: float = Field(0.5, gt=0, description="How often a worker waiting for approvals polls.")
    poll_s: float = Field(1.0, gt=0, description="How often an idle worker looks for queued runs and replays.")
    sse_poll_s: float = Field(0.5, gt=0, description="How often a watched run's event feed looks for new events "
                              "(one read per run, shared by its open streams: app.api.event_feed).")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names the server answers to besides the loopback names "
        "(127.0.0.1, localhost, ::1): the names it is reached by behind a proxy or on a network. A request "
        "whose Host header is none of them is refused (DNS rebinding).")
    secret_key: SecretStr | None = Field(
        None, description="Key that signs dashboard sessions and CSRF tokens; default: a random key kept in "
        "<data_dir>/secret_key (created on first use, mode 600), shared by every process on that directory.")
    session_max_age_s: int = Field(12 * 3600, gt=0, description="A dashboard session expires this long after sign-in.")
    auth_failures_per_minute: int = Field(10, gt=0, description="Failed authentications (wrong token, failed "
                                          "sign-in) one client address may make per minute; then 429.")
    read_roots: list[Path] = Field(
        default_factory=list, description="Directories, besides <data_dir>/datasets and the model cache, that "
        "runs submitted to the server may read data and models from (the CLI reads anything).")
    allowed_hub_ids: list[str] = Field(
        default_factory=lambda: ["*"], description="Hub model and dataset ids that runs submitted to the server "
        "may name (shell patterns such as 'HuggingFaceTB/*'; empty: none).")
    ray_address: str | None = Field(None, description="Ray cluster that workers join for runs with executor "
                                    "'ray' ('auto' or 'ray://host:port'); default: a local Ray per run.")
    budget_step_tokens: int = Field(1 << 20, gt=0, description="Most tokens one training step of a run submitted "
                                    "to the server may generate: batch_prompts x n x (rollout + tutor max_new_tokens).")
    budget_total_steps: int = Field(10_000, gt=0, description="Most optimizer steps of a submitted run: rounds x 2 x "
                                    "steps_per_direction.")
    budget_eval_samples: int = Field(64, gt=0, description="Most samples per question of a submitted run's "
                                     "evaluation (eval.k) and gate (gating.val_k).")
    max_takeovers: int = Field(3, ge=0, description="A run whose worker died this many times (out of memory, killed) "
                               "is failed instead of being taken over again.")
    max_event_streams: int = Field(200, gt=0, description="Most event streams (SSE) open at once; more get 503.")
    max_open_replays: int = Field(16, gt=0, description="Most queued or running replays per run; more get 429.")
    replays_per_step: int = Field(2, gt=0, description="Most replays a running run's worker serves at one step "
                                  "boundary (the rest wait for the next ones), so replays cannot stall training.")
    secure_cookies: bool = Field(False, description="Mark cookies Secure (set it when a TLS proxy serves the "
                                                    "dashboard).")

    @property
    def runs_dir(self) -> Path:
        """Run outputs (checkpoints, events.jsonl): <data_dir>/runs/<run id>."""
        return (self.data_dir / "runs").resolve()

    @property
    def datasets_dir(self) -> Path:
        """Where the server's users put data files for their runs (a read root of ``app.services.run_policy``)."""
        return (self.data_dir / "datasets").resolve()

    @property
    def model_cache_dir(self) -> Path:
        return (self.cache_dir or self.data_dir / "cache").resolve()

    def session_secret(self) -> str:
        """``secret_key``, or the data directory's persisted random key (created here on first use)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".secret_key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, path)  # first writer wins; a concurrent process reads the winner's key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip()

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
