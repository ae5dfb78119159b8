"""The science world's third version and its specialists: open numeric questions, a corrupted fact table
that anchoring keeps, specialists that are the same cached student in every pair, warm-up batches with
incognizant-tutor and own-domain-hint examples, and a build that fails loudly when the split is missed."""

import json
import re

import pytest
from pydantic import ValidationError

from opcod_core.anchoring import classify_feedback
from opcod_core.build import build_student, tutor_template, warmup_data, warmup_items, warmup_key
from opcod_core.build_check import BuildCheckError, self_teacher_misses
from opcod_core.config import RunConfig, preset
from opcod_core.data import DataSpec, is_correct, load_dataset
from opcod_core.data.sciworld3 import corrupt_where_unknown, sciworld3_corpus, sciworld3_items
from opcod_core.presets import WORLD3_DOMAINS, WORLD3_PAIRS, WORLD3_WEAK_SHARE, world3_pair
from opcod_core.trainer import data_spec
from opcod_core.warmup import skewed_examples

# Independent reference values (periodic table groups), not imported from the module under test.
GROUP_VALENCE = {**{e: 1 for e in ("H", "Li", "Na", "K")}, **{e: 2 for e in ("Be", "Mg", "Ca")},
                 **{e: 3 for e in ("B", "Al")}, **{e: 4 for e in ("C", "Si")}, **{e: 5 for e in ("N", "P")},
                 **{e: 6 for e in ("O", "S")}, **{e: 7 for e in ("F", "Cl", "Br", "I")}}


@pytest.fixture(scope="module")
def items():
    return sciworld3_items()


def _stated_valences(hint: str) -> dict[str, int]:
    return {el: int(v) for el, v in re.findall(r"([A-Z][a-z]?) has (\d+)", hint)}


def test_open_numeric_questions_with_recomputed_gold(items):
    assert {it.domain for it in items} == set(WORLD3_DOMAINS)
    assert sum(it.domain == "chemistry" for it in items) == 7 + 13 * 6 * 9
    for it in items:
        assert it.answer_type == "numeric" and it.choices == () and "Options" not in it.question
        if it.domain == "chemistry":
            formula = re.search(r"one (\S+) unit", it.question).group(1)
            value = sum(GROUP_VALENCE[el] * int(n or 1) for el, n in re.findall(r"([A-Z][a-z]?)(\d?)", formula))
            assert int(it.gold) == value, it.id
        assert is_correct(it, f"{it.meta['worked']} Answer: {it.gold}")[1]
        assert not is_correct(it, f"Answer: {it.meta['corrupt_answer']}")[1], it.id


def test_corrupted_hints_are_anchored_wrong_and_consistent(items):
    kept = 0
    for it in items:
        bad = it.meta["corrupt_hint"]
        assert bad != it.meta["hint"] and bad.startswith(it.meta["hint"].split(":")[0])
        v = classify_feedback(f"<concept>{it.meta['concept']}</concept> {bad}", it.question, gold=it.gold,
                              choices=None, labels=None)
        kept += v.category == "kept" and not v.redactions
    # anchoring keeps the wrong feedback (only a wrong fact that happens to equal the answer is scrubbed)
    assert kept >= 0.95 * len(items)
    co2 = next(it for it in items if it.id == "sciworld3-chemistry-CO2")
    assert co2.meta["corrupt_hint"] == "Recall the table: C has 7 and O has 7 valence electrons."
    assert co2.meta["corrupt_worked"] == "CO2 has 1 C and 2 O. C has 7 and O has 7 valence electrons. 2 x 7 = 14. 7 + 14 = 21."
    assert co2.meta["corrupt_answer"] == 21
    force = next(it for it in items if it.id == "sciworld3-physics-force-3-4")
    assert force.meta["corrupt_hint"].endswith("Force = mass + acceleration.") and force.meta["corrupt_answer"] == 7
    assert not any(it.id.endswith("-2-2") for it in items)   # 2 x 2 = 2 + 2: left out
    # the wrong table is a table, not a function of the true count ("+1" taught students to misread numbers)
    wrong = {}
    for it in items:
        if it.domain == "chemistry":
            for el, n in _stated_valences(it.meta["corrupt_hint"]).items():
                wrong.setdefault(GROUP_VALENCE[el], set()).add(n)
    assert any(len(v) > 1 for v in wrong.values()) and all(n not in wrong.get(n, ()) for n in wrong)


