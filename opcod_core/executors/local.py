"""The local executor: every student built in this process (``build.build_student``). Tiny and science-world
students (~1M parameters each) fit many to a CPU process; larger ones go to Ray actors, one per student."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from opcod_core.build import build_student
from opcod_core.config import RunConfig
from opcod_core.data.types import SplitDataset
from opcod_core.student import StudentRuntime


def local_students(config: RunConfig, data: SplitDataset, cache_dir: Path | None = None,
                   aliases: dict[str, str] | None = None,
                   progress: Callable[[str, int, int, float], None] | None = None) -> dict[str, StudentRuntime]:
    return {st.name: build_student(i, config, data, cache_dir, aliases, progress)
            for i, st in enumerate(config.students)}
