"""The benchmarks' pinned CPU float path (opcod_core.bench.floatpath) and its place in the run and student caches.

The pin is checked in fresh interpreters: what it sets must be in force before torch loads."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opcod_core.bench import runcache
from opcod_core.bench.floatpath import PIN_ENV, PINNED, machine_note, student_cache


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


needs_avx2 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or "avx2" not in _cpu_flags(),
                                reason="the pin is an x86 AVX2 path")


def _python(code: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PIN_ENV}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@needs_avx2
def test_pin_before_torch_runs_the_avx2_kernels():
    out = _python("from opcod_core.bench.floatpath import describe, pin\n"
                  "pin('avx2')\n"
                  "print(describe())\n"
                  "import os, torch\n"
                  "print(torch.backends.cpu.get_cpu_capability())\n"
                  "print(os.environ['MKL_CBWR'], os.environ['ONEDNN_MAX_CPU_ISA'])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["avx2", "AVX2", "AVX2 AVX2"]


@needs_avx2
def test_pin_after_torch_loaded_on_another_path_is_refused():
    out = _python("import torch\n"
                  "torch.ones(3) + 1\n"
                  "from opcod_core.bench.floatpath import pin\n"
                  "pin('avx2')", ATEN_CPU_CAPABILITY="default")
    assert out.returncode != 0
    assert "--float-path avx2" in out.stderr and "DEFAULT" in out.stderr


def test_native_leaves_the_environment_and_says_what_runs():
    out = _python("from opcod_core.bench.floatpath import describe, pin\n"
                  "import os, torch\n"
                  "pin('native')\n"
                  "print(describe())\n"
                  "print(any(k in os.environ for k in ('ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA')))\n"
                  "print(torch.backends.cpu.get_cpu_capability())")
    assert out.returncode == 0, out.stderr
    described, env_set, capability = out.stdout.split("\n")[:3]
    assert env_set == "False"
    if capability == "AVX2" and platform.machine().lower() in ("x86_64", "amd64"):
        assert described == PINNED  # an AVX2-only CPU runs the pinned kernels unpinned
    else:
        assert described == f"native:{platform.machine()}:{capability}"


def test_unknown_path_names_the_flag():
    out = _python("from opcod_core.bench.floatpath import pin\npin('avx512')")
    assert out.returncode != 0 and "--float-path" in out.stderr


def test_pinned_keys_are_the_keys_from_before_the_pin_and_native_keys_differ():
    import torch

    config = json.dumps({"a": 1})
    before = hashlib.sha256(json.dumps(
        {"config": {"a": 1}, "method": "opcod", "seed": 3, "student_seed": 0, "validation": False,
         "code": runcache.code_digest(), "torch": torch.__version__.split("+")[0]}, sort_keys=True).encode()).hexdigest()[:24]
    pinned = runcache.run_key(config, "opcod", 3, 0, False, float_path=PINNED)
    assert pinned == before
    native = runcache.run_key(config, "opcod", 3, 0, False, float_path="native:x86_64:AVX512")
    other = runcache.run_key(config, "opcod", 3, 0, False, float_path="native:x86_64:AVX2")
    assert len({pinned, native, other}) == 3


def test_floatpath_module_is_outside_the_code_digest_and_inside_the_key(tmp_path):
    import opcod_core

    tree = tmp_path / "opcod_core"
    shutil.copytree(Path(opcod_core.__file__).parent, tree, ignore=shutil.ignore_patterns("__pycache__"))
    assert runcache.tree_digest(tree) == runcache.code_digest()
    floatpath = tree / "bench" / "floatpath.py"
    floatpath.write_text(floatpath.read_text() + "\nPINNED_TOO = 'avx2'\n")
    assert runcache.tree_digest(tree) == runcache.code_digest()  # the pin's code keys no run...
    trainer = tree / "bench" / "fidelity.py"
    trainer.write_text(trainer.read_text() + "\nCHANGED = 1\n")
    assert runcache.tree_digest(tree) != runcache.code_digest()  # ...while the benchmark's code does
    key = runcache.run_key("{}", "opcod", 0, 0, False, float_path=PINNED)
    assert runcache.run_key("{}", "opcod", 0, 0, False, float_path="native:x86_64:AVX512") != key


def test_student_cache_keeps_native_builds_apart(tmp_path):
    assert student_cache(tmp_path, PINNED) == tmp_path
    native = student_cache(tmp_path, "native:x86_64:AVX512")
    assert native.parent == tmp_path and native.name == "float-native-x86-64-AVX512"
    assert student_cache(tmp_path, "native:x86_64:AVX2") != native


def test_report_note_names_the_path():
    assert "pinned to AVX2" in machine_note(PINNED)
    assert "native:x86_64:AVX512" in machine_note("native:x86_64:AVX512")


def test_bench_commands_keep_a_native_paths_students_and_rows_apart():
    out = _python("from argparse import Namespace\n"
                  "from opcod_core.bench.floatpath import pinned\n"
                  "args = pinned(lambda a: a)(Namespace(float_path='native', cache_dir='/c', rows_dir='/r'))\n"
                  "print(args.cache_dir, args.rows_dir)", ATEN_CPU_CAPABILITY="default")
    assert out.returncode == 0, out.stderr
    folder = "float-native-" + "".join(c if c.isalnum() else "-" for c in platform.machine()) + "-DEFAULT"
    assert out.stdout.split() == [f"/c/{folder}", f"/r/{folder}"]


@needs_avx2
def test_bench_commands_pinned_use_the_given_folders():
    out = _python("from argparse import Namespace\n"
                  "from opcod_core.bench.floatpath import pinned\n"
                  "args = pinned(lambda a: a)(Namespace(float_path='avx2', cache_dir='/c', rows_dir=None))\n"
                  "print(args.cache_dir, args.rows_dir)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["/c", "None"]


@needs_avx2
def test_float_path_probe_runs_the_pin_and_is_deterministic_under_it():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import float_path

    first, second = (float_path.run(float_path.SETTINGS["pinned"], 2) for _ in range(2))
    assert first["capability"] == "AVX2" and first["step_ms"] > 0
    assert {k: v for k, v in first.items() if k != "step_ms"} == {k: v for k, v in second.items() if k != "step_ms"}