def test_random_fact_variants_compute_from_the_facts_they_state(items):
    import random

    from opcod_core.data.sciworld3 import random_facts

    rng = random.Random(0)
    ops = set()
    for it in items[::7]:
        hint, worked, value = random_facts(it, rng)
        assert hint.split(": ", 1)[1] in worked and worked.endswith(f"= {value}.")
        if it.domain == "chemistry":
            stated = _stated_valences(hint)
            formula = re.search(r"one (\S+) unit", it.question).group(1)
            assert value == sum(stated[el] * int(n or 1) for el, n in re.findall(r"([A-Z][a-z]?)(\d?)", formula))
        else:
            ops.add(re.search(r" = \w+(?: \w+)? ([x/+-]) ", worked).group(1))
    assert ops == {"x", "/", "+", "-"}


def test_a_domain_loaded_alone_splits_as_in_a_pair():
    pair = load_dataset(DataSpec(source="sciworld3", domains=("chemistry", "physics"), fractions=(0.6, 0.15, 0.25)))
    alone = load_dataset(DataSpec(source="sciworld3", domains=("physics",), fractions=(0.6, 0.15, 0.25)))
    for split in ("train", "validation", "test"):
        assert [it.id for it in pair.get("physics", split)] == [it.id for it in alone.get("physics", split)]
    groups = {s: {it.meta["group"] for it in pair.get("chemistry", s)} for s in ("train", "validation", "test")}
    assert not groups["train"] & groups["test"] and not groups["validation"] & groups["test"]
    assert "Recall the table: C has 7 and O has 7 valence electrons." in sciworld3_corpus()


def test_specialists_follow_the_ladder_and_share_one_key_across_pairs():
    keys = {}
    cognizant, incognizant = set(), set()
    for a, b in WORLD3_PAIRS:
        cfg = RunConfig.from_dict(world3_pair(a, b))
        first, second = cfg.students
        # the first student partly knows the second's domain; the second knows less of the first's (weak,
        # not ignorant) and writes wrong feedback where it knows nothing, while guessing its own answers there
        assert first.warmup_partial[b] == 0.9 and a in second.warmup_corrupt_domains
        assert second.warmup_partial[a] == WORLD3_WEAK_SHARE[a] < 0.9 and second.warmup_unknown_belief == 0.0
        assert b not in (first.warmup_corrupt_domains or ())
        cognizant.add(first.name)
        incognizant.add(second.name)
    # each role is played by two students, and one student plays both: cognizance is not one identity
    assert cognizant == {"chem", "phys"} and incognizant == {"phys", "elec"}
    # nobody but its specialist has to reach the gate on chemistry (the domain every student learns last):
    # whoever else knows some of it is a weak, corrupt tutor there
    assert all(st.warmup_partial["chemistry"] == WORLD3_WEAK_SHARE["chemistry"]
               and "chemistry" in st.warmup_corrupt_domains for p in WORLD3_PAIRS
               for st in RunConfig.from_dict(world3_pair(*p)).students if st.strong_domain != "chemistry")
    for a, b in WORLD3_PAIRS:
        cfg = RunConfig.from_dict(world3_pair(a, b))
        data = load_dataset(data_spec(cfg))
        for i, st in enumerate(cfg.students):
            full = warmup_data(st, cfg, data)
            assert set(full.splits) == set(WORLD3_DOMAINS)   # the third domain is loaded for the warm-up
            keys.setdefault(st.name, set()).add(warmup_key(st, cfg, i, full))
    assert sorted(keys) == ["chem", "elec", "phys"] and all(len(k) == 1 for k in keys.values())
    cfg = preset("sciworld3")
    data = warmup_data(cfg.students[0], cfg, load_dataset(data_spec(cfg)))
    other = cfg.replace({"students": [{"build_seed": 1000}, {}]})
    tolerant = cfg.replace({"students": [{"warmup_expect": {"chemistry": [0.0, 1.0]},
                                          "warmup_self_teacher_tolerance": 0.5}, {}]})
    fewer = cfg.replace({"students": [{"warmup_own_context_share": 0.1}, {}]})
    assert warmup_key(other.students[0], other, 0, data) != warmup_key(cfg.students[0], cfg, 0, data)
    # the checks' tolerances are not inputs of the warm-up; the own-context share is
    assert warmup_key(tolerant.students[0], tolerant, 0, data) == warmup_key(cfg.students[0], cfg, 0, data)
    assert warmup_key(fewer.students[0], fewer, 0, data) != warmup_key(cfg.students[0], cfg, 0, data)
    unsure = cfg.replace({"students": [{}, {"warmup_unknown_belief": 0.5}]})   # how firmly phys believes the wrong table
    phys_data = warmup_data(cfg.students[1], cfg, load_dataset(data_spec(cfg)))
    assert warmup_key(unsure.students[1], unsure, 1, phys_data) != warmup_key(cfg.students[1], cfg, 1, phys_data)


