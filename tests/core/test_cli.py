"""The ``opcod`` command line as a user runs it: a subprocess with the installed console script."""

import json
import subprocess
import sys
from pathlib import Path

OPCOD = [sys.executable, "-m", "opcod_core.cli"]


def run(*args):
    return subprocess.run([*OPCOD, *args], capture_output=True, text=True, timeout=120)


def test_data_inspect_prints_counts_and_bad_records(tmp_path: Path):
    path = tmp_path / "set.jsonl"
    good = [{"question": f"What is the SI unit of quantity {i}?", "choices": ["metre", "second", "kelvin", "mole"],
             "answer": "B", "domain": "physics" if i % 2 else "chemistry"} for i in range(20)]
    lines = [json.dumps(r) for r in good]
    lines.insert(4, json.dumps({"question": "Broken?", "choices": ["a", "b"], "answer": "Z", "domain": "physics"}))
    lines.insert(7, "{not json")
    path.write_text("\n".join(lines) + "\n")
    res = run("data", "inspect", str(path))
    assert res.returncode == 1, res.stderr
    out = res.stdout
    assert "physics" in out and "chemistry" in out and "train" in out
    assert "set.jsonl:5" in out and "set.jsonl:8" in out


def test_presets_and_invalid_config_errors(tmp_path: Path):
    res = run("presets")
    assert res.returncode == 0 and {"tiny", "demo", "paper"} <= set(res.stdout.split())
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\noverrides:\n  gating:\n    tau: -3\n")
    res = run("train", str(bad), "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 2 and "gating.tau" in res.stderr


def test_train_never_deletes_an_earlier_run_unless_told(tmp_path: Path):
    from opcod_core.cli import earlier_run

    out = tmp_path / "run"
    assert earlier_run(out) == ""
    (out / "checkpoints" / "task-000003").mkdir(parents=True)
    (out / "events.jsonl").write_text('{"type": "run_start"}\n')
    assert earlier_run(out) == "events.jsonl and checkpoints"
    res = run("train", "--preset", "tiny", "--out", str(out), "--quiet")
    assert res.returncode == 2 and "--resume" in res.stderr and "--overwrite" in res.stderr
    assert (out / "events.jsonl").read_text() == '{"type": "run_start"}\n'   # untouched
    assert (out / "checkpoints" / "task-000003").is_dir() and not (out / "config.json").exists()


def test_bench_students_names_an_unknown_specialist():
    res = run("bench", "students", "--specialists", "physics,biology", "--probe-steps", "1", "--out", "/tmp/x.md")
    assert res.returncode != 0 and "--specialists: biology not among chemistry, physics, electricity" in res.stderr
