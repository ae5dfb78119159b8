"""The result paragraphs of the benchmark reports come from their JSON (``opcod_core.bench.summary``), and
``opcod bench readme`` puts them between the README's markers and nowhere else (``opcod_core.bench.readme_sync``).

The results dicts are small, built in code with the shape the benchmark writes: primary comparisons and
aggregates come from the real ``primary_comparisons`` and ``aggregate`` over hand-made runs, the trio's
analysis from the real ``trio_analysis.analyse``. No training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opcod_core.bench.aggregate import aggregate
from opcod_core.bench.primary import primary_comparisons
from opcod_core.bench.readme_sync import markers
from opcod_core.bench.summary import PAIRS_KIND, TRIO_KIND, chosen_label, fidelity_summary, kind_of, trio_summary
from opcod_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOMS = ("chemistry", "physics")


# --- pairs ----------------------------------------------------------------------------------------------
def _run(method: str, seed: int, finals: dict[str, dict[str, float]]) -> dict:
    """One run as ``fidelity.run_config`` records it (no gates, feedback or breaks: not read here)."""
    return {"method": method, "seed": seed, "wall_s": 1.0, "gates": [], "categories": {}, "breaks": [],
            "divergence": {}, "divergence_n": {}, "weight_l2": {},
            "summary": {"students": {n: {"initial": {d: 0.5 for d in DOMS}, "final": f} for n, f in finals.items()}}}


def _pairs_results() -> dict:
    """Three seeds: chem gains physics under OPCoD against never-give (help holds); everything else is noise."""
    runs = []
    for seed, wobble in enumerate((-0.02, 0.0, 0.02)):
        runs += [_run("opcod", seed, {"chem": {"chemistry": 0.6 + wobble, "physics": 0.7 + wobble / 2},
                                      "phys": {"chemistry": 0.5 + wobble, "physics": 0.5 - wobble}}),
                 _run("never", seed, {"chem": {"chemistry": 0.6, "physics": 0.5 + wobble / 2},
                                      "phys": {"chemistry": 0.5, "physics": 0.5}}),
                 _run("always", seed, {"chem": {"chemistry": 0.6 - wobble, "physics": 0.6},
                                       "phys": {"chemistry": 0.5, "physics": 0.5 + wobble}})]
    names, strong = ["chem", "phys"], {"chem": "chemistry", "phys": "physics"}
    pair = {"domains": list(DOMS), "students": names, "strong": strong,
            "config": {"optim": {"lr": 0.0003}, "gating": {"tau": 0.35}},
            "tau_selection": None,
            "lr_selection": {f"{lr:g}": {m: {"score": 0.5, "weight_l2": 0.01} for m in ("never", "always")}
                             for lr in (0.0001, 0.0003)},
            "primary": primary_comparisons(runs, names, strong, list(DOMS)),
            "aggregate": aggregate(runs, names, list(DOMS)), "runs": runs}
    plan = {"pairs": [list(DOMS)], "seeds": [0, 1, 2], "methods": ["opcod", "never", "always"],
            "seeds_by_method": {m: [0, 1, 2] for m in ("opcod", "never", "always")}, "world": "v3"}
    return {"kind": PAIRS_KIND, "plan": plan, "pairs": {"chemistry-physics": pair}, "wall_s": 754.0,
            "command": "opcod bench fidelity --world v3 --seeds 3", "machine": "test"}


def _primary(results: dict, student: str, comparison: str) -> dict:
    return next(r for r in results["pairs"]["chemistry-physics"]["primary"]
                if r["student"] == student and r["comparison"] == comparison)


def test_pairs_paragraph_states_the_json_verdicts():
    res = _pairs_results()
    assert _primary(res, "chem", "help")["verdict"] == "holds"
    text = fidelity_summary(res, "docs/results/fidelity.md")
    assert text.startswith("Result of [docs/results/fidelity.md](docs/results/fidelity.md) (world v3; "
                           "pair chemistry-physics; seeds 0–2; wall time 12.6 min")
    assert "help (OPCoD − never-give on the weak domain) holds for 1 of 2 students" in text
    assert "harm (OPCoD − always-give on the strong domain) holds for 0 of 2" in text
    assert "learning rate 0.0003 chosen on validation, τ = 0.35)" in text     # τ was not selected
    assert "chem help +0.200 ± 0.000 on physics: holds" in text
    assert "Quick mode" not in text and "\n\n" not in text                     # one Markdown paragraph
    assert "OPCoD Pareto-improved" in text

    # change a verdict in the JSON: the sentence follows it
    _primary(res, "chem", "help")["verdict"] = "fails: OPCoD is worse"
    changed = fidelity_summary(res, "docs/results/fidelity.md")
    assert "help (OPCoD − never-give on the weak domain) holds for 0 of 2 students" in changed
    assert "fails for 1" in changed and "chem help +0.200 ± 0.000 on physics: fails: OPCoD is worse" in changed


def test_pairs_paragraph_counts_the_compute_of_cached_runs():
    """A benchmark resumed across sessions reads its runs from the cache: the runs' own wall times give its cost."""
    res = _pairs_results()
    for i, run in enumerate(res["pairs"]["chemistry-physics"]["runs"]):
        run["wall_s"] = 400.0 + 100.0 * (i % 2)          # 9 runs: 5 x 400 s + 4 x 500 s = 4000 s
    assert "compute 1.1 h summed over the 9 runs, each timed on its own" in fidelity_summary(res, "r.md")
    for run in res["pairs"]["chemistry-physics"]["runs"]:
        del run["wall_s"]
    assert "compute" not in fidelity_summary(res, "r.md")