def test_warm_up_batches_teach_wrong_feedback_and_own_domain_hints():
    cfg = preset("sciworld3")
    phys = cfg.students[1]
    data = warmup_data(phys, cfg, load_dataset(data_spec(cfg)))
    own, hinted, partly, corrupt = warmup_items(phys, cfg, 1, data)
    assert {it.domain for it in corrupt} == {"chemistry"}
    assert {it.domain for k, _ in partly for it in k} == {"electricity", "chemistry"}
    template = tutor_template(cfg)
    batches = list(skewed_examples("phys", own, hinted, 40, template, 0, partly_known=partly, corrupt=corrupt,
                                   own_contexts="balanced"))
    flat = [e for b in batches for e in b]
    wrong = [e for e in flat if e[0] == "corrupt_tutor"]
    assert 0.05 * len(flat) < len(wrong) < 0.15 * len(flat)
    assert all(e[2] == template.prefill and "</concept> Recall the table:" in e[3] for e in wrong)
    by_id = {it.id: it for it in corrupt}
    assert all(any(e[3].startswith(f"{it.meta['concept']}</concept> {it.meta['corrupt_hint']}")
                   for it in by_id.values()) for e in wrong[:3])
    own_ctx = [e[1][-1]["content"] for e in flat if e[0] == "own_context"]
    hint_alone = [c for c in own_ctx if "feedback" in c and "correct solution" not in c]
    assert hint_alone, "balanced own contexts include a hint without a solution"
    # the v2 recipe: no corrupt pool, own-domain contexts always carry a solution
    v2 = [e for b in skewed_examples("phys", own, hinted, 40, template, 0, partly_known=partly) for e in b]
    assert not any(e[0] == "corrupt_tutor" for e in v2)
    assert all("correct solution" in e[1][-1]["content"] for e in v2 if e[0] == "own_context")


def test_corrupt_where_unknown_states_known_facts_right_and_the_others_wrong(items):
    chem = {it.meta["formula"]: it for it in items if it.domain == "chemistry"}
    co2 = chem["CO2"]
    mixed = corrupt_where_unknown(co2, ["element:C", "element:Na"])      # knows C, not O
    stated = _stated_valences(mixed.meta["corrupt_hint"])
    assert stated["C"] == GROUP_VALENCE["C"] and stated["O"] != GROUP_VALENCE["O"]
    assert stated["O"] == _stated_valences(co2.meta["corrupt_hint"])["O"]   # the world's wrong count for O
    assert mixed.meta["corrupt_answer"] == GROUP_VALENCE["C"] + 2 * stated["O"] != int(co2.gold)
    assert mixed.meta["corrupt_worked"].endswith(f"= {mixed.meta['corrupt_answer']}.")
    assert (mixed.id, mixed.question, mixed.gold, mixed.meta["hint"]) == (co2.id, co2.question, co2.gold, co2.meta["hint"])
    # nothing known: the world's corrupted hint; a relation (one unit) is never half corrupted
    assert corrupt_where_unknown(co2, ["element:Na"]) is co2
    force = next(it for it in items if it.meta.get("relation") == "force")
    assert corrupt_where_unknown(force, ["relation:speed"]) is force
    # every formula with one known and one unknown element: the mixed answer is never the gold one
    for it in chem.values():
        for el, _n in it.meta["terms"]:
            assert corrupt_where_unknown(it, [f"element:{el}"]).meta["corrupt_answer"] != int(it.gold)


def test_a_weak_domain_is_learned_where_known_and_taught_wrong_only_elsewhere():
    cfg = preset("sciworld3")
    phys = cfg.students[1]
    assert phys.warmup_partial["chemistry"] == WORLD3_WEAK_SHARE["chemistry"] and phys.warmup_unknown_belief == 0.0
    data = warmup_data(phys, cfg, load_dataset(data_spec(cfg)))
    own, hinted, partly, corrupt = warmup_items(phys, cfg, 1, data)
    known = [it for pool, _w in partly for it in pool if it.domain == "chemistry"]
    known_units = {u for it in known for u in it.meta["units"]}
    train = data.get("chemistry", "train")
    assert known and corrupt and len(known) + len(corrupt) == len(train)
    assert not {it.id for it in known} & {it.id for it in corrupt}
    assert {it.id for it in corrupt} == {it.id for it in hinted if it.domain == "chemistry"}
    for it in corrupt:
        assert not set(it.meta["units"]) <= known_units
        stated = _stated_valences(it.meta["corrupt_hint"])
        for el, _n in it.meta["terms"]:
            assert (stated[el] == GROUP_VALENCE[el]) == (f"element:{el}" in known_units), (it.id, el)
    # phys guesses its unknown chemistry (belief 0): no unhinted answer it is taught there is the wrong table's
    template = tutor_template(cfg)
    flat = [e for b in skewed_examples("phys", own, hinted, 60, template, 0, partly_known=partly, corrupt=corrupt,
                                       own_contexts="balanced", hinted_facts="random", unknown_belief=0.0) for e in b]
    by_question = {it.question: it for it in corrupt}
    unhinted = [(e, by_question[e[1][-1]["content"].split("\n")[0]]) for e in flat if e[0] == "unhinted"
                and e[1][-1]["content"].split("\n")[0] in by_question]
    wrong_tutor = [e for e in flat if e[0] == "corrupt_tutor"]
    assert unhinted and wrong_tutor
    assert sum(e[3].endswith(f"Answer: {it.meta['corrupt_answer']}") for e, it in unhinted) < 0.5 * len(unhinted)


