"""Loaders for the generic formats a user can write by hand: JSONL and CSV.

JSONL record: ``{"question": ..., "choices": [...] | {"A": ..., ...}, "answer": "B" | 1 | 6.02e23,
"domain": ..., "id": optional}``. CSV: the columns ``question``, ``answer``, ``domain``, optional
``id``, and either ``choice_a`` .. ``choice_e`` (empty cells are dropped) or one ``choices`` column
separated by ``|``. An answer is a choice label, a 0-based index, or, for a question without choices,
a number (that makes it ``answer_type="numeric"``). Headers are case-insensitive.

Line numbers in errors are the physical line where the record starts (the CSV header is line 1).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from .errors import ErrorSink, RecordError
from .records import Deduper, LoadResult, build_item, iter_jsonl, normalize_domain, require_text, slug

CSV_CHOICE_COLUMNS = tuple(f"choice_{c}" for c in "abcdefgh")


def _keep(domain: str, want: set[str], result: LoadResult) -> bool:
    if want and domain not in want:
        result.skipped["other domain"] += 1
        return False
    return True


def parse_generic_record(rec: dict, prefix: str, want: set[str], result: LoadResult):
    """Returns an Item, or None when the record is filtered out; raises RecordError when bad."""
    domain = normalize_domain(require_text(rec, "domain"))
    if not _keep(domain, want, result):
        return None
    question = require_text(rec, "question")
    if "answer" not in rec:
        raise RecordError("answer", "missing")
    meta = {k: v for k, v in rec.items() if k not in ("question", "choices", "answer", "domain", "id")}
    return build_item(prefix=prefix, domain=domain, question=question, choices_value=rec.get("choices"),
                      answer=rec["answer"], explicit_id=rec.get("id"), meta=meta)


def load_jsonl(path: str | Path, *, domains: Iterable[str] = (), strict: bool = True) -> LoadResult:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    want = {normalize_domain(d) for d in domains}
    sink, result = ErrorSink(strict), LoadResult()
    dedupe = Deduper(result, sink, path)
    for lineno, rec in iter_jsonl(path, sink):
        result.n_records += 1
        try:
            item = parse_generic_record(rec, slug(path.stem), want, result)
        except RecordError as e:
            sink.add(path, lineno, e.field, e.message)
            continue
        if item is not None:
            dedupe.add(item, lineno)
    result.errors = sink.errors
    return result


def _csv_choices(row: dict[str, str]):
    if any(c in row for c in CSV_CHOICE_COLUMNS):
        return [row[c].strip() for c in CSV_CHOICE_COLUMNS if (row.get(c) or "").strip()]
    raw = (row.get("choices") or "").strip()
    return [part.strip() for part in raw.split("|")] if raw else None


def _header_problem(header: list[str]) -> tuple[str, str] | None:
    """(column, message) of what makes a CSV header unusable, or None."""
    for col in ("question", "answer", "domain"):
        if col not in header:
            return col, f"missing column (the first line has {len(header)} columns; expected question, answer, domain)"
    if "choices" in header and any(c in header for c in CSV_CHOICE_COLUMNS):
        return "choices", "use either a 'choices' column or choice_a.. columns, not both"
    return None


def _csv_item(row: dict[str, str], path: Path, want: set[str], result: LoadResult):
    rec = {"question": row["question"], "domain": row["domain"], "answer": row["answer"], "choices": _csv_choices(row)}
    if (row.get("id") or "").strip():
        rec["id"] = row["id"]
    return parse_generic_record(rec, slug(path.stem), want, result)


def load_csv(path: str | Path, *, domains: Iterable[str] = (), strict: bool = True) -> LoadResult:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    want = {normalize_domain(d) for d in domains}
    sink, result = ErrorSink(strict), LoadResult()
    dedupe = Deduper(result, sink, path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            result.errors = sink.errors
            return result
        bad = _header_problem(header)
        if bad is not None:
            sink.add(path, 1, *bad)
            result.errors = sink.errors
            return result
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                sink.add(path, start, None, f"invalid CSV: {e}")
                continue
            if not any(c.strip() for c in cells):
                continue
            result.n_records += 1
            if len(cells) != len(header):
                sink.add(path, start, None, f"{len(cells)} cells but the header has {len(header)} columns")
                continue
            try:
                item = _csv_item(dict(zip(header, cells)), path, want, result)
            except RecordError as e:
                if e.field == "choices" and "choices" not in header:
                    e.field = "choice_a..choice_h"
                sink.add(path, start, e.field, e.message)
                continue
            if item is not None:
                dedupe.add(item, start)
    result.errors = sink.errors
    return result
