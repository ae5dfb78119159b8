"""`opcod bench fidelity --quick` runs end to end and writes its report (a pipeline check, not an effect
size), plus the statistics and the report's verdict logic on hand-made numbers."""

import json

import pytest

from opcod_core.bench.fidelity import METHODS, aggregate, pair_config
from opcod_core.bench.stats import interval, pareto, verdict
from opcod_core.cli import main


def test_interval_and_verdicts():
    iv = interval([0.5, 0.6, 0.7])
    assert iv.mean == pytest.approx(0.6) and iv.half == pytest.approx(4.303 * 0.1 / 3 ** 0.5)
    assert interval([0.4]).half is None
    assert pareto({"a": 0.5, "b": 0.2}, {"a": 0.5, "b": 0.3}) and not pareto({"a": 0.5}, {"a": 0.5})
    assert not pareto({"a": 0.5, "b": 0.2}, {"a": 0.4, "b": 0.9})
    up, flat = interval([0.1, 0.12, 0.11]), interval([0.0, 0.01, 0.0])
    down = interval([-0.1, -0.1, -0.12])
    assert verdict({"a": up, "b": flat}) == "improved on a (b within noise)"
    assert verdict({"a": up, "b": up}) == "improved on a, b"
    # positive means whose intervals contain 0 are not an improvement
    assert verdict({"a": interval([0.1, -0.05, 0.2]), "b": flat}) == "within noise (means: a +, b +)"
    assert verdict({"a": interval([0.0, 0.0, 0.0]), "b": interval([0.002, 0.0, 0.004])}).startswith("within noise")
    assert verdict({"a": flat, "b": down}) == "worse on b (a within noise)"
    assert verdict({"a": up, "b": down}) == "mixed: up on a, down on b"
    one = {"a": interval([0.1]), "b": interval([0.0])}
    assert verdict(one) == "improved (1 seed)"
    assert verdict({"a": interval([0.1]), "b": interval([-0.01])}) == "falls on b (1 seed)"


def test_pair_config_roles():
    cfg = pair_config(("physics", "electricity"))
    a, b = cfg.students
    assert (a.name, a.strong_domain, a.warmup_hinted_domains) == ("phys", "physics", ("electricity",))
    assert (b.name, b.strong_domain, b.warmup_hinted_domains) == ("elec", "electricity", ("physics",))
    assert cfg.data.domains == ("physics", "electricity") and cfg.data.source == "sciworld"


def test_aggregate_counts_pareto_per_seed():
    def run(seed, fin_b):
        return {"method": "never", "seed": seed, "wall_s": 1.0, "gates": [], "categories": {}, "breaks": [],
                "divergence": {}, "divergence_n": {},
                "summary": {"students": {"x": {"initial": {"a": 0.5, "b": 0.2}, "final": {"a": 0.5, "b": fin_b}}}}}
    agg = aggregate([run(0, 0.3), run(1, 0.1), run(2, 0.25)], ["x"], ["a", "b"])
    st = agg["never"]["students"]["x"]
    assert st["pareto_seeds"] == 2 and st["n_seeds"] == 3
    assert st["change"]["b"]["mean"] == pytest.approx(0.05 / 3)


def test_break_rates_per_tutor_are_conditional_counts_summed_over_seeds():
    from opcod_core.bench.report import _feedback_table

    def b(tutor, cog, without_f, with_f):
        return {"tutor": tutor, "cognizant": cog, "correct_without_f": without_f, "broken": without_f and not with_f}

    def run(seed, breaks):
        return {"method": "always", "seed": seed, "wall_s": 1.0, "gates": [], "categories": {"x": {"kept": 2}},
                "breaks": breaks, "divergence": {}, "divergence_n": {},
                "summary": {"students": {"x": {"initial": {"a": 0.5}, "final": {"a": 0.5}}}}}
    # seed 0: 1 broken of 1 eligible (rate 1.0); seed 1: 0 of 3 (rate 0.0); plus 2 ineligible samples.
    # Summed: 1 / 4 = 0.25 (the mean of the per-seed rates would be 0.5; the share of samples 1/6)
    runs = [run(0, [b("x", False, True, False), b("x", False, False, True)]),
            run(1, [b("x", False, True, True)] * 3 + [b("x", False, False, False)])]
    agg = aggregate(runs, ["x"], ["a"])
    inc = agg["always"]["breaks"]["x"]["incognizant"]
    assert (inc["samples"], inc["eligible"], inc["broken"]) == (6, 4, 1) and inc["rate"] == pytest.approx(0.25)
    assert agg["always"]["breaks"]["x"]["cognizant"] == {"samples": 0, "eligible": 0, "broken": 0, "rate": None}
    row = [line for line in _feedback_table({"aggregate": agg}) if line.startswith("| always | x |")][0]
    assert "no samples" in row and "1/4 = 0.25 (6 samples)" in row