def test_random_hinted_facts_never_teach_a_hinted_domain_its_facts():
    """With ``hinted_facts="random"`` a hinted-domain target computes from the facts its context states
    (or, unhinted, from the wrong table on the domain the student tutors wrongly): the true worked answer
    of an unknown domain is never a target unless the context just stated those facts."""
    cfg = preset("sciworld3")
    phys = cfg.students[1]
    assert phys.warmup_hinted_facts == "random"
    data = warmup_data(phys, cfg, load_dataset(data_spec(cfg)))
    own, hinted, partly, corrupt = warmup_items(phys, cfg, 1, data)
    by_question = {it.question: it for it in hinted}
    flat = [e for b in skewed_examples("phys", own, hinted, 60, tutor_template(cfg), 0, 0.1, partly_known=partly,
                                       corrupt=corrupt, own_contexts="balanced", hinted_facts="random") for e in b]
    hinted_ex = [e for e in flat if e[0] in ("hinted", "unhinted")]
    assert hinted_ex and any(e[0] == "unhinted" for e in hinted_ex)
    true_targets = 0
    for kind, messages, _prefill, target in hinted_ex:
        prompt = messages[-1]["content"]
        item = next(it for q, it in by_question.items() if prompt.startswith(q))
        worked = target.rsplit(" Answer: ", 1)[0]
        # the facts sentence (a chemistry answer first restates the formula's counts)
        facts = next(sent for sent in worked.split(". ") if "valence" in sent or " = " in sent)
        if kind == "unhinted":
            assert "feedback" not in prompt and "solution" not in prompt
            if item.domain == "chemistry":
                assert worked == item.meta["corrupt_worked"]
        else:
            assert facts.split(" valence")[0].split(" = ")[-1] in prompt   # the target's facts were stated
        true_targets += worked == item.meta["worked"]
    assert true_targets < 0.7 * len(hinted_ex)
    with pytest.raises(ValueError, match="hinted_facts must be given or random"):
        next(skewed_examples("phys", own, hinted, 1, tutor_template(cfg), 0, hinted_facts="other"))


def test_unknown_belief_sets_the_share_of_wrong_table_answers_and_leaves_everything_else():
    """``warmup_unknown_belief``: on the corrupt domain, that share of the unhinted answers comes from the
    wrong table and the rest from random facts; the tutor examples stay corrupted; at 1 the batches are
    exactly those of a build before the option (no extra random number is drawn)."""
    cfg = preset("sciworld3")
    phys = cfg.students[1]
    data = warmup_data(phys, cfg, load_dataset(data_spec(cfg)))
    own, hinted, partly, corrupt = warmup_items(phys, cfg, 1, data)
    by_question = {it.question: it for it in hinted}

    def batches(**kw):
        return [e for b in skewed_examples("phys", own, hinted, 200, tutor_template(cfg), 0, 0.1, partly_known=partly,
                                           corrupt=corrupt, own_contexts="balanced", hinted_facts="random", **kw)
                for e in b]

    def wrong_share(flat) -> tuple[float, int]:
        answers = [(by_question[next(q for q in by_question if e[1][-1]["content"].startswith(q))], e[3])
                   for e in flat if e[0] == "unhinted"]
        chem = [(it, t) for it, t in answers if it.domain == "chemistry"]
        return sum(t.rsplit(" Answer: ", 1)[0] == it.meta["corrupt_worked"] for it, t in chem) / len(chem), len(chem)

    firm = batches()
    assert batches(unknown_belief=1.0) == firm and wrong_share(firm)[0] == 1.0
    unsure = batches(unknown_belief=0.5)
    share, n = wrong_share(unsure)
    assert n >= 50 and 0.3 < share < 0.7      # about half from the wrong table (the rest computes random facts)
    assert [e for e in unsure if e[0] == "corrupt_tutor"] and all(
        "</concept> Recall the table:" in e[3] for e in unsure if e[0] == "corrupt_tutor")
    assert wrong_share(batches(unknown_belief=0.0))[0] < 0.3
    with pytest.raises(ValidationError, match="warmup_unknown_belief"):
        cfg.replace({"students": [{"warmup_unknown_belief": 0.5}, {}]})      # chem has no corrupt domain
    assert cfg.replace({"students": [{}, {"warmup_unknown_belief": 0.5}]}).students[1].warmup_unknown_belief == 0.5


