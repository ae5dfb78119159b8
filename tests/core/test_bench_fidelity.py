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
    assert verdict({"a": up, "b": flat}) == "improved (significant)"
    assert verdict({"a": interval([0.1, -0.05, 0.2]), "b": flat}) == "improved"
    assert verdict({"a": up, "b": interval([-0.1, -0.1, -0.12])}).startswith("not improved (falls on b")


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


@pytest.mark.timeout(300)
def test_quick_benchmark_writes_report(tmp_path):
    out = tmp_path / "fidelity.md"
    rc = main(["bench", "fidelity", "--quick", "--quick-warmup", "8", "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    text = out.read_text()
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
    assert (tmp_path / "fidelity.log").exists()
