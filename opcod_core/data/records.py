"""Shared pieces of every loader: reading JSONL with line numbers, turning a loose record into an
``Item``, stable ids, and the result type loaders return.

Ids are a hash of the record's content (domain, question, choices, gold) unless the file gives one,
so they do not change when a file is reordered or lines are inserted above a record; that is what
lets the split (``splits.py``) be independent of file order and lets stored exchanges point back at
their item across runs. An exact repeat of a record has the same id and is kept once (counted as a
duplicate), so the same question can never sit in both train and test.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import DataFormatError, ErrorSink, RecordError
from .types import Item

LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass
class LoadResult:
    """What a loader returns: good items, bad records (lenient mode only), skip counts by reason."""

    items: list[Item] = field(default_factory=list)
    errors: list[DataFormatError] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    n_records: int = 0


def normalize_domain(value: Any) -> str:
    """Domains compare case-insensitively: 'Chemistry' and ' chemistry' are one domain."""
    return " ".join(str(value).split()).lower()


def content_id(prefix: str, domain: str, question: str, choices: tuple[str, ...], gold: str) -> str:
    payload = json.dumps([domain, question, list(choices), gold], ensure_ascii=False)
    return f"{prefix}-{hashlib.sha1(payload.encode('utf-8')).hexdigest()[:12]}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "data"


def iter_jsonl(path: Path, sink: ErrorSink) -> Iterator[tuple[int, dict]]:
    """Yields ``(line_number, record)`` for each non-blank line; bad JSON goes to ``sink``."""
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as e:
                sink.add(path, lineno, None, f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            if not isinstance(rec, dict):
                sink.add(path, lineno, None, f"expected a JSON object, got {type(rec).__name__}")
                continue
            yield lineno, rec


def require_text(rec: dict, key: str, field_name: str | None = None) -> str:
    name = field_name or key
    if key not in rec or rec[key] is None:
        raise RecordError(name, "missing")
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(name, f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RecordError(name, "empty")
    return text


def check_choices(choices: list, labels: list, field_name: str = "choices") -> tuple[tuple[str, ...], tuple[str, ...]]:
    if len(choices) != len(labels):
        raise RecordError(field_name, f"{len(choices)} choice texts but {len(labels)} labels")
    if len(choices) < 2:
        raise RecordError(field_name, f"a multiple-choice question needs at least 2 choices, got {len(choices)}")
    texts = []
    for i, c in enumerate(choices):
        if isinstance(c, bool) or not isinstance(c, (str, int, float)) or not str(c).strip():
            raise RecordError(field_name, f"choice {i} is empty or not text: {c!r}")
        texts.append(str(c).strip())
    labs = [str(lab).strip() for lab in labels]
    if any(not lab for lab in labs):
        raise RecordError(field_name, "empty choice label")
    if len(set(labs)) != len(labs):
        raise RecordError(field_name, f"duplicate choice labels {labs}")
    return tuple(texts), tuple(labs)


def parse_choices(value: Any, field_name: str = "choices") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Accepts a list of texts (labelled A, B, ...), a ``{label: text}`` dict, or the SciKnowEval /
    Hugging Face shape ``{"text": [...], "label": [...]}``."""
    if isinstance(value, dict) and "text" in value and isinstance(value.get("text"), list):
        labels = value.get("label")
        if labels is None:
            labels = list(LETTERS[: len(value["text"])])
        if not isinstance(labels, list):
            raise RecordError(f"{field_name}.label", f"expected a list, got {type(labels).__name__}")
        return check_choices(value["text"], labels, field_name)
    if isinstance(value, dict):
        return check_choices(list(value.values()), list(value.keys()), field_name)
    if isinstance(value, (list, tuple)):
        if len(value) > len(LETTERS):
            raise RecordError(field_name, f"too many choices ({len(value)})")
        return check_choices(list(value), list(LETTERS[: len(value)]), field_name)
    raise RecordError(field_name, f"expected a list or an object, got {type(value).__name__}")


def resolve_label(answer: Any, labels: tuple[str, ...], field_name: str = "answer") -> str:
    """An answer is a label ('B', or 'b' when that is unambiguous) or a 0-based index (1 or '1')."""
    if isinstance(answer, bool) or answer is None:
        raise RecordError(field_name, f"{answer!r} is not a choice label or index")
    if isinstance(answer, int):
        if 0 <= answer < len(labels):
            return labels[answer]
        raise RecordError(field_name, f"index {answer} is out of range for {len(labels)} choices")
    if isinstance(answer, float) and answer.is_integer():
        return resolve_label(int(answer), labels, field_name)
    text = str(answer).strip()
    if text in labels:
        return text
    folded = [lab for lab in labels if lab.lower() == text.lower()]
    if len(folded) == 1:
        return folded[0]
    if re.fullmatch(r"\d+", text):
        return resolve_label(int(text), labels, field_name)
    shown = "[" + ",".join(f"'{lab}'" for lab in labels) + "]"
    raise RecordError(field_name, f"{text!r} is not one of the choice labels {shown}")


def parse_number(value: Any, field_name: str = "answer") -> str:
    """A numeric gold answer, kept as the text the file gave (normalised) after checking it parses."""
    if isinstance(value, bool) or value is None:
        raise RecordError(field_name, f"{value!r} is not a number")
    text = str(value).strip().replace(",", "") if isinstance(value, str) else repr(value)
    try:
        x = float(text)
    except ValueError:
        raise RecordError(field_name, f"{value!r} is not a number") from None
    if not math.isfinite(x):
        raise RecordError(field_name, f"{value!r} is not a finite number")
    return text


def build_item(*, prefix: str, domain: str, question: str, choices_value: Any, answer: Any,
               explicit_id: Any = None, meta: dict | None = None, choices_field: str = "choices",
               answer_field: str = "answer") -> Item:
    """The generic record -> Item rule shared by JSONL, CSV and Hugging Face rows: with choices it
    is multiple choice; without choices and with a numeric answer it is a numeric question."""
    has_choices = choices_value not in (None, "", [], {}) and not (
        isinstance(choices_value, dict) and "text" in choices_value and not choices_value["text"])
    if has_choices:
        choices, labels = parse_choices(choices_value, choices_field)
        gold = resolve_label(answer, labels, answer_field)
        answer_type = "mcq"
    else:
        choices, labels = (), ()
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise RecordError(answer_field, "missing")
        try:
            gold = parse_number(answer, answer_field)
        except RecordError:
            raise RecordError(answer_field, f"{answer!r}: a question without choices needs a numeric answer") from None
        answer_type = "numeric"
    if explicit_id is not None and str(explicit_id).strip():
        item_id = str(explicit_id).strip()
    else:
        item_id = content_id(prefix, domain, question, choices, gold)
    return Item(id=item_id, domain=domain, question=question, choices=choices, labels=labels,
                gold=gold, answer_type=answer_type, meta=dict(meta or {}))


class Deduper:
    """Keeps the first of exact repeats; a reused explicit id with other content is an error."""

    def __init__(self, result: LoadResult, sink: ErrorSink, path: Path | str):
        self.result, self.sink, self.path = result, sink, path
        self.seen: dict[str, tuple[Item, int | None]] = {}

    def add(self, item: Item, line: int | None) -> None:
        prev = self.seen.get(item.id)
        if prev is None:
            self.seen[item.id] = (item, line)
            self.result.items.append(item)
        elif prev[0] == item:
            self.result.skipped["duplicate"] += 1
        else:
            where = f" (first at line {prev[1]})" if prev[1] is not None else ""
            self.sink.add(self.path, line, "id", f"duplicate id {item.id!r} with different content{where}")