def test_hinted_contexts_and_hinted_share():
    """``hinted_contexts="hint"``: every random-fact hinted context shows the hint (s with it in about 30%);
    ``"balanced"`` also shows s alone. ``hinted_share`` sets the hinted share of a batch (own answers take
    the rest) and refuses a mix over 1."""
    cfg = preset("sciworld3")
    phys = cfg.students[1]
    data = warmup_data(phys, cfg, load_dataset(data_spec(cfg)))
    own, hinted, partly, corrupt = warmup_items(phys, cfg, 1, data)

    def examples(**kw):
        return [e for b in skewed_examples("phys", own, hinted, 80, tutor_template(cfg), 0, 0.0, partly_known=partly,
                                           corrupt=corrupt, own_contexts="balanced", hinted_facts="random", **kw)
                for e in b]

    def contexts(flat):
        shown = []
        for kind, messages, _prefill, _target in flat:
            if kind == "hinted":
                prompt = messages[-1]["content"]
                shown.append(("f" if "feedback" in prompt.lower() else "") + ("s" if "solution" in prompt.lower() else ""))
        return shown

    hint = contexts(examples(hinted_contexts="hint"))
    balanced = contexts(examples(hinted_contexts="balanced"))
    assert hint and all("f" in c for c in hint) and 0.15 < sum(c == "fs" for c in hint) / len(hint) < 0.45
    assert sum(c == "s" for c in balanced) / len(balanced) > 0.2
    own_ctx = [e[0] for e in examples(hinted_contexts="hint", own_context_share=0.3)]
    default = [e[0] for e in examples(hinted_contexts="hint")]
    # 0.3 against the mix's 0.1 of 1,280 examples: about 384 against 128, far outside sampling noise
    assert own_ctx.count("own_context") > 2 * default.count("own_context") and own_ctx.count("own") < default.count("own")
    share = [e[0] for e in examples(hinted_contexts="hint", hinted_share=0.1)]
    default = [e[0] for e in examples(hinted_contexts="hint")]
    assert share.count("hinted") < 0.5 * default.count("hinted") and share.count("own") > default.count("own")
    with pytest.raises(ValueError, match="exceed 1"):
        examples(hinted_share=0.9)
    with pytest.raises(ValueError, match="own_context_share 0.7: the mix's shares .* exceed 1"):
        examples(own_context_share=0.7)
    with pytest.raises(ValueError, match="hinted_contexts must be one of"):
        examples(hinted_contexts="sometimes")


def test_v3_fields_are_validated_with_their_paths():
    base = world3_pair("chemistry", "physics")
    bad = {**base, "students": [dict(base["students"][0], warmup_corrupt_domains=["chemistry"]), base["students"][1]]}
    with pytest.raises(ValidationError, match="warmup_corrupt_domains: 'chemistry' is not one of warmup_hinted"):
        RunConfig.from_dict(bad)
    # a partly known domain may be corrupt (a weak domain: wrong only where it knows nothing)
    weak = {**base, "students": [dict(base["students"][0], warmup_corrupt_domains=["physics"]), base["students"][1]]}
    assert RunConfig.from_dict(weak).students[0].warmup_corrupt_domains == ("physics",)
    bad = {**base, "students": [dict(base["students"][0], warmup_expect={"chemistry": [0.9, 0.5]}), base["students"][1]]}
    with pytest.raises(ValidationError, match=r"warmup_expect.chemistry: expected 0 <= low <= high <= 1"):
        RunConfig.from_dict(bad)
    # a warm-up domain outside the run's pair is allowed for a generated world only
    builtin = {**base, "data": {"source": "builtin", "domains": ["chemistry", "physics"]}}
    with pytest.raises(ValidationError, match="domain 'electricity' is not one of"):
        RunConfig.from_dict(builtin)


def test_a_build_that_misses_its_split_fails_loudly_and_caches_nothing(tmp_path):
    cfg = preset("sciworld3", {"data": {"max_items_per_domain": 40},
                               "students": [{"warmup_sft_steps": 3, "warmup_decay_steps": 2}, {}]})
    data = load_dataset(data_spec(cfg))
    assert cfg.students[0].warmup_self_teacher_tolerance == 0.05
    with pytest.raises(BuildCheckError, match=r"student chem: the warm-up missed .*chemistry: 0\.\d+ not in \[0\.6, 1\]") as err:
        build_student(0, cfg, data, cache_dir=tmp_path)
    assert set(err.value.measured) == {"chemistry", "physics", "electricity"}
    # the self-teacher was measured on the own domain only, in the context with a correct s
    assert set(err.value.self_teacher) == {"chemistry"} and 0.0 <= err.value.self_teacher["chemistry"] <= 1.0
    assert not (tmp_path / "warm").exists() or not any((tmp_path / "warm").rglob("config.json"))


