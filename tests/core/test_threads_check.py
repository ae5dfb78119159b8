"""Does a v3 specialist's build depend on the torch thread count? (opcod_core.bench.threads_check)"""

from __future__ import annotations

import json

import pytest
import torch


def _row(seed, threads, digest, passed=True, measured=None, warmup=None):
    return {"student": "phys", "build_seed": seed, "threads": threads, "passed": passed,
            "measured": measured or {"physics": 0.9}, "warmup": warmup or {"steps": 3000},
            "weights_sha256": digest if passed else None}


def test_builds_under_two_thread_counts_are_compared_by_the_student_they_cached():
    from opcod_core.bench.threads_check import thread_lines

    rows = [_row(0, 1, "aa"), _row(0, 2, "aa"), _row(1, 1, "bb"), _row(1, 2, "cc"), _row(2, 1, "dd")]
    lines = thread_lines(rows)
    assert "| phys | 0 | 1, 2 | weights | yes |" in lines
    assert "| phys | 1 | 1, 2 | weights | NO |" in lines
    assert not any(line.startswith("| phys | 2 |") for line in lines)      # built under one thread count only
    # builds that missed cached nothing: compared by what they measured and what their warm-up did
    missed = [_row(3, 1, None, passed=False), _row(3, 2, None, passed=False)]
    assert "| phys | 3 | 1, 2 | measured split and warm-up record | yes |" in thread_lines(missed)
    missed[1]["warmup"] = {"steps": 3001}
    assert "| phys | 3 | 1, 2 | measured split and warm-up record | NO |" in thread_lines(missed)
    # a miss under one thread count and a pass under the other are not the same build
    assert "| phys | 4 | 1, 2 | measured split and warm-up record | NO |" in thread_lines(
        [_row(4, 1, "ee"), _row(4, 2, None, passed=False)])
    assert thread_lines([_row(0, 1, "aa")]) == []


def test_probes_are_compared_loss_by_loss_and_by_their_weights():
    from opcod_core.bench.threads_check import compare_probes

    def probe(threads, losses, digest="w"):
        return {"student": "chem", "build_seed": 0, "threads": threads, "steps": len(losses), "losses": losses,
                "weights_sha256": digest, "capability": "AVX2"}
    same = compare_probes([probe(1, ["1.5", "1.25", "1.0"]), probe(2, ["1.5", "1.25", "1.0"])])
    assert same["identical"] and same["first_difference"] is None and same["threads"] == [1, 2]
    parted = compare_probes([probe(1, ["1.5", "1.25", "1.0"]), probe(2, ["1.5", "1.2500001", "1.0"], "v")])
    assert not parted["identical"] and parted["first_difference"] == 2 and not parted["same_weights"]
    # equal losses, other weights (a difference the losses did not show yet): not identical
    assert not compare_probes([probe(1, ["1.5"]), probe(2, ["1.5"], "v")])["identical"]


def test_a_cached_students_digest_is_that_of_its_saved_tensors(tmp_path):
    from safetensors.torch import save_file

    from opcod_core.bench.threads_check import student_digest, tensors_digest

    tensors = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.ones(4)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    assert student_digest(tmp_path) == tensors_digest(tensors) == tensors_digest(dict(reversed(tensors.items())))
    tensors["a"][0] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))   # one ulp
    assert tensors_digest(tensors) != student_digest(tmp_path)
    assert student_digest(tmp_path / "missing") is None


def test_a_passed_row_built_before_rows_kept_the_digest_gets_it_from_the_cache(tmp_path):
    """Rows committed before the digest existed are read back with it, from the student this cache holds;
    a row that records one keeps it, and a missed build has none."""
    from safetensors.torch import save_file

    from opcod_core.bench.students import _digest_of, build_world
    from opcod_core.bench.threads_check import tensors_digest
    from opcod_core.build import warmup_data, warmup_key
    from opcod_core.config import RunConfig
    from opcod_core.data import load_dataset
    from opcod_core.presets import world3_pair
    from opcod_core.trainer import data_spec

    cfg = RunConfig.from_dict(world3_pair("physics", "electricity", build_seed=0))
    st, data = cfg.students[0], load_dataset(data_spec(cfg))
    key = warmup_key(st, cfg, 0, warmup_data(st, cfg, data))
    student = tmp_path / "cache" / "warm" / key / st.name
    student.mkdir(parents=True)
    tensors = {"w": torch.full((3,), 0.5)}
    save_file(tensors, str(student / "model.safetensors"))
    assert _digest_of({"passed": True}, tmp_path / "cache", st, cfg, data) == tensors_digest(tensors)
    assert _digest_of({"passed": True, "weights_sha256": "kept"}, tmp_path / "cache", st, cfg, data) == "kept"
    assert _digest_of({"passed": False}, tmp_path / "cache", st, cfg, data) is None
    # build_world reads the row and writes the digest into the rows directory
    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    row = {"student": st.name, "build_seed": 0, "threads": 1, "passed": True, "measured": {}, "roles": {}}
    (rows_dir / f"{key}-{st.name}-t1.json").write_text(json.dumps(row))
    got = build_world(0, 1, tmp_path / "cache", rows_dir=rows_dir, specialists=("physics",))
    assert got[0]["weights_sha256"] == tensors_digest(tensors)
    assert json.loads((rows_dir / f"{key}-{st.name}-t1.json").read_text())["weights_sha256"] == tensors_digest(tensors)


