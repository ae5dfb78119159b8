"""Hugging Face ``datasets`` as a source: a hub id (when the hub is reachable), a directory written by
``save_to_disk``, or a local dataset directory/script that ``datasets.load_dataset`` understands.

Rows are mapped onto the generic record (question, choices, answer, domain, id; see ``generic.py``)
so every source obeys the same validation. Column names are guessed from common conventions
(``question``/``prompt``, ``choices``/``options`` or ``answer_a``.., ``answer``/``answerKey``/``label``,
``domain``/``subject``/``topic``) and can be given explicitly with ``columns`` (generic field ->
column). Without a domain column, every row gets the config name (or the dataset's base name).
``datasets`` is imported lazily so the rest of the package does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from .errors import ErrorSink, RecordError
from .generic import parse_generic_record
from .records import Deduper, LoadResult, normalize_domain, slug

GUESSES = {
    "question": ("question", "query", "prompt", "problem", "input"),
    "choices": ("choices", "options"),
    "answer": ("answer", "answerKey", "answer_key", "label", "correct_answer", "gold", "target"),
    "domain": ("domain", "subject", "topic", "category"),
    "id": ("id", "idx", "question_id", "uid"),
}
SPLIT_CHOICE_COLUMNS = (tuple(f"answer_{c}" for c in "abcde"), tuple(f"choice_{c}" for c in "abcde"),
                        tuple(f"option_{c}" for c in "abcde"))


def _open(name: str, config: str | None, split: str, cache_dir: str | None = None):
    import datasets

    local = Path(name)
    if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
        ds = datasets.load_from_disk(str(local))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{name}: no split {split!r}; splits: {list(ds)}")
            ds = ds[split]
        return ds
    return datasets.load_dataset(name, config, split=split, cache_dir=cache_dir)


def _column_map(columns: list[str], explicit: Mapping[str, str] | None, source: str) -> dict[str, object]:
    explicit = dict(explicit or {})
    unknown = [f for f in explicit if f not in GUESSES]
    if unknown:
        raise ValueError(f"hf_columns: unknown field(s) {unknown}; known: {list(GUESSES)}")
    mapping: dict[str, object] = {}
    for fld, guesses in GUESSES.items():
        if fld in explicit:
            if explicit[fld] not in columns:
                raise RecordError(fld, f"column {explicit[fld]!r} not in {source} (columns: {columns})")
            mapping[fld] = explicit[fld]
            continue
        found = next((c for c in guesses if c in columns), None)
        if found is not None:
            mapping[fld] = found
    if "choices" not in mapping:
        for group in SPLIT_CHOICE_COLUMNS:
            present = tuple(c for c in group if c in columns)
            if len(present) >= 2:
                mapping["choices"] = present
                break
    for fld in ("question", "answer"):
        if fld not in mapping:
            raise RecordError(fld, f"no column for it in {source} (columns: {columns}); give hf_columns")
    return mapping


def load_hf(name: str, config: str | None = None, split: str = "train", *, domains: Iterable[str] = (),
            columns: Mapping[str, str] | None = None, strict: bool = True,
            cache_dir: str | None = None) -> LoadResult:
    source = f"{name}[{split}]" if not config else f"{name}/{config}[{split}]"
    ds = _open(name, config, split, cache_dir)
    sink, result = ErrorSink(strict), LoadResult()
    try:
        mapping = _column_map(list(ds.column_names), columns, source)
    except RecordError as e:
        sink.add(source, None, e.field, e.message)
        result.errors = sink.errors
        return result
    default_domain = normalize_domain(config or Path(str(name).rstrip("/")).name)
    want = {normalize_domain(d) for d in domains}
    dedupe = Deduper(result, sink, source)
    prefix = slug(config or Path(str(name).rstrip("/")).name)
    for row_no, row in enumerate(ds, start=1):
        result.n_records += 1
        rec = {"question": row.get(mapping["question"]), "answer": row.get(mapping["answer"])}
        ch = mapping.get("choices")
        if isinstance(ch, tuple):
            rec["choices"] = [row.get(c) for c in ch if row.get(c) not in (None, "")]
        elif ch is not None:
            rec["choices"] = row.get(ch)
        rec["domain"] = row.get(mapping["domain"]) if "domain" in mapping else default_domain
        if "id" in mapping:
            rec["id"] = row.get(mapping["id"])
        try:
            item = parse_generic_record(rec, prefix, want, result)
        except RecordError as e:
            field = mapping.get(e.field, e.field) if isinstance(mapping.get(e.field), str) else e.field
            sink.add(source, row_no, field, e.message)
            continue
        if item is not None:
            item.meta["source"] = "hf"
            dedupe.add(item, row_no)
    result.errors = sink.errors
    return result
