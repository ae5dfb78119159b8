"""The API's read models of worker liveness (``GET /api/v1/workers``, the runs page): its own module, beside
``app.schemas``, because it describes processes rather than runs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class WorkerOut(_Out):
    id: int
    name: str
    hostname: str
    pid: int
    status: str = Field(description="idle | busy | stopped, as the worker last wrote it.")
    started_at: datetime
    heartbeat_at: datetime
    alive: bool = Field(description="Not stopped, and its heartbeat is newer than the server's stale_after_s.")
    run_id: int | None = Field(None, description="The run it holds, if any.")


class WorkersOut(BaseModel):
    items: list[WorkerOut]
    alive: int = Field(description="Workers alive now.")
    busy: int = Field(description="Alive workers holding a run.")