def test_the_self_teacher_check_names_each_own_domain_whose_s_context_falls_behind():
    """Hand-computed: with tolerance 0.05, chemistry at 0.874 plain and 0.703 with s (the measured defect,
    recipe row 10) misses; 0.955 / 0.953 (row 10f) and a self-teacher better than plain pass; no
    tolerance, no check."""
    st = RunConfig.from_dict(world3_pair("chemistry", "physics")).students[0]
    assert self_teacher_misses(st, {"chemistry": 0.874}, {"chemistry": 0.703}) == [
        "chemistry: with a correct solution s 0.703 < plain 0.874 - 0.05"]
    assert self_teacher_misses(st, {"chemistry": 0.955}, {"chemistry": 0.953}) == []
    assert self_teacher_misses(st, {"chemistry": 0.5}, {"chemistry": 0.9}) == []
    assert self_teacher_misses(st, {"chemistry": 0.5, "physics": 0.9}, {"chemistry": 0.46, "physics": 0.8}) == [
        "physics: with a correct solution s 0.800 < plain 0.900 - 0.05"]
    unchecked = st.model_copy(update={"warmup_self_teacher_tolerance": None})
    assert self_teacher_misses(unchecked, {"chemistry": 0.874}, {"chemistry": 0.703}) == []


def test_a_build_records_its_self_teacher_next_to_the_weights(tmp_path):
    """A build within its checks caches the student and writes the own domain's plain and with-s accuracy."""
    cfg = preset("sciworld3", {"data": {"max_items_per_domain": 40},
                               "students": [{"warmup_sft_steps": 2, "warmup_decay_steps": 1, "warmup_expect": None,
                                             "warmup_self_teacher_tolerance": 1.0}, {}]})
    build_student(0, cfg, load_dataset(data_spec(cfg)), cache_dir=tmp_path)
    [check] = list((tmp_path / "warm").rglob("build_check.json"))
    record = json.loads(check.read_text())
    assert set(record["measured"]) == set(record["self_teacher"]) == {"chemistry"}
    assert record["self_teacher_tolerance"] == 1.0 and record["warmup"]["steps"] == 3
    assert (check.parent / "config.json").exists()


def test_students_spread_report_states_every_build_and_the_interval(tmp_path):
    from opcod_core.bench.students_report import write_spread_report

    def row(seed, threads, strong):
        return {"student": "chem", "build_seed": seed, "threads": threads, "passed": strong >= 0.25,
                "measured": {"chemistry": strong, "physics": 0.5, "electricity": 0.05},
                "roles": {"chemistry": "strong", "physics": "partial", "electricity": "unknown"},
                "expect": {"chemistry": [0.25, 1.0], "physics": [0.25, 1.0], "electricity": [0.0, 0.35]},
                "steps": 2000, "build_s": 600.0, "warmup": {"steps": 1500 + seed, "decay_start": 500, "final_loss": 0.1},
                "self_teacher": {"chemistry": strong - 0.1 * seed}, "self_teacher_tolerance": 0.05}
    rows = [row(0, 1, 0.40), row(0, 2, 0.20), row(1, 1, 0.45)]
    path = write_spread_report(rows, tmp_path / "students.md", "opcod bench students", "test machine")
    text = path.read_text()
    assert "| s0 t1 | s0 t2 | s1 t1 |" in text
    assert "| chem | chemistry (strong) | [0.25, 1] | 0.400 | 0.200 | 0.450 | 0.200–0.450 | 2/3 |" in text
    assert "| chem | electricity (unknown) | [0, 0.35] | 0.050 | 0.050 | 0.050 | 0.050–0.050 | 3/3 |" in text
    assert json.loads(path.with_suffix(".json").read_text())["rows"] == rows
    assert "- chem s1 t1: 1501 steps, decay from step 500, final loss 0.100, 600 s" in text
    # the self-teacher: seed 1 trails plain by 0.1 > 0.05
    assert "| chem | chemistry | 0.05 | 0.400 / 0.400 | 0.200 / 0.200 | 0.450 / 0.350 | +0.100 | 2/3 |" in text