@pytest.mark.timeout(300)
def test_quick_benchmark_writes_report(tmp_path):
    out = tmp_path / "fidelity.md"
    rc = main(["bench", "fidelity", "--quick", "--quick-warmup", "8", "--out", str(out), "--jobs", "2",
               "--select-tau", "0.2,0.9", "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    text = out.read_text()
    assert "τ chosen on validation" in text
    for method in METHODS:
        assert f"| {method} | chem |" in text and f"| {method} | phys |" in text
    assert "Gate decisions per round" in text and "break rate (cognizant tutor)" in text
    png = tmp_path / "fidelity-chemistry-physics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((tmp_path / "fidelity.json").read_text())
    pr = results["pairs"]["chemistry-physics"]
    assert len(pr["runs"]) == len(METHODS) and {r["method"] for r in pr["runs"]} == set(METHODS)
    # every run starts from the same students: identical initial scores across methods
    inits = {json.dumps(r["summary"]["evals"]["0"], sort_keys=True) for r in pr["runs"]}
    assert len(inits) == 1
    assert set(pr["world"]) == {"chem", "phys"} and "peer_hint" in pr["world"]["chem"]["physics"]
    # τ was chosen on validation from the grid and every run used it
    assert set(pr["tau_selection"]) == {"0.2", "0.9"} and pr["config"]["gating"]["tau"] in (0.2, 0.9)
    best = max(pr["tau_selection"].values(), key=lambda row: row["opcod"])["opcod"]
    assert pr["tau_selection"][f"{pr['config']['gating']['tau']:g}"]["opcod"] == best
    assert (tmp_path / "fidelity.log").exists()
    # the same runs in this process (--jobs 1) give exactly the same results as in two worker processes
    solo = tmp_path / "solo" / "fidelity.md"
    assert main(["bench", "fidelity", "--quick", "--quick-warmup", "8", "--out", str(solo), "--jobs", "1",
                 "--methods", "opcod,always", "--cache-dir", str(tmp_path / "cache"),
                 "--work-dir", str(tmp_path / "work-solo")]) == 0
    solo_runs = json.loads(solo.with_suffix(".json").read_text())["pairs"]["chemistry-physics"]["runs"]
    pooled = {r["method"]: r for r in pr["runs"]}
    for r in solo_runs:
        assert r["summary"] == pooled[r["method"]]["summary"] and r["gates"] == pooled[r["method"]]["gates"]


def test_partial_knowledge_shapes_the_warm_up_pools():
    from opcod_core.build import warmup_items, warmup_key
    from opcod_core.data import load_dataset
    from opcod_core.data.types import SplitDataset
    from opcod_core.trainer import data_spec

    cfg = pair_config(("chemistry", "physics"))
    chem, phys = cfg.students
    assert chem.warmup_partial == {"physics": 0.9} and phys.warmup_partial is None
    assert chem.warmup_sft_steps == 2 * phys.warmup_sft_steps
    data = load_dataset(data_spec(cfg))
    own, hinted, partly, _corrupt = warmup_items(chem, cfg, 0, data)
    assert {it.domain for it in own} == {"chemistry"} and len(own) == len(data.get("chemistry", "train"))
    (known, share), = partly
    assert share == 0.9 and {it.domain for it in known} == {"physics"} == {it.domain for it in hinted}
    assert len(known) + len(hinted) == len(data.get("physics", "train"))
    two_sided = pair_config(("chemistry", "physics"), partial=(0.0, 0.0))
    assert [s.warmup_partial for s in two_sided.students] == [None, None]
    assert warmup_items(two_sided.students[0], two_sided, 0, data)[2] == []
    # the warm-up cache key follows the generated items, not only the config
    key = warmup_key(chem, cfg, 0, data)
    assert key == warmup_key(chem, cfg, 0, data) != warmup_key(two_sided.students[0], two_sided, 0, data)
    splits = {d: dict(s) for d, s in data.splits.items()}
    splits["physics"]["train"] = splits["physics"]["train"][1:]
    assert warmup_key(chem, cfg, 0, SplitDataset(splits=splits)) != key
    # a draw weight apart from the share: same known items, drawn more often, another cached student
    heavy = chem.model_copy(update={"warmup_partial_weight": {"physics": 2.0}})
    (known2, weight), = warmup_items(heavy, cfg, 0, data)[2]
    assert weight == 2.0 and [it.id for it in known2] == [it.id for it in known]
    assert warmup_key(heavy, cfg, 0, data) != key


def test_partial_share_is_validated_with_its_field_path():
    from pydantic import ValidationError

    from opcod_core.config import RunConfig

    base = pair_config(("chemistry", "physics")).to_dict()
    base["students"][0]["warmup_partial"] = {"electricity": 0.5}
    with pytest.raises(ValidationError, match="warmup_partial.electricity: not one of warmup_hinted_domains"):
        RunConfig.from_dict(base)
    base["students"][0]["warmup_partial"] = {"physics": 1.5}
    with pytest.raises(ValidationError, match="share must be between 0 and 1"):
        RunConfig.from_dict(base)
    base["students"][0]["warmup_partial"] = {"physics": 0.9}
    base["students"][0]["warmup_partial_weight"] = {"electricity": 2.0}
    with pytest.raises(ValidationError, match="warmup_partial_weight.electricity: not one of warmup_partial"):
        RunConfig.from_dict(base)
    base["students"][0]["warmup_partial_weight"] = {"physics": 0.0}
    with pytest.raises(ValidationError, match=r"warmup_partial_weight.physics: weight must be in \(0, 10\]"):
        RunConfig.from_dict(base)


def _run(method, seed, finals):
    return {"method": method, "seed": seed,
            "summary": {"students": {n: {"final": f} for n, f in finals.items()}}}


def test_primary_comparisons_pair_by_seed_and_read_the_interval():
    from opcod_core.bench.primary import primary_comparisons

    runs = []
    for seed, (o, n, a) in enumerate([(0.50, 0.40, 0.30), (0.55, 0.43, 0.33), (0.60, 0.49, 0.41)]):
        # student x (strong chemistry): physics rises with OPCoD; chemistry equal to always-give
        runs += [_run("opcod", seed, {"x": {"chemistry": 0.8, "physics": o}, "y": {"chemistry": o, "physics": 0.7}}),
                 _run("never", seed, {"x": {"chemistry": 0.8, "physics": n}, "y": {"chemistry": o + 0.1, "physics": 0.7}}),
                 _run("always", seed, {"x": {"chemistry": 0.8 - 0.1 * (seed - 1), "physics": o},
                                       "y": {"chemistry": o, "physics": a}})]
    rows = {(r["student"], r["comparison"]): r for r in primary_comparisons(
        runs, ["x", "y"], {"x": "chemistry", "y": "physics"}, ["chemistry", "physics"])}
    help_x = rows[("x", "help")]
    assert help_x["domain"] == "physics" and help_x["seeds"] == [0, 1, 2]
    assert help_x["differences"] == pytest.approx([0.10, 0.12, 0.11]) and help_x["verdict"] == "holds"
    assert rows[("x", "harm")]["verdict"].startswith("not resolved")        # -0.1, 0, +0.1 around 0
    assert rows[("y", "help")]["verdict"] == "fails: OPCoD is worse"        # -0.1 at every seed
    assert rows[("y", "harm")]["domain"] == "physics" and rows[("y", "harm")]["verdict"] == "holds"
    one = primary_comparisons(runs[:3], ["x", "y"], {"x": "chemistry", "y": "physics"}, ["chemistry", "physics"])
    assert one[0]["verdict"] == "+ (1 seed: no interval)"
    # a comparison whose baseline was not run is left out, not faked
    assert primary_comparisons([r for r in runs if r["method"] != "always"], ["x"], {"x": "chemistry"},
                               ["chemistry", "physics"])[0]["comparison"] == "help"
    assert len(primary_comparisons([r for r in runs if r["method"] != "always"], ["x"], {"x": "chemistry"},
                                   ["chemistry", "physics"])) == 1


def test_result_cache_keys_follow_config_seed_and_code(tmp_path):
    from opcod_core.bench import runcache

    cfg = pair_config(("chemistry", "physics"), world="v3")
    key = runcache.run_key(cfg.to_json(), "opcod", 0, 0, False)
    assert key == runcache.run_key(cfg.to_json(), "opcod", 0, 0, False)
    assert len({key, runcache.run_key(cfg.to_json(), "opcod", 1, 0, False),
                runcache.run_key(cfg.to_json(), "never", 0, 0, False),
                runcache.run_key(cfg.to_json(), "opcod", 0, 1, False),
                runcache.run_key(cfg.to_json(), "opcod", 0, 0, True),
                runcache.run_key(cfg.replace({"optim": {"lr": 3e-4}}).to_json(), "opcod", 0, 0, False)}) == 6
    assert runcache.load(tmp_path, key) is None
    runcache.store(tmp_path, key, {"method": "opcod", "seed": 0})
    assert runcache.load(tmp_path, key) == {"method": "opcod", "seed": 0}
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.json"]    # no temporary file left behind


def test_the_code_in_the_cache_key_is_what_the_code_does():
    """Docstrings, comments and layout leave a module's fingerprint alone; a changed name, number or
    statement changes it (the key of every cached run follows it)."""
    from opcod_core.bench.runcache import code_fingerprint

    src = 'def lr(x):\n    """Doc."""\n    return x * 3e-4\n'
    same = ['"""Module doc."""\n' + src, src.replace('"""Doc."""', '"""Another doc."""'),
            src.replace("return x * 3e-4", "return (x *\n            3e-4)  # a comment"),
            'def lr(x):\n    return x * 3e-4\n']
    other = [src.replace("3e-4", "1e-3"), src.replace("x * ", "x + "), src.replace("def lr", "def rate"),
             src.replace('"""Doc."""', '"""Doc."""\n    x = -x')]
    assert {code_fingerprint(s) for s in same} == {code_fingerprint(src)}
    assert len({code_fingerprint(s) for s in [src, *other]}) == 1 + len(other)


def test_quick_v3_benchmark_resumes_from_its_result_cache(tmp_path):
    args = ["bench", "fidelity", "--world", "v3", "--quick", "--quick-warmup", "4", "--pairs", "physics:electricity",
            "--methods", "opcod,never,always", "--jobs", "1", "--results-dir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work")]
    assert main(args + ["--out", str(tmp_path / "a.md")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())["pairs"]["physics-electricity"]
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3 + 1     # the runs and the knowledge split
    assert {r["student"] for r in first["primary"]} == {"phys", "elec"}
    text = (tmp_path / "a.md").read_text()
    assert "Primary comparisons (pre-registered, paired by seed)" in text and "| with s | with f (reference hint)" in text
    assert main(args + ["--out", str(tmp_path / "b.md")]) == 0
    again = json.loads((tmp_path / "b.json").read_text())["pairs"]["physics-electricity"]
    assert all(r.get("cached") for r in again["runs"])
    assert [r["summary"] for r in again["runs"]] == [r["summary"] for r in first["runs"]]
    assert again["world"] == first["world"]
    assert "knowledge split on validation: read from the result cache" in (tmp_path / "b.log").read_text()


def test_selection_runs_evaluate_after_the_last_round_only(tmp_path):
    """A learning-rate selection run scores the final validation accuracies; the evaluations before the last
    round are skipped, and the run's numbers are those of the same run evaluating after every round (on
    this machine, in one process: same kernels)."""
    from opcod_core.bench.fidelity import QUICK_OVERRIDES, ValidationTrainer, _students
    from opcod_core.bench.observer import BenchObserver
    from opcod_core.data import load_dataset
    from opcod_core.trainer import data_spec

    class EveryRound(ValidationTrainer):
        def task_eval(self, r: int) -> None:
            self.evals[str(r)] = self._evaluate_all("validation", self.config.eval.k, "val-eval")

    quick = {"warmup_sft_steps": 4, "warmup_decay_steps": 4, "warmup_expect": None,
             "warmup_self_teacher_tolerance": None}
    base = pair_config(("physics", "electricity"), {**QUICK_OVERRIDES, "schedule": {"rounds": 2,
                       "steps_per_direction": 1}, "students": [quick, quick]}, world="v3")
    cfg = base.replace({**METHODS["always"], "seed": 0})
    data = load_dataset(data_spec(base))
    runs = {}
    for cls in (ValidationTrainer, EveryRound):
        obs = BenchObserver()
        students = _students(base, data, tmp_path / "cache", 0)
        result = cls(cfg, tmp_path / cls.__name__, observer=obs, data=data, students=students).run()
        runs[cls] = (result.summary["evals"], obs.weight_l2, obs.gates)
        # no initial evaluation, so no initial-vs-final part; with one, Trainer.summary has it
        assert ("students" in result.summary) == (cls is EveryRound)
    (skipped, l2, gates), (full, full_l2, full_gates) = runs[ValidationTrainer], runs[EveryRound]
    assert set(full) == {"0", "1", "2"} and set(skipped) == {"2"}
    assert skipped["2"] == full["2"] and l2 == full_l2 and gates == full_gates


def test_kl_anchor_flag_reaches_every_run_config_and_is_validated():
    from opcod_core.bench.cli import _overrides
    from opcod_core.cli import build_parser

    args = build_parser().parse_args(["bench", "fidelity", "--world", "v3", "--lr", "1e-4", "--kl-anchor", "1.0"])
    over = _overrides(args)
    assert over["loss"] == {"kl_anchor": 1.0} and over["optim"] == {"lr": 1e-4}
    cfg = pair_config(("chemistry", "physics"), over, world="v3")
    assert cfg.loss.kl_anchor == 1.0 and cfg.replace(METHODS["opcod"]).loss.kl_anchor == 1.0
    assert "loss" not in _overrides(build_parser().parse_args(["bench", "fidelity"]))   # the preset's, untouched
    with pytest.raises(ValueError, match="kl_anchor"):
        pair_config(("chemistry", "physics"), _overrides(build_parser().parse_args(
            ["bench", "fidelity", "--kl-anchor", "-1"])), world="v3")


def test_divergence_flag_reaches_every_run_config_and_offers_the_config_kinds(capsys):
    from opcod_core.bench.cli import _overrides
    from opcod_core.cli import build_parser
    from opcod_core.losses import KINDS

    args = build_parser().parse_args(["bench", "fidelity", "--world", "v3", "--divergence", "forward_kl",
                                      "--kl-anchor", "1.0"])
    over = _overrides(args)
    assert over["loss"] == {"kl_anchor": 1.0, "divergence": "forward_kl"}
    cfg = pair_config(("chemistry", "physics"), over, world="v3")
    for method in METHODS:   # every method of the benchmark (selection and main run) trains with it
        assert cfg.replace(METHODS[method]).loss.divergence == "forward_kl"
    assert pair_config(("chemistry", "physics"), {}, world="v3").loss.divergence == "jsd"   # the preset's
    for kind in KINDS:   # the flag offers exactly the divergences the loss implements
        assert _overrides(build_parser().parse_args(["bench", "fidelity", "--divergence", kind]))["loss"] == {
            "divergence": kind}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "fidelity", "--divergence", "kl"])
    assert "--divergence" in capsys.readouterr().err


