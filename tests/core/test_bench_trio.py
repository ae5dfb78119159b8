"""`opcod bench fidelity --mode trio`: the trio and the pairs start from the same students with the same budget
per student, the analysis on hand-made numbers, the flags checked before any build, and the quick mode end to
end with a poisoned peer (a pipeline check on barely warmed-up students, not an effect size)."""

from __future__ import annotations

import json

import pytest

from opcod_core.bench.trio import POISON_OFF, POISON_ON, TRIO, TrioPlan, pair_configs, poison_settings, trio_config, variants
from opcod_core.bench.trio_analysis import analyse, claims, quarantine
from opcod_core.cli import main
from opcod_core.config import preset
from opcod_core.tasks import total_steps


# --- configs --------------------------------------------------------------------------------------------
def test_trio_and_pairs_share_students_schedule_and_per_student_budget():
    from opcod_core.build import warmup_data, warmup_key
    from opcod_core.data import load_dataset
    from opcod_core.trainer import data_spec

    plan = TrioPlan(seeds=[0], poison="phys")
    trio = trio_config(plan)
    assert [s.name for s in trio.students] == ["chem", "phys", "elec"] and trio.data.source == "sciworld3"
    assert trio.gating.mode == "cognizance" and trio.routing.mode == "best" and trio.faults.poison is None
    assert trio.to_dict() == preset("sciworld3-trio").to_dict()     # the preset, nothing changed
    data = load_dataset(data_spec(trio))
    keys = {s.name: warmup_key(s, trio, i, data) for i, s in enumerate(trio.students)}
    sc = trio.schedule
    for label, cfg in pair_configs(plan).items():
        pair_data = load_dataset(data_spec(cfg))
        assert {s.name: warmup_key(s, cfg, i, warmup_data(s, cfg, pair_data)) for i, s in enumerate(cfg.students)} \
            == {s.name: keys[s.name] for s in cfg.students}, label          # the same cached specialists
        assert cfg.schedule == sc and cfg.rollout == trio.rollout and cfg.optim == trio.optim and cfg.eval == trio.eval
        # every student is tutee for R x K steps in either run
        assert total_steps(sc.rounds, sc.steps_per_direction, 2) / 2 == total_steps(sc.rounds, sc.steps_per_direction, 3) / 3
    runs = {label: cfg for label, cfg, _ in variants(plan)}
    assert set(runs) == {TRIO, POISON_ON, POISON_OFF} | set(pair_configs(plan))
    assert all(runs[label].gating.mode == "cognizance" for label in pair_configs(plan))
    for label, auto in ((POISON_ON, True), (POISON_OFF, False)):
        cfg = runs[label]
        assert cfg.faults.poison.tutor == "phys" and cfg.faults.poison.from_step == 150 and cfg.trust.auto_quarantine is auto
        assert cfg.replace({"faults": {"poison": None}, "trust": {"auto_quarantine": False}}) == trio
    assert trio_config(TrioPlan(seeds=[0], gating="always")).gating.mode == "always"


def test_poison_settings_default_to_halfway_and_name_a_bad_field():
    trio = trio_config(TrioPlan(seeds=[0]))
    p = poison_settings(TrioPlan(seeds=[0], poison="elec"), trio)
    assert p == {"tutor": "elec", "from_step": 150, "threshold": 0.5, "within": 100, "total_steps": 300}
    p = poison_settings(TrioPlan(seeds=[0], poison="chem", poison_from=7, threshold=0.3, quarantine_within=20), trio)
    assert (p["from_step"], p["threshold"], p["within"]) == (7, 0.3, 20)
    with pytest.raises(ValueError, match="^poison:"):
        poison_settings(TrioPlan(seeds=[0], poison="bio"), trio)
    with pytest.raises(ValueError, match="^poison_from:"):
        poison_settings(TrioPlan(seeds=[0], poison="chem", poison_from=300), trio)


# --- the analysis on hand-made numbers -------------------------------------------------------------------
def _run(method, seed, finals, trust=(), breaks=(), poison=None):
    return {"method": method, "seed": seed, "trust": list(trust), "breaks": list(breaks), "poison": poison or {},
            "summary": {"students": {n: {"initial": {d: 0.1 for d in f}, "final": f} for n, f in finals.items()}}}


def _results(runs, poison=None):
    doms = ["chemistry", "physics", "electricity"]
    return {"students": ["chem", "phys", "elec"], "domains": doms, "runs": runs, "poison": poison,
            "pair_configs": {"pair-chemistry-physics": {}, "pair-chemistry-electricity": {}, "pair-physics-electricity": {}},
            "roles": {"chem": {"chemistry": "strong", "physics": "partial", "electricity": "partial"},
                      "phys": {"physics": "strong", "electricity": "partial", "chemistry": "unknown"},
                      "elec": {"electricity": "strong", "chemistry": "unknown", "physics": "unknown"}}}


def _trio(x):
    return {n: {d: x for d in ("chemistry", "physics", "electricity")} for n in ("chem", "phys", "elec")}