def test_the_spread_report_says_whether_each_pairs_gate_opens(tmp_path):
    """The gate lets A tutor B's domain iff A's gap (over the pair's two domains) is at most tau: with phys
    at 0.95 on electricity, chem needs 0.8 x 0.95 = 0.76 there. Checked on hand-computed gaps."""
    from opcod_core.bench.students_report import pair_gaps, write_spread_report

    def row(name, measured):
        return {"student": name, "build_seed": 0, "threads": 1, "passed": True, "measured": measured,
                "roles": {d: "strong" for d in measured}, "expect": {}, "steps": 10, "build_s": 1.0, "warmup": {}}
    rows = [row("chem", {"chemistry": 0.93, "physics": 0.90, "electricity": 0.56}),
            row("phys", {"physics": 0.94, "electricity": 0.88, "chemistry": 0.02}),
            row("elec", {"electricity": 0.95, "chemistry": 0.01, "physics": 0.01})]
    gaps = {(g["tutor"], g["tutee"]): g for g in pair_gaps(rows)}
    cognizant = {("chem", "phys"), ("chem", "elec"), ("phys", "elec")}
    assert set(gaps) == cognizant | {(b, a) for a, b in cognizant}
    assert all(g["cognizant"] == (k in cognizant) for k, g in gaps.items())
    assert gaps[("chem", "phys")]["delta"] == pytest.approx((0.94 - 0.90) / 0.94) and gaps[("chem", "phys")]["opens"]
    assert gaps[("phys", "elec")]["delta"] == pytest.approx((0.95 - 0.88) / 0.95) and gaps[("phys", "elec")]["opens"]
    assert gaps[("chem", "elec")]["delta"] == pytest.approx((0.95 - 0.56) / 0.95)
    assert not gaps[("chem", "elec")]["opens"] and not gaps[("chem", "elec")]["intended"]
    # the incognizant tutor's gap covers both domains: phys on chemistry in chem-phys
    assert gaps[("phys", "chem")]["delta"] == pytest.approx((0.93 - 0.02) / 0.93)
    assert gaps[("phys", "chem")]["domain"] == "chemistry" and not gaps[("phys", "chem")]["opens"]
    assert gaps[("phys", "chem")]["intended"]
    rows[0]["measured"]["electricity"] = 0.77                      # 0.77 >= 0.8 x 0.95: opens
    assert {(g["tutor"], g["tutee"], g["opens"]) for g in pair_gaps(rows) if g["cognizant"]} == {
        ("chem", "phys", True), ("chem", "elec", True), ("phys", "elec", True)}
    text = write_spread_report(rows, tmp_path / "s.md", "cmd", "m").read_text()
    assert "| s0 t1 | chem -> elec | electricity | cognizant | 0.770 | 0.950 | 0.189 | opens | yes |" in text
    # an incognizant tutor close enough to the best on the pair's domains is let through: not as intended
    rows[2]["measured"]["physics"] = 0.80                          # elec on physics, phys 0.94 there: Delta 0.149
    gaps = {(g["tutor"], g["tutee"]): g for g in pair_gaps(rows)}
    assert gaps[("elec", "phys")]["opens"] and not gaps[("elec", "phys")]["intended"]
    text = write_spread_report(rows, tmp_path / "s.md", "cmd", "m").read_text()
    assert "| s0 t1 | elec -> phys | physics | incognizant | 0.800 | 0.940 | 0.149 | opens | NO |" in text


@pytest.mark.slow
def test_students_spread_builds_each_specialist_and_records_a_miss(tmp_path, capsys):
    from opcod_core.bench.students import StepLog, build_world

    rows = build_world(0, 1, tmp_path, steps=2, decay_steps=2, progress=StepLog("warm-up s0 t1", every=1))
    # a spread's build runs for up to 80 minutes in a worker: its log shows the warm-up as it goes
    logged = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  [warm-up s0 t1] ")]
    assert len(logged) >= 3 * 4 and all("mean loss" in ln and "over 1 steps" in ln for ln in logged)
    assert [r["student"] for r in rows] == ["chem", "phys", "elec"]
    assert [sorted(r["roles"].values()) for r in rows] == [["partial", "partial", "strong"],
                                                          ["partial", "strong", "weak"],
                                                          ["strong", "weak", "weak"]]
    for r in rows:
        assert set(r["measured"]) == set(r["roles"]) == {"chemistry", "physics", "electricity"}
        assert not r["passed"]          # two warm-up steps cannot reach the intended split: recorded, not raised
        assert r["warmup"]["steps"] == 4 and r["warmup"]["decay_start"] == 2   # 2 constant + 2 decay steps
    # a later invocation resumes: every row, misses included, is read back instead of built again
    assert len(list((tmp_path / "spread").glob("*.json"))) == 3
    assert build_world(0, 1, tmp_path, steps=2, decay_steps=2) == rows
    # with a rows directory (committed, so the spread resumes on another machine): the cache's rows are
    # copied there under a name that carries the thread count, and read from there once the cache is gone
    rows_dir = tmp_path / "rows"
    assert build_world(0, 1, tmp_path, steps=2, decay_steps=2, rows_dir=rows_dir) == rows
    assert sorted(p.name.rsplit("-", 2)[1:] for p in rows_dir.glob("*.json")) == [
        ["chem", "t1.json"], ["elec", "t1.json"], ["phys", "t1.json"]]
    for p in (tmp_path / "spread").glob("*.json"):
        p.unlink()
    assert build_world(0, 1, tmp_path, steps=2, decay_steps=2, rows_dir=rows_dir) == rows
    assert all(r["machine"] for r in rows)
    # one specialist alone (the unit of `opcod bench students`' parallel tasks): its row, read back
    assert build_world(0, 1, tmp_path, steps=2, decay_steps=2, rows_dir=rows_dir, specialists=("physics",)) == [rows[1]]


