"""Loader for the SciKnowEval JSONL format, the paper's benchmark (L3, Chemistry/Physics/Materials).

A record looks like::

    {"question": "...", "choices": {"text": [...], "label": ["A", "B", "C", "D"]},
     "answerKey": "B", "domain": "Chemistry", "type": "mcq-4-choices",
     "details": {"level": "L3", "task": "...", "subtask": "..."}}

Level and domain filters are applied first, so records of other levels or domains are neither kept
nor validated (the full benchmark mixes in task types we do not train on). Records without choices
(open-ended, filling, extraction tasks) are skipped and counted, not reported as errors: they are
well-formed SciKnowEval, just not verifiable by letter extraction. Domain names are lower-cased.
Ids are ``<file stem>-<hash of content>`` so reordering a file keeps every id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import ErrorSink, RecordError
from .records import Deduper, LoadResult, build_item, iter_jsonl, normalize_domain, require_text, slug


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.jsonl") if p.is_file())
    return [path]


def _has_choices(rec: dict) -> bool:
    ch = rec.get("choices")
    if isinstance(ch, dict):
        return bool(ch.get("text"))
    return bool(ch)


def load_sciknoweval(path: str | Path, *, level: str | None = None, domains: Iterable[str] = (),
                     strict: bool = True) -> LoadResult:
    """Loads one SciKnowEval JSONL file (or every ``*.jsonl`` under a directory)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SciKnowEval data not found: {path}")
    want_domains = {normalize_domain(d) for d in domains}
    want_level = level.strip().lower() if level else None
    sink = ErrorSink(strict)
    result = LoadResult()
    for file in _files(path):
        dedupe = Deduper(result, sink, file)
        prefix = slug(file.stem)
        for lineno, rec in iter_jsonl(file, sink):
            result.n_records += 1
            try:
                item = _item(rec, prefix, want_level, want_domains, result)
            except RecordError as e:
                sink.add(file, lineno, e.field, e.message)
                continue
            if item is not None:
                dedupe.add(item, lineno)
    result.errors = sink.errors
    return result


def _item(rec: dict, prefix: str, want_level: str | None, want_domains: set[str], result: LoadResult):
    """The item of one record, or None when the filters skip it (counted in ``result.skipped``)."""
    domain = normalize_domain(require_text(rec, "domain"))
    details = rec.get("details")
    if details is not None and not isinstance(details, dict):
        raise RecordError("details", f"expected an object, got {type(details).__name__}")
    details = details or {}
    rec_level = details.get("level")
    if want_level is not None:
        if rec_level is None or not str(rec_level).strip():
            raise RecordError("details.level", "missing (needed to filter by level)")
        if str(rec_level).strip().lower() != want_level:
            result.skipped["other level"] += 1
            return None
    if want_domains and domain not in want_domains:
        result.skipped["other domain"] += 1
        return None
    question = require_text(rec, "question")
    if not _has_choices(rec):
        result.skipped[f"not multiple choice ({rec.get('type') or 'no choices'})"] += 1
        return None
    if rec.get("answerKey") in (None, ""):
        raise RecordError("answerKey", "missing")
    choices = rec["choices"]
    if isinstance(choices, dict) and not isinstance(choices.get("label"), list):
        raise RecordError("choices.label", "missing or not a list")
    meta = {"source": "sciknoweval", "level": rec_level, "task": details.get("task"),
            "subtask": details.get("subtask"), "type": rec.get("type")}
    return build_item(prefix=prefix, domain=domain, question=question, choices_value=choices,
                      answer=str(rec["answerKey"]), meta={k: v for k, v in meta.items() if v is not None},
                      answer_field="answerKey")
