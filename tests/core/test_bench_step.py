"""benchmarks/step_vs_trl.py in its ``--quick`` form (the project's side: a smoke run, timings not
asserted), the FLOP count it divides by, and the docs/benchmarks.md table writer both benchmarks use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "sides"))

import step_vs_trl  # noqa: E402
import workload  # noqa: E402
from record import record  # noqa: E402


@pytest.mark.slow
def test_quick_run_measures_the_project_side(tmp_path):
    args = step_vs_trl.argparse.Namespace(
        vocab="4096", reps=1, steps=1, warmup=0, threads=1, peer="none", quick=True, micro_batch=None,
        compare_rev="HEAD", workdir=str(tmp_path / "work"), cache_dir=str(tmp_path / "cache"), no_record=True)
    result = step_vs_trl.measure(args)
    side = result["vocab"]["4096"]["sides"]["project"]
    # this checkout and the committed HEAD's opcod_core (a worktree), side by side
    assert set(result["vocab"]["4096"]["sides"]) == {"project", "project@HEAD"}
    assert result["vocab"]["4096"]["tokens_per_s_ratio_vs_rev"] > 0
    assert side["s_per_step"] > 0 and side["generate_s"] > 0 and side["update_s"] > 0
    assert 0 < side["step_flop_share"] < 1.5 and side["peak_rss_gb"] > 0
    from project_step import default_micro_batch

    assert side["micro_batch"] == default_micro_batch() == 8  # what runs use
    # the workload the sides read: 4 prompts, their contexts, the tokenizer of exactly 4,096 entries
    w = workload.Workload.load(tmp_path / "work" / "quick-v4096" / "workload.json")
    assert len(w.prompts) == len(w.contexts) == workload.PROMPTS and w.new_tokens == 8
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(w.tokenizer_dir)) == 4096


def test_useful_flops_count_each_phase():
    m = {"hidden": 4, "layers": 1, "heads": 1, "intermediate": 8}
    # one token, no logits: the body only (attention of one query to one key)
    body = 2 * (4 * 16 + 3 * 4 * 8)
    assert workload.forward_flops(m, 10, 1, 0, 0) == body + 2 * 2 * 4 * 1
    # the output layer counts only where logits are used
    assert workload.forward_flops(m, 10, 1, 0, 1) - workload.forward_flops(m, 10, 1, 0, 0) == 2 * 4 * 10
    f = workload.useful_flops(m, 10, [2], [5], 3)
    assert f["update"] == 3 * workload.forward_flops(m, 10, 2, 3, 3) + workload.forward_flops(m, 10, 5, 3, 3)
    assert f["generate"] == workload.forward_flops(m, 10, 2, 2, 0) + 3 * 2 * 4 * 10


def test_record_adds_a_line_to_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    record("Alpha", "python a.py", "a 1", doc)
    record("Beta", "python b.py", "b 1", doc)
    doc.write_text(doc.read_text().replace("## Beta", "Notes under alpha's table.\n\n## Beta"))
    record("Alpha", "python a.py --x", "a 2", doc)
    text = doc.read_text()
    alpha, beta = text.split("## Beta")
    assert alpha.index("a 1") < alpha.index("a 2") < alpha.index("Notes under alpha's table.")
    assert "b 1" in beta and "a 2" not in beta
    assert text.startswith("# Benchmarks")


@pytest.mark.slow
def test_checkpoint_benchmark_counts_time_and_new_bytes(tiny_cache, tmp_path):
    """benchmarks/checkpoints.py on the tiny preset: every checkpoint timed, the bytes it added counted
    without the files hard-linked from the one before (so less than its apparent size once a tutor's
    files are linked), and a share of the step time."""
    import checkpoints

    r = checkpoints.measure_preset("tiny", 1, tiny_cache, tmp_path)
    assert r["checkpoints"] >= 3 and r["steps"] == 2
    assert 0 < r["added_mb_median"] <= r["added_mb_max"] <= r["apparent_mb_max"]
    assert r["added_mb_median"] < r["apparent_mb_max"]  # a step checkpoint links the tutor's unchanged files
    assert r["checkpoint_s_median"] > 0 and r["checkpoint_share_of_step_time"] > 0
    ph = r["phases"]  # the whole OPCoD step: its phases fit inside it
    assert {"rollout_s", "feedback_s", "train_s", "step_s"} <= set(ph) and ph["rollout_tokens_per_s"] > 0
    # two steps: each median is a mean, which keeps the per-step sum; 0.002: three roundings to 1 ms
    assert ph["rollout_s"] + ph["feedback_s"] + ph["train_s"] <= ph["step_s"] + 0.002