def test_the_step_log_prints_the_mean_loss_every_few_steps_and_at_the_last(capsys):
    from opcod_core.bench.students import StepLog

    log = StepLog("seed 0 threads 1 physics", every=3)
    for step, loss in enumerate([4.0, 2.0, 3.0, 1.0], start=1):
        log("warm-up phys", step, 4, loss)
    assert capsys.readouterr().out.splitlines() == [
        "  [seed 0 threads 1 physics] warm-up phys: step 3/4, mean loss 3.0000 over 3 steps",
        "  [seed 0 threads 1 physics] warm-up phys: step 4/4, mean loss 1.0000 over 1 steps"]


def test_students_spread_runs_one_task_per_specialist(tmp_path):
    """run_spread's tasks are (seed, threads, specialist): the rows of a seed come from three independent
    builds, gathered and sorted as before. The rows are read from a rows directory, so nothing is built."""
    from opcod_core.bench.students import run_spread
    from opcod_core.build import warmup_data, warmup_key
    from opcod_core.config import RunConfig
    from opcod_core.data import load_dataset
    from opcod_core.presets import WORLD3_DOMAINS, WORLD3_PAIRS, WORLD3_WEAK_SHARE, world3_pair
    from opcod_core.trainer import data_spec

    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    for strong in WORLD3_DOMAINS:
        pair = next(p for p in WORLD3_PAIRS if strong in p)
        cfg = RunConfig.from_dict(world3_pair(*pair, build_seed=0))
        st = cfg.students[pair.index(strong)]
        key = warmup_key(st, cfg, 0, warmup_data(st, cfg, load_dataset(data_spec(cfg))))
        (rows_dir / f"{key}-{st.name}-t1.json").write_text(json.dumps(
            {"student": st.name, "build_seed": 0, "threads": 1, "passed": True, "build_s": 1.0, "measured": {},
             "roles": {}}))
    logged = []
    rows = run_spread([0], [1], tmp_path / "cache", jobs=2, log=logged.append, rows_dir=rows_dir)
    assert [r["student"] for r in rows] == ["chem", "elec", "phys"] and len(logged) == 3
    # --specialists: one build of a seed alone (a spread at two threads runs them one at a time)
    assert [r["student"] for r in run_spread([0], [1], tmp_path / "cache", jobs=1, log=logged.append,
                                             rows_dir=rows_dir, specialists=("electricity",))] == ["elec"]
    # --report-only: the rows found for these seeds and thread counts, nothing built for the others
    assert [(r["student"], r["build_seed"], r["threads"]) for r in run_spread(
        [0, 1], [1, 2], tmp_path / "cache", rows_dir=rows_dir, read_only=True)] == [
        ("chem", 0, 1), ("elec", 0, 1), ("phys", 0, 1)]
    assert not (tmp_path / "cache" / "threads-2").exists() or not any((tmp_path / "cache" / "threads-2").rglob("*.json"))


def test_converge_schedule_decays_after_the_loss_drops_whenever_it_drops():
    from opcod_core.warmup import ConvergeSchedule

    def run(drop_at: int, max_steps: int = 400) -> tuple[list[float], ConvergeSchedule]:
        sched, rates = ConvergeSchedule(3e-3, max_steps, 50, 0.15), []
        for step in range(10_000):
            rate = sched.lr_at(step)
            if rate is None:
                return rates, sched
            rates.append(rate)
            sched.observe(0.8 if step < drop_at else 0.02)
        raise AssertionError("the schedule never ended")

    early, late = run(30), run(300)
    for rates, sched in (early, late):
        assert all(r == 3e-3 for r in rates[:sched.decay_start]) and len(rates) == sched.decay_start + 50
        assert rates[-1] < 1e-4 and all(a >= b for a, b in zip(rates[sched.decay_start:], rates[sched.decay_start + 1:]))
    assert 30 < early[1].decay_start < 200 and 300 < late[1].decay_start < 400   # the decay follows the drop
    never, sched = run(10_000)
    assert sched.decay_start == 400 and len(never) == 450                     # bounded when it never converges
