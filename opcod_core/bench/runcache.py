"""Result cache of the fidelity benchmark's runs: an interrupted benchmark continues where it stopped.

Why: the benchmark at the paper's schedule is tens of runs of 200 steps, hours on a 2-core CPU, more
than one working session. Each run is a pure function of its task (config, method, seed, student build
seed, split), so its result is stored under a key of everything it depends on, and a later invocation,
on this machine or after the directory was committed and checked out elsewhere, reads it back instead
of running it again. The key covers:

* the run's full config after the method's overrides (``RunConfig.to_json``), the method, the seed, the
  student build seed and whether it scores the validation split (learning-rate selection);
* the code that decides a run's numbers: every ``.py`` file of ``opcod_core`` except the benchmark's
  own reporting and command line (editing a report must not re-run hours of training; editing the
  trainer, a loss or the data generator must), hashed as its syntax tree without docstrings
  (``code_fingerprint``): a comment or docstring edit, which the benchmark's main run, spread over
  several working sessions, would otherwise pay for with every cached run, changes no key;
* the torch version (kernels change floats);
* the CPU float path (``floatpath``), when it is not the benchmarks' pinned AVX2 path: a run made on
  another CPU's native kernels is another run. Pinned runs keep the keys they had before the pin existed
  (they were made on AVX2 machines); ``floatpath.py`` is left out of the code digest for the same reason,
  its effect enters the key here.

Entries are small JSON files (the run's summary, gate records, feedback categories, break samples and
per-context divergence; no per-token arrays), written atomically, so a killed run leaves no half entry.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
from pathlib import Path

# Files whose edits cannot change a run's numbers (reporting and command lines).
CODE_EXCLUDED = ("bench/report.py", "bench/cli.py", "bench/drift.py", "bench/drift_cli.py", "bench/runcache.py",
                 "bench/primary.py", "bench/trio_analysis.py", "bench/trio_report.py", "bench/summary.py",
                 "bench/readme_sync.py", "bench/students.py", "bench/floatpath.py", "bench/threads_check.py",
                 "bench/students_cli.py", "bench/students_report.py", "cli.py")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    import opcod_core

    return tree_digest(Path(opcod_core.__file__).parent)


def tree_digest(root: Path) -> str:
    """The digest of the package tree at ``root``: every module's ``code_fingerprint`` but CODE_EXCLUDED's."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in CODE_EXCLUDED:
            continue
        h.update(rel.encode())
        h.update(code_fingerprint(path.read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:16]


def code_fingerprint(source: str) -> str:
    """The module's syntax tree without docstrings, as text: what the code does, not how it is written up
    (comments are not in the tree; names, literals and structure are; positions are left out)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def run_key(config_json: str, method: str, seed: int, student_seed: int, validation: bool,
            float_path: str | None = None) -> str:
    """``float_path``: ``floatpath.describe()`` unless given; the pinned path adds nothing to the key."""
    import torch

    from opcod_core.bench.floatpath import PINNED, describe

    parts = {"config": json.loads(config_json), "method": method, "seed": seed, "student_seed": student_seed,
             "validation": validation, "code": code_digest(), "torch": torch.__version__.split("+")[0]}
    float_path = describe() if float_path is None else float_path
    if float_path != PINNED:
        parts["float_path"] = float_path
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load(directory: Path | None, key: str) -> dict | None:
    if directory is None:
        return None
    path = Path(directory) / f"{key}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def store(directory: Path | None, key: str, result: dict) -> None:
    if directory is None:
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(result, separators=(",", ":")))
    os.replace(tmp, directory / f"{key}.json")