def test_trio_vs_pairs_pairs_by_seed_and_reads_the_interval():
    runs = []
    for seed, bump in enumerate((0.10, 0.12, 0.11)):
        trio = _trio(0.5)
        trio["elec"]["physics"] = 0.5 + bump                # elec learns physics better in the trio
        runs.append(_run(TRIO, seed, trio))
        runs += [_run("pair-chemistry-physics", seed, {"chem": {"chemistry": 0.5, "physics": 0.5},
                                                       "phys": {"chemistry": 0.5, "physics": 0.5 + (seed - 1) / 10}}),
                 _run("pair-chemistry-electricity", seed, {"chem": {"chemistry": 0.5, "electricity": 0.5},
                                                           "elec": {"chemistry": 0.5, "electricity": 0.6}}),
                 _run("pair-physics-electricity", seed, {"phys": {"physics": 0.5, "electricity": 0.5},
                                                         "elec": {"physics": 0.5, "electricity": 0.5}})]
    rows = {(r["student"], r["domain"], r["pair"]): r for r in analyse(_results(runs))["trio_vs_pairs"]}
    assert len(rows) == 12 and sum(k[0] == "chem" and k[1] == "chemistry" for k in rows) == 2   # own domain: two pairs
    r = rows[("elec", "physics", "pair-physics-electricity")]
    assert r["difference"]["differences"] == pytest.approx([0.10, 0.12, 0.11]) and r["verdict"] == "trio better"
    assert r["role"] == "unknown" and r["partner"] == "phys" and r["trio"]["n"] == 3
    assert rows[("phys", "physics", "pair-chemistry-physics")]["verdict"] == "within noise"    # -0.1, 0, +0.1
    assert rows[("elec", "electricity", "pair-chemistry-electricity")]["verdict"] == "trio worse"  # -0.1 each seed
    assert rows[("elec", "electricity", "pair-physics-electricity")]["verdict"] == "identical"
    assert rows[("chem", "chemistry", "pair-chemistry-physics")]["verdict"] == "identical"


def _probe(step, broken, tutor="phys", eligible=True):
    return {"tutor": tutor, "step": step, "broken": broken, "correct_without_f": eligible, "domain": "physics"}


def test_quarantine_record_and_claims():
    trust = [{"tutor": "chem", "action": "quarantine", "source": "auto", "step": 40},
             {"tutor": "phys", "action": "quarantine", "source": "auto", "step": 158},
             {"tutor": "phys", "action": "lift", "source": "auto", "step": 190}]
    breaks = [_probe(120, False), _probe(151, True), _probe(153, True), _probe(155, False, eligible=False),
              _probe(157, True), _probe(158, True), _probe(152, True, tutor="elec")]
    poison = {"phys": {"written": 30, "kept": 28, "used": 9, "first_step": 151, "last_used_step": 157}}
    q = quarantine(_run(POISON_ON, 0, {}, trust, breaks, poison), "phys", 150, within=10)
    assert (q["quarantine_step"], q["steps_to_quarantine"], q["within"]) == (158, 8, True)
    assert q["probes"] == {"samples": 4, "eligible": 3, "broken": 3}     # from the poison to the quarantine
    assert q["lifts_after"] == [190] and q["other_quarantines"] == ["chem@40"] and q["before_poison"] == []
    assert not q["used_after_quarantine"] and q["poisoned"]["written"] == 30
    late = quarantine(_run(POISON_ON, 1, {}, trust, breaks, poison), "phys", 150, within=5)
    off = quarantine(_run(POISON_OFF, 0, {}), "phys", 150, within=10)
    assert not late["within"] and off["quarantine_step"] is None and off["poisoned"]["written"] == 0
    rows = [{"student": "chem", "domain": "physics", "poisoned_tutor": False, "on_minus_clean": {"word": "noise"}},
            {"student": "phys", "domain": "physics", "poisoned_tutor": True, "on_minus_clean": {"word": "down"}}]
    c = claims([q, off], rows, 10)
    assert c["quarantined_within"]["verdict"] == "holds" and c["others_within_noise"]["verdict"] == "holds"
    rows[0]["on_minus_clean"]["word"] = "down"
    c = claims([q, late, off], rows, 10)
    assert c["quarantined_within"]["verdict"] == "fails: seed 1: after 8 steps"
    assert c["others_within_noise"]["verdict"] == "fails: falls beyond noise for chem on physics"


def test_others_accuracy_compares_on_and_off_with_the_clean_trio():
    runs = []
    for seed in range(3):
        runs += [_run(TRIO, seed, _trio(0.5)), _run(POISON_ON, seed, _trio(0.5 + 0.01 * (seed - 1))),
                 _run(POISON_OFF, seed, _trio(0.3 + 0.01 * seed))]
    res = _results(runs, poison={"tutor": "phys", "from_step": 150, "within": 100})
    out = analyse(res)
    chem = next(r for r in out["others"] if r["student"] == "chem" and r["domain"] == "physics")
    assert chem["on_minus_clean"]["word"] == "noise" and chem["off_minus_clean"]["word"] == "down"
    assert chem["on_minus_off"]["word"] == "up" and chem["off"]["mean"] == pytest.approx(0.31)
    assert [r["poisoned_tutor"] for r in out["others"]].count(True) == 3
    assert out["claims"]["others_within_noise"]["verdict"].startswith("holds vacuously: nobody was quarantined")
    assert out["claims"]["quarantined_within"]["verdict"] == "fails: seed 0: never quarantined; seed 1: never " \
                                                            "quarantined; seed 2: never quarantined"