@pytest.mark.slow
def test_the_probe_runs_each_specialists_first_steps_under_each_thread_count(tmp_path):
    """The probe is a real warm-up of the preset's students (their first steps, no check, no cache), each
    thread count in its own process. Whether the thread counts agree depends on this CPU's kernels, so the
    test checks what the probe records and that a probe repeated under one thread count is the same."""
    from opcod_core.bench.students import probe, run_probe
    from opcod_core.bench.students_report import probe_path, write_spread_report
    from opcod_core.bench.threads_check import write_probe

    torch_threads = torch.get_num_threads()
    try:
        once, again = probe(0, "physics", 1, 2), probe(0, "physics", 1, 2)
    finally:
        torch.set_num_threads(torch_threads)
    assert once == again and once["steps"] == 2 and len(once["losses"]) == 2 and once["student"] == "phys"
    results = run_probe([0], [1, 2], 2, jobs=2, log=lambda _m: None, specialists=("chemistry", "physics"))
    assert [r["student"] for r in results] == ["chem", "phys"]
    for r in results:
        assert r["threads"] == [1, 2] and r["steps"] == 2
        assert r["identical"] == (r["first_difference"] is None and r["same_weights"])
    assert results[1]["first_losses"] == once["losses"]     # the probe under one thread, again in its own process
    report = tmp_path / "students.md"
    write_probe(results, probe_path(report), "opcod bench students --probe-steps 2", "test machine", 2)
    row = {"student": "chem", "build_seed": 0, "threads": 1, "passed": True, "measured": {"chemistry": 0.9},
           "roles": {"chemistry": "strong"}, "expect": {}, "steps": 10, "build_s": 1.0, "warmup": {}}
    text = write_spread_report([row], report, "cmd", "m").read_text()
    assert "first 2 warm-up steps" in text
    for r in results:
        assert (f"| {r['student']} | 0 | 1, 2 | 2 | {'no' if r['first_difference'] else 'yes'} | "
                f"{'yes' if r['same_weights'] else 'no'} |") in text


def test_a_probe_of_one_loss_window_is_checked_against_the_builds_first_window(tmp_path):
    """The build rows keep the mean loss per 250 steps; a probe of 250 steps follows the build when its mean
    loss equals the first window of the build's first attempt (the discarded one when a later one passed)."""
    from opcod_core.bench.threads_check import first_window, probe_lines, write_probe
    from opcod_core.build import LOSS_CURVE_WINDOW

    rows = [{"student": "chem", "build_seed": 0, "threads": 1, "warmup": {"attempt": 0, "loss_curve": [1.2094, 0.328]}},
            {"student": "elec", "build_seed": 0, "threads": 1,
             "warmup": {"attempt": 1, "loss_curve": [1.4097], "discarded": [{"attempt": 0, "loss_curve": [1.4722]}]}},
            {"student": "phys", "build_seed": 0, "threads": 1, "warmup": {"steps": 10}}]
    assert first_window(rows, "chem", 0, 1) == 1.2094 and first_window(rows, "elec", 0, 1) == 1.4722
    assert first_window(rows, "phys", 0, 1) is None and first_window(rows, "chem", 1, 1) is None

    def result(name, mean, parted=None):
        return {"student": name, "build_seed": 0, "threads": [1, 2], "steps": LOSS_CURVE_WINDOW,
                "identical": parted is None, "first_difference": parted, "same_weights": parted is None,
                "mean_loss": mean}
    path = write_probe([result("chem", 1.2094), result("elec", 1.5, parted=7), result("phys", 1.3)],
                       tmp_path / "p.json", "opcod bench students --probe-steps 250", "m", LOSS_CURVE_WINDOW)
    lines = probe_lines(path, rows)
    assert "| chem | 0 | 1, 2 | 250 | yes | yes | – | 1.2094 | 1.2094 |" in lines
    assert "| elec | 0 | 1, 2 | 250 | no | no | 7 | 1.5000 | 1.4722 |" in lines
    assert "| phys | 0 | 1, 2 | 250 | yes | yes | – | 1.3000 | – |" in lines
    assert probe_lines(tmp_path / "missing.json", rows) == []