def test_pairs_pareto_count_is_read_from_the_aggregate_verdicts():
    res = _pairs_results()
    agg = res["pairs"]["chemistry-physics"]["aggregate"]["opcod"]["students"]
    agg["chem"]["verdict"], agg["phys"]["verdict"] = "improved on physics (chemistry within noise)", "within noise"
    assert "OPCoD Pareto-improved 1 of 2 students beyond noise (chem in chemistry-physics)." in \
        fidelity_summary(res, "r.md")
    agg["chem"]["verdict"] = "mixed: up on physics, down on chemistry"
    assert "OPCoD Pareto-improved 0 of 2 students beyond noise." in fidelity_summary(res, "r.md")


def test_pairs_paragraph_leaves_out_what_the_json_lacks():
    res = _pairs_results()
    pr = res["pairs"]["chemistry-physics"]
    del pr["primary"], pr["aggregate"], pr["lr_selection"], res["wall_s"], res["plan"]["world"]
    text = fidelity_summary(res, "r.md")
    for absent in ("help", "harm", "Pre-registered", "Pareto", "chosen on validation", "wall time", "world"):
        assert absent not in text, absent
    assert "In chemistry-physics (learning rate 0.0003, τ = 0.35)." in text


def test_v2_report_json_gives_a_shorter_paragraph():
    """The committed v2 JSON (no runs, no primary comparisons, no world in its plan)."""
    res = json.loads((ROOT / "docs/results/fidelity-v2.json").read_text())
    assert kind_of(res) == PAIRS_KIND and "kind" not in res
    text = fidelity_summary(res, "docs/results/fidelity-v2.md")
    assert "seeds 0–4; wall time 36.3 min" in text
    assert "In chemistry-physics (learning rate 3e-05 chosen on validation, τ = 0.35 chosen on validation)." in text
    assert "OPCoD Pareto-improved 0 of 2 students beyond noise." in text
    assert "help" not in text and "world" not in text


def test_quick_runs_say_so_and_one_seed_claims_nothing():
    res = _pairs_results()
    res["command"] = "opcod bench fidelity --world v3 --quick --jobs 1"
    for pr in res["pairs"].values():
        pr["runs"] = [r for r in pr["runs"] if r["seed"] == 0]
        pr["primary"] = primary_comparisons(pr["runs"], pr["students"], pr["strong"], pr["domains"])
        pr["aggregate"] = aggregate(pr["runs"], pr["students"], pr["domains"])
    text = fidelity_summary(res, "r.md")
    assert "Quick mode: a pipeline check, not evidence of anything." in text
    assert "holds for 0 of 2 students and has no interval (1 seed) for 2" in text
    assert "(1 seed: no intervals, so none can be told from noise)" in text


