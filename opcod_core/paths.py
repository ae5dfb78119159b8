"""Default locations of the library's files, in one small module that the command lines share."""

from __future__ import annotations

from pathlib import Path


def default_cache_dir() -> Path:
    """Warm-up and specialisation cache of the command line (``--cache-dir`` overrides it)."""
    return Path.home() / ".cache" / "opcod"
