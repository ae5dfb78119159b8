"""The benchmarks' CPU float path, pinned to AVX2 so that a student or a run comes out the same on any x86 CPU.

Why: torch chooses its vectorised kernels (ATen), its BLAS code path (MKL) and oneDNN's by the instruction
set of the CPU it runs on, and kernels of different widths round differently in the last bits. A warm-up
of thousands of steps at a high learning rate amplifies those bits into a different student. Measured on
2026-12-04: phys of recipe row 11d (build seed 0, one thread), built on an AVX-512 AMD EPYC, left the
committed build (made on AVX2 EPYCs) at the first loss figure (mean of steps 1-250: 1.3211 against 1.3230;
steps 251-500: 0.5067 against 0.4549). Its first attempt never converged, and the second ended a different
student: chemistry 0.406 against 0.307 at build check. The same machine with the three libraries pinned
to AVX2 reproduced the committed curve (1.3230, 0.4549, ...).

``pin("avx2")`` (the benchmarks' default) sets, before torch is loaded:

* ``ATEN_CPU_CAPABILITY=avx2``: ATen's dispatch to its AVX2 kernels;
* ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility, the AVX2 code path on any CPU that has it;
* ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's kernels at most AVX2.

Worker processes are spawned, so they inherit the environment. ``pin("native")`` leaves the environment
alone (this module writes the three settings and reads none: the core reads no environment variables).
The float path then enters the run cache's key and the student cache's folder (``describe``,
``student_cache``), so a native run never passes for a pinned one. Pinned keys stay as they were before
the pin existed: those runs were made on AVX2 machines, whose native path is the pinned one, and a rebuild
with the pin checked that on one student (docs/results/fidelity-notes.md). Off x86 the pin does nothing and
the path is native.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

PINNED = "avx2"
PIN_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CHOICES = (PINNED, "native")


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def pin(path: str) -> None:
    """Sets the float path for this process and the workers it spawns (``describe()`` then says which runs).

    Raises SystemExit when torch was loaded before the pin and runs another path (the pin would be
    half applied: MKL and oneDNN may have read their setting already)."""
    if path not in CHOICES:
        raise SystemExit(f"--float-path: {path!r} is not one of {', '.join(CHOICES)}")
    if path == PINNED and _x86():
        if "torch" in sys.modules:
            import torch

            capability = torch.backends.cpu.get_cpu_capability()
            if capability != "AVX2":
                raise SystemExit("--float-path avx2: torch was loaded before the pin, with CPU capability "
                                 f"{capability}; pin before importing torch")
        for name, value in PIN_ENV.items():
            os.environ[name] = value


def describe() -> str:
    """``avx2`` when torch runs its AVX2 kernels on x86, else ``native:<machine>:<torch's CPU capability>``.

    Read from torch, not from the environment (the core reads no environment variables): ``pin`` sets
    the three settings together, and a worker spawned from a pinned process inherits them. An AVX2-only
    CPU runs the AVX2 kernels unpinned too; the runs cached before the pin existed come from such CPUs."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if _x86() and capability == "AVX2":
        return PINNED
    return f"native:{platform.machine()}:{capability}"


def student_cache(cache_dir: Path, path: str | None = None) -> Path:
    """The warm-up cache of this float path: ``cache_dir`` itself when pinned, a ``native-…`` folder in it
    otherwise (a student built on another path is another student)."""
    path = describe() if path is None else path
    if path == PINNED:
        return Path(cache_dir)
    return Path(cache_dir) / ("float-" + "".join(c if c.isalnum() else "-" for c in path))


def machine_note(path: str | None = None) -> str:
    """The float path as the report headers state it."""
    path = describe() if path is None else path
    if path == PINNED:
        return "CPU kernels pinned to AVX2 (ATen, MKL, oneDNN)"
    return f"CPU kernels native ({path}, not pinned)"


def add_float_path(parser) -> None:
    """``--float-path`` on a bench command that builds or reads students: its command pinned before torch
    loads (``pinned``), a native path's student cache and build rows kept apart."""
    parser.add_argument("--float-path", choices=CHOICES, default=PINNED, help="CPU kernels: avx2 (default) "
                        "pins ATen, MKL and oneDNN to AVX2 so that students and runs are the same on any x86 CPU; "
                        "native lets torch choose (kept apart in the result and student caches)")
    parser.set_defaults(func=pinned(parser.get_default("func")))


def pinned(cmd):
    """``cmd(args)`` after ``pin(args.float_path)``, with ``args.cache_dir`` (and ``args.rows_dir`` where
    given) moved to the float path's own folder (``student_cache``)."""
    def run(args) -> int:
        pin(args.float_path)
        args.cache_dir = str(student_cache(Path(args.cache_dir)))
        if getattr(args, "rows_dir", None):  # `bench students`: a native build's row is another build's row
            args.rows_dir = str(student_cache(Path(args.rows_dir)))
        return cmd(args)

    return run