def test_rate_and_kl_anchor_are_selected_together_and_the_main_runs_use_the_best(tmp_path):
    """--select-kl-anchor crosses the anchor grid with the rate grid: every (rate, anchor) candidate runs
    (its exact config is in the result cache's keys), the best-scoring one is what the main runs train with."""
    from opcod_core.bench import runcache
    from opcod_core.config import RunConfig

    results = tmp_path / "runs"
    args = ["bench", "fidelity", "--world", "v3", "--quick", "--quick-warmup", "4", "--pairs", "physics:electricity",
            "--methods", "never", "--select-methods", "never", "--select-lr", "0.001,0.01", "--select-kl-anchor",
            "0,1", "--jobs", "1", "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache"),
            "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "f.md")]
    assert main(args) == 0
    pr = json.loads((tmp_path / "f.json").read_text())["pairs"]["physics-electricity"]
    table = pr["lr_selection"]
    labels = [f"{lr} / KL anchor {a}" for lr in ("0.001", "0.01") for a in ("0", "1")]
    assert list(table) == labels
    chosen = RunConfig.from_dict(pr["config"])
    best = max(labels, key=lambda k: (table[k]["never"]["score"], -labels.index(k)))
    assert f"{chosen.optim.lr:g} / KL anchor {chosen.loss.kl_anchor:g}" == best
    for lr in (0.001, 0.01):
        for a in (0.0, 1.0):
            cfg = chosen.replace({"optim": {"lr": lr}, "loss": {"kl_anchor": a}})
            cfg = cfg.replace({**METHODS["never"], "seed": 0, "name": "fidelity-never-s0"})
            assert runcache.load(results, runcache.run_key(cfg.to_json(), "never", 0, 0, True)) is not None
    md = (tmp_path / "f.md").read_text()
    assert "### Learning rate and KL anchor chosen on validation" in md
    chosen_rows = [line for line in md.splitlines() if line.endswith("(chosen) |")]
    assert len(chosen_rows) == 1 and chosen_rows[0].startswith(f"| {best} |")   # the row the runs used, marked
    with pytest.raises(SystemExit, match="--select-kl-anchor: conflicts with --kl-anchor"):
        main(args[:-2] + ["--kl-anchor", "1", "--out", str(tmp_path / "g.md")])
    with pytest.raises(SystemExit, match="--select-kl-anchor: coefficients must be >= 0"):
        main(args[:-2] + ["--select-kl-anchor", "0,-1", "--out", str(tmp_path / "g.md")])
    no_rate = [a for a in args if a not in ("--select-lr", "0.001,0.01")]
    with pytest.raises(SystemExit, match="--select-kl-anchor: needs --select-lr"):
        main(no_rate[:-2] + ["--out", str(tmp_path / "g.md")])

