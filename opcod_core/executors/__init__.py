"""Where students live (2 to 8 of them). ``local``: all in the trainer's process. ``ray``: each in a Ray actor with
the resources the config asks for, the trainer (the worker process) coordinating through proxies
that have the student runtime's methods, so the trainer, observer and controls do not change.

``build_students`` is the placement: the trainer receives the students it returns (or students a
caller placed itself) and never imports an executor."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from opcod_core.config import RunConfig
from opcod_core.data.types import SplitDataset


def build_students(config: RunConfig, data: SplitDataset, cache_dir: Path | None = None,
                   aliases: dict[str, str] | None = None,
                   progress: Callable[[str, int, int, float], None] | None = None) -> dict:
    """Every student, where ``config.executor`` says they live: in this process, or each in a Ray
    actor behind a proxy with the same methods (``opcod_core.executors.ray``)."""
    if config.executor == "ray":
        from opcod_core.executors.ray import ray_students

        return ray_students(config, data, cache_dir, aliases)
    from opcod_core.executors.local import local_students

    return local_students(config, data, cache_dir, aliases, progress)


def close_students(students: dict, config: RunConfig, placed_here: bool) -> None:
    """Close every student (engines, actors), then, when ``build_students`` placed them, release what
    placing them attached this process to (the Ray executor's cluster)."""
    try:
        for rt in students.values():
            rt.close()
    finally:
        if placed_here and config.executor == "ray":
            from opcod_core.executors.ray import release_ray

            release_ray()