# --- the command line -----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--poison", "phys"], "--poison: not an option of --mode pairs"),
    (["--mode", "trio", "--methods", "opcod"], "--methods: not an option of --mode trio"),
    (["--mode", "trio", "--world", "v2"], "--world: --mode trio runs the v3 specialists"),
    (["--mode", "trio", "--quick", "--poison", "bio"], "--poison: expected one of"),
    (["--mode", "trio", "--quick", "--poison", "chem", "--poison-from", "6"], "--poison-from: global step 6 is outside"),
    (["--mode", "trio", "--quick", "--poison", "chem", "--trust-recent", "0"], "--trust-recent: expected a whole number"),
    (["--mode", "trio", "--quick", "--trust-recent", "5"], "--trust-recent: sets the poisoned runs' trust.recent"),
    (["--mode", "trio", "--quick", "--replay-recent", "-1"], "--replay-recent: expected a whole number"),
    (["--replay-recent", "5"], "--replay-recent: not an option of --mode pairs"),
])
def test_bad_flags_are_refused_before_any_build(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        main(["bench", "fidelity", *argv, "--out", str(tmp_path / "r.md"), "--cache-dir", str(tmp_path / "cache")])
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r.log").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_trio_with_a_poisoned_peer_writes_its_report(tmp_path):
    """Gating ``always`` so that routing alone picks the tutors of these barely warmed-up students (their gate
    would compare noise); chem's feedback is poisoned from the first step."""
    out = tmp_path / "trio.md"
    args = ["bench", "fidelity", "--mode", "trio", "--quick", "--quick-warmup", "4", "--trio-gating", "always",
            "--poison", "chem", "--poison-from", "0", "--replay-recent", "4", "--jobs", "2",
            "--cache-dir", str(tmp_path / "cache"),
            "--work-dir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "runs")]
    assert main(args + ["--out", str(out)]) == 0
    text = out.read_text()
    for section in ("Quick mode: a pipeline check", "## Setup", "every student is tutee for R · K = 2 steps",
                    "## Trio vs pairs: final test accuracy per student and domain", "## Tutoring in the trio runs",
                    "## Poisoned peer", "### Quarantine of the poisoned tutor",
                    "### Final test accuracy with the poisoned peer (paired by seed)", "| chem (poisoned tutor) |",
                    "### Recent-window rule, replayed (trust.recent = 4"):
        assert section in text, section
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.with_suffix(".log").exists()
    results = json.loads(out.with_suffix(".json").read_text())
    runs = {r["method"]: r for r in results["runs"]}
    assert set(runs) == {TRIO, POISON_ON, POISON_OFF, "pair-chemistry-physics", "pair-chemistry-electricity",
                         "pair-physics-electricity"}
    assert len(results["analysis"]["trio_vs_pairs"]) == 12 and len(results["analysis"]["quarantine"]) == 2
    assert all(runs[m]["gates"][0]["decision"] == "tutor" for m in (TRIO, POISON_ON, POISON_OFF))
    # the trio runs start from the same students and differ only from the poison on
    inits = {json.dumps(runs[m]["summary"]["evals"]["0"], sort_keys=True) for m in (TRIO, POISON_ON, POISON_OFF)}
    assert len(inits) == 1
    # the poison is recorded: only chem's feedback, and every feedback chem wrote in the run without quarantine
    assert all(not r["poison"] for m, r in runs.items() if m not in (POISON_ON, POISON_OFF))
    off = runs[POISON_OFF]
    assert set(off["poison"]) <= {"chem"} and set(runs[POISON_ON]["poison"]) <= {"chem"}
    assert off["poison"]["chem"]["written"] == sum(off["categories"]["chem"].values()) > 0   # routing gave chem
    assert off["poison"]["chem"]["used"] <= off["poison"]["chem"]["kept"] <= off["poison"]["chem"]["written"]
    assert off["trust"] == [] and results["analysis"]["quarantine"][1]["quarantine_step"] is None
    # the recorded probes of every run without a quarantine give back that run's own trust counts
    replayed = results["analysis"]["replay"]
    assert replayed["recent"] == 4 and {r["variant"] for r in replayed["rows"]} == {TRIO, POISON_ON, POISON_OFF}
    assert all(r["reproduces"] for r in replayed["rows"])
    # the report is rewritten from its JSON alone
    out.unlink()
    assert main(["bench", "fidelity", "--mode", "trio", "--report-only", "--out", str(out)]) == 0
    assert out.read_text() == text
    assert "0 of 6 runs read from the result cache" in text
    # run again: every run comes from the result cache, and the header says so
    again = tmp_path / "again.md"
    assert main(args + ["--out", str(again)]) == 0
    assert "6 of 6 runs read from the result cache" in again.read_text()
