"""``opcod data inspect PATH``: what a data file would give a run, and every record that is wrong.

The file is loaded leniently (bad records are collected, not raised) with the same loaders and the
same split a run would use, so the counts per domain and split are exactly what training would see.
The format is guessed from the extension and the first record when not given: a ``save_to_disk``
directory is ``hf``; ``.csv`` is ``csv``; a JSONL record with ``answerKey`` or ``choices.text`` is
``sciknoweval``, with ``answer_a`` and ``correct_answer`` it is ``mmlu``, otherwise generic ``jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataFormatError
from .loading import load_items
from .spec import SOURCES, DataSpec
from .splits import split_items
from .types import SPLITS


@dataclass
class InspectReport:
    path: str
    fmt: str
    n_records: int = 0
    n_items: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # domain -> split -> n
    totals: dict[str, int] = field(default_factory=dict)              # domain -> n (before the cap)
    errors: list[DataFormatError] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    split_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.split_error is None

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.fmt, "n_records": self.n_records, "n_items": self.n_items,
                "counts": self.counts, "totals": self.totals, "errors": [e.to_dict() for e in self.errors],
                "skipped": self.skipped, "split_error": self.split_error}


def _first_record(path: Path) -> dict | None:
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i > 50:
                break
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                return rec
    return None


def guess_format(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
            return "hf"
        files = sorted(p.rglob("*.jsonl"))
        if files and guess_format(files[0]) == "sciknoweval":
            return "sciknoweval"
        return "hf"
    if p.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    rec = _first_record(p) or {}
    choices = rec.get("choices")
    if "answerKey" in rec or (isinstance(choices, dict) and "text" in choices):
        return "sciknoweval"
    if "correct_answer" in rec and "answer_a" in rec:
        return "mmlu"
    return "jsonl"


def inspect_path(path: str | Path, fmt: str | None = None, **spec_kwargs) -> InspectReport:
    """Loads ``path`` leniently and splits it as a run would (``spec_kwargs`` are DataSpec fields)."""
    fmt = fmt or guess_format(path)
    if fmt not in SOURCES:
        raise ValueError(f"unknown format {fmt!r}; one of {list(SOURCES)}")
    if fmt == "hf":
        spec_kwargs.setdefault("hf_name", str(path))
    spec = DataSpec(source=fmt, path=str(path), **spec_kwargs)
    result = load_items(spec, strict=False)
    report = InspectReport(path=str(path), fmt=fmt, n_records=result.n_records, n_items=len(result.items),
                           errors=list(result.errors), skipped=dict(result.skipped))
    report.totals = dict(sorted(Counter(it.domain for it in result.items).items()))
    if result.items:
        present = {it.domain for it in result.items}
        try:
            ds = split_items(result.items, spec.fractions, spec.split_seed, spec.max_items_per_domain,
                             [d for d in spec.domains if d.lower() in present])
            report.counts = {d: {s: len(ds.get(d, s)) for s in SPLITS} for d in ds.domains}
        except ValueError as e:
            report.split_error = str(e)
    return report


def format_report(report: InspectReport) -> str:
    lines = [f"{report.path} (format: {report.fmt})",
             f"records: {report.n_records}  items: {report.n_items}  bad records: {len(report.errors)}"]
    if report.skipped:
        lines.append("skipped: " + ", ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items())))
    if report.counts:
        width = max(8, *(len(d) for d in report.counts))
        lines.append(f"{'domain':<{width}}  " + "  ".join(f"{s:>10}" for s in SPLITS) + f"  {'total':>7}")
        for d, c in report.counts.items():
            lines.append(f"{d:<{width}}  " + "  ".join(f"{c[s]:>10}" for s in SPLITS) + f"  {sum(c.values()):>7}")
    elif report.totals:
        lines.append("items per domain: " + ", ".join(f"{d}: {n}" for d, n in report.totals.items()))
    if report.split_error:
        lines.append(f"cannot split: {report.split_error}")
    if report.errors:
        lines.append(f"bad records ({len(report.errors)}):")
        lines.extend(f"  {e}" for e in report.errors)
    return "\n".join(lines)