def test_seeds_per_group_of_methods():
    res = _pairs_results()
    res["plan"]["seeds_by_method"] = {"opcod": [0, 1, 2, 3, 4], "never": [0, 1, 2, 3, 4], "grpo": [0, 1]}
    assert "seeds 0–4 for opcod, never; seeds 0, 1 for grpo" in fidelity_summary(res, "r.md")


# --- trio -----------------------------------------------------------------------------------------------
def _trio_results() -> dict:
    from opcod_core.bench.trio import POISON_OFF, POISON_ON, TRIO
    from opcod_core.bench.trio_analysis import analyse

    doms = ["chemistry", "physics", "electricity"]

    def finals(x, bump=0.0):
        return {n: {d: x + (bump if (n, d) == ("elec", "physics") else 0.0) for d in doms}
                for n in ("chem", "phys", "elec")}

    def run(method, seed, f, trust=()):
        pair = method.startswith("pair-")
        names = method.split("-")[1:] if pair else None
        short = {"chemistry": "chem", "physics": "phys", "electricity": "elec"}
        students = ({short[a]: {d: f[short[a]][d] for d in names} for a in names} if pair else f)
        return {"method": method, "seed": seed, "trust": list(trust), "breaks": [], "poison": {},
                "summary": {"students": {n: {"initial": {d: 0.1 for d in v}, "final": v} for n, v in students.items()}}}

    runs = []
    for seed, bump in enumerate((0.10, 0.12, 0.11)):
        runs.append(run(TRIO, seed, finals(0.5, bump)))
        runs += [run(p, seed, finals(0.5)) for p in ("pair-chemistry-physics", "pair-chemistry-electricity",
                                                     "pair-physics-electricity")]
        caught = [{"tutor": "chem", "action": "quarantine", "source": "auto", "step": 153 + seed}]
        runs += [run(POISON_ON, seed, finals(0.5, bump), caught), run(POISON_OFF, seed, finals(0.5, bump))]
    res = {"kind": TRIO_KIND, "mode": "trio", "plan": {"seeds": [0, 1, 2], "gating": "cognizance", "quick": False},
           "students": ["chem", "phys", "elec"], "domains": doms, "runs": runs, "wall_s": 3000.0,
           "poison": {"tutor": "chem", "from_step": 150, "threshold": 0.5, "within": 10, "total_steps": 300},
           "pair_configs": {"pair-chemistry-physics": {}, "pair-chemistry-electricity": {}, "pair-physics-electricity": {}},
           "roles": {"chem": {"chemistry": "strong", "physics": "partial", "electricity": "partial"},
                     "phys": {"physics": "strong", "electricity": "partial", "chemistry": "unknown"},
                     "elec": {"electricity": "strong", "chemistry": "unknown", "physics": "unknown"}}}
    res["analysis"] = analyse(res)
    return res


def test_trio_paragraph_states_the_analysis_verdicts_and_claims():
    res = _trio_results()
    c = res["analysis"]["claims"]
    assert c["quarantined_within"]["verdict"] == "holds" and c["others_within_noise"]["verdict"] == "holds"
    text = trio_summary(res, "docs/results/n-peers-trio.md")
    assert text.startswith("Result of [docs/results/n-peers-trio.md](docs/results/n-peers-trio.md) (trio gating "
                           "cognizance; seeds 0–2; wall time 50.0 min")
    assert "of 12 comparisons, 11 identical and 1 trio better." in text
    assert "physics against the pair with phys +0.110 ± 0.025 (trio better)" in text
    assert "Claim 1, chem is quarantined within 10 steps of the poison at every seed (auto-quarantine on): holds." in text
    assert "(quarantine on − clean trio): holds." in text and "Quick mode" not in text

    c["quarantined_within"]["verdict"] = "fails: seed 1: after 14 steps"
    c["others_within_noise"]["verdict"] = "fails: falls beyond noise for phys on physics"
    changed = trio_summary(res, "r.md")
    assert "(auto-quarantine on): fails: seed 1: after 14 steps." in changed
    assert "(quarantine on − clean trio): fails: falls beyond noise for phys on physics." in changed
    assert "Recent-window rule" not in changed                       # no replay asked for
    assert "with trust.recent" not in changed                        # the poisoned runs used the whole-run rule
    res["poison"]["recent"] = 20
    assert "auto-quarantine threshold 0.5 with trust.recent = 20." in trio_summary(res, "r.md")
    res["analysis"]["replay"] = {"recent": 20, "verdict": "fails: seed 2: after 110 steps", "false_alarms": [],
                                 "rows": [{"variant": "trio-poison-off", "seed": s, "steps_after_poison": n}
                                          for s, n in ((0, 105), (1, 71), (2, None))]}
    assert ("Recent-window rule replayed (trust.recent = 20): chem quarantined this many steps after the poison: "
            "seed 0 105, seed 1 71, seed 2 never; claim 1 under it: fails: seed 2: after 110 steps; false alarms: "
            "none.") in trio_summary(res, "r.md")


def test_trio_paragraph_without_analysis_or_poison():
    res = _trio_results()
    stored = trio_summary(res, "r.md")
    assert trio_summary({k: v for k, v in res.items() if k != "analysis"}, "r.md") == stored   # the same analysis
    res["poison"] = None
    res["analysis"].pop("claims")
    text = trio_summary(res, "r.md")
    assert "Claim" not in text and "Poisoned" not in text and "12 comparisons" in text
    bare = trio_summary({"mode": "trio", "plan": {"seeds": [0], "quick": True}, "runs": [], "analysis": {}}, "r.md")
    assert bare == "Result of [r.md](r.md) (seed 0).\nQuick mode: a pipeline check, not evidence of anything."


def test_kind_from_the_field_or_the_shape_of_older_json():
    assert kind_of(_pairs_results()) == PAIRS_KIND and kind_of(_trio_results()) == TRIO_KIND
    assert kind_of({"mode": "trio", "runs": []}) == TRIO_KIND               # trio JSON before the kind field
    assert kind_of({"plan": {}, "pairs": {}}) == PAIRS_KIND                 # pairs JSON before it
    assert kind_of({"kind": "drift", "plan": {}, "pairs": {}}) is None       # another kind is not guessed at
    assert kind_of([{"step": 1}]) is None and kind_of({"foo": 1}) is None


# --- opcod bench readme -------------------------------------------------------------------------------
BEFORE = "# Title\r\n\nSome text — with ünïcode.\n\n"
AFTER = "\n\nMore text ```x``` and a trailing line without newline"


def _readme(tmp_path: Path, middle: str | None = None) -> Path:
    (b, e), (tb, te) = markers(PAIRS_KIND), markers(TRIO_KIND)
    body = middle if middle is not None else f"{b}\nold pairs text\n{e}\n\nbetween\n{tb}\nnot run yet\n{te}"
    path = tmp_path / "README.md"
    path.write_bytes((BEFORE + body + AFTER).encode("utf-8"))
    return path


def _report(folder: Path, results: dict, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(results))
    path.with_suffix(".md").write_text("# report\n")
    return path


def _cmd(*args) -> list[str]:
    return ["bench", "readme", *map(str, args)]


def test_readme_sync_replaces_only_between_the_markers_and_is_idempotent(tmp_path, capsys):
    readme = _readme(tmp_path)
    pairs = _report(tmp_path / "docs" / "results", _pairs_results(), "fidelity")
    trio = _report(tmp_path / "docs" / "results", _trio_results(), "n-peers-trio")
    assert main(_cmd("--report", pairs, "--report", trio, "--readme", readme)) == 0
    text = readme.read_bytes().decode("utf-8")
    (b, e), (tb, te) = markers(PAIRS_KIND), markers(TRIO_KIND)
    assert text.startswith(BEFORE + b) and text.endswith(te + AFTER)
    assert text[text.index(e):text.index(tb) + len(tb)] == f"{e}\n\nbetween\n{tb}"
    expected = fidelity_summary(json.loads(pairs.read_text()), "docs/results/fidelity.md")
    assert text[text.index(b) + len(b):text.index(e)] == "\n" + expected + "\n"
    assert "[docs/results/n-peers-trio.md](docs/results/n-peers-trio.md)" in text
    assert "updated" in capsys.readouterr().out
    # a second run changes nothing, and --check finds it current
    assert main(_cmd("--report", pairs, "--report", trio, "--readme", readme)) == 0
    assert readme.read_bytes().decode("utf-8") == text
    assert main(_cmd("--report", pairs, "--readme", readme, "--check")) == 0


def test_readme_check_detects_drift_and_writes_nothing(tmp_path, capsys):
    readme = _readme(tmp_path)
    res = _pairs_results()
    report = _report(tmp_path, res, "fidelity")
    assert main(_cmd("--report", report, "--readme", readme)) == 0
    synced = readme.read_bytes()
    _primary(res, "chem", "help")["verdict"] = "fails: OPCoD is worse"      # the report was re-made
    report.write_text(json.dumps(res))
    capsys.readouterr()
    assert main(_cmd("--report", report, "--readme", readme, "--check")) == 1
    err = capsys.readouterr().err
    assert markers(PAIRS_KIND)[0] in err and str(readme) in err
    assert readme.read_bytes() == synced
    assert main(_cmd("--report", report, "--readme", readme)) == 0
    assert "fails for 1" in readme.read_text(encoding="utf-8")


def _bad_readme(kind_markers: str):
    (b, e), (tb, te) = markers(PAIRS_KIND), markers(TRIO_KIND)
    return {"missing": f"{tb}\nx\n{te}", "duplicated": f"{b}\nx\n{e}\n{b}\ny\n{e}",
            "out of order": f"{e}\nx\n{b}", "nested": f"{b}\n{tb}\nx\n{te}\n{e}"}[kind_markers]


@pytest.mark.parametrize("case, message", [
    ("missing", "marker <!-- result:fidelity-pairs:BEGIN --> not found"),
    ("duplicated", "marker <!-- result:fidelity-pairs:BEGIN --> appears 2 times"),
    ("out of order", "marker <!-- result:fidelity-pairs:END --> comes before <!-- result:fidelity-pairs:BEGIN -->"),
    ("nested", "another result marker lies between <!-- result:fidelity-pairs:BEGIN -->"),
])
def test_bad_markers_are_named_and_the_readme_is_left_alone(tmp_path, capsys, case, message):
    readme = _readme(tmp_path, _bad_readme(case))
    before = readme.read_bytes()
    report = _report(tmp_path, _pairs_results(), "fidelity")
    assert main(_cmd("--report", report, "--readme", readme)) == 2
    err = capsys.readouterr().err
    assert f"{readme}: {message}" in err
    assert readme.read_bytes() == before


@pytest.mark.parametrize("case, message", [
    ("no json", "{json}: no such report JSON"),
    ("not json", "{json}: not a JSON file"),
    ("not a report", "{json}: not a benchmark report"),
    ("no report md", "{md}: no report next to {json}"),
    ("incomplete", "{json}: not a complete fidelity-pairs report"),
    ("two of a kind", "{json2}: a second fidelity-pairs report (after {json})"),
])
def test_bad_reports_are_named_and_the_readme_is_left_alone(tmp_path, capsys, case, message):
    readme = _readme(tmp_path)
    before = readme.read_bytes()
    good = _report(tmp_path / "good", _pairs_results(), "fidelity")   # a valid trio-less first report
    path = tmp_path / "r" / "report.json"
    args = ["--report", path]
    if case != "no json":
        path.parent.mkdir()
        path.with_suffix(".md").write_text("# report\n")
        path.write_text({"not json": "{not json", "not a report": json.dumps([{"step": 1}]),
                         "incomplete": json.dumps({"kind": PAIRS_KIND, "plan": {}, "pairs": {"a-b": {"students": ["x"],
                                                   "primary": [{"student": "x"}]}}}),
                         }.get(case, json.dumps(_pairs_results())))
    if case == "no report md":
        path.with_suffix(".md").unlink()
    if case == "two of a kind":
        args = ["--report", good, "--report", path]
    assert main(_cmd(*args, "--readme", readme)) == 2
    err = capsys.readouterr().err
    assert message.format(json=good if case == "two of a kind" else path, json2=path,
                          md=path.with_suffix(".md")) in err
    assert readme.read_bytes() == before


def test_missing_readme_is_named(tmp_path, capsys):
    report = _report(tmp_path, _pairs_results(), "fidelity")
    assert main(_cmd("--report", report, "--readme", tmp_path / "NOPE.md")) == 2
    assert f"{tmp_path / 'NOPE.md'}: no such README" in capsys.readouterr().err
    assert not (tmp_path / "NOPE.md").exists()


def test_the_project_readme_has_one_block_of_each_kind():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for kind in (PAIRS_KIND, TRIO_KIND):
        b, e = markers(kind)
        assert text.count(b) == 1 and text.count(e) == 1 and text.index(b) < text.index(e)


def test_report_writers_put_the_summary_near_the_top(tmp_path):
    from opcod_core.bench.report import write_report

    res = _pairs_results()
    for pr in res["pairs"].values():        # the report's plot and tables read these
        pr.update(build_s=1.0, runs_s=2.0, world={n: {d: {"plain": 0.5, "peer_hint": 0.5, "reference_hint": 0.5,
                                                            "peer_kept_rate": 0.5, "n_items": 4} for d in DOMS}
                                                   for n in pr["students"]})
        pr["config"].update(schedule={"rounds": 1, "steps_per_direction": 2}, rollout={"batch_prompts": 2, "n": 4},
                            eval={"k": 1, "max_items": 8, "temperature": 1.0})
    res["plan"].update(student_seed=0, vary_students=False)
    runs = res["pairs"]["chemistry-physics"]["runs"]
    for run in runs[:4]:                    # read from the result cache by this invocation
        run["cached"] = True
    out = write_report(res, tmp_path / "fidelity.md", command="opcod bench fidelity", machine="test")
    text = out.read_text()
    assert f"4 of {len(runs)} runs read from the result cache, which add nothing to this wall time" in text
    head = "## Summary (generated from this report's JSON)\n\n" + fidelity_summary(res, "fidelity.md") + "\n"
    assert head in text and text.index(head) < text.index("## Pair chemistry-physics")


def test_the_chosen_rate_and_anchor_are_named_from_the_config():
    res = _pairs_results()
    pr = res["pairs"]["chemistry-physics"]
    assert chosen_label(pr) == "0.0003"                       # a selection over rates alone
    pr["lr_selection"] = {f"{lr:g} / KL anchor {a:g}": {m: {"score": 0.5, "weight_l2": 0.01} for m in ("never",)}
                          for lr in (3e-5, 1e-4) for a in (0.0, 0.1)}
    pr["config"].update(optim={"lr": 1e-4}, loss={"kl_anchor": 0.0})
    assert chosen_label(pr) == "0.0001 / KL anchor 0"
    assert "learning rate 0.0001 and KL anchor 0 chosen on validation" in fidelity_summary(res, "f.md")
    pr["config"]["loss"]["kl_anchor"] = 0.1
    assert "learning rate 0.0001 and KL anchor 0.1 chosen on validation" in fidelity_summary(res, "f.md")
    del pr["lr_selection"]
    assert chosen_label(pr) is None
    assert "(learning rate 0.0001, τ = 0.35)" in fidelity_summary(res, "f.md")   # not selected: neither chosen nor anchor
