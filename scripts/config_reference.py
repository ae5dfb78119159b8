#!/usr/bin/env python
"""Generate ``docs/config-reference.md`` from the run configuration model (``opcod_core.config``).

Every field of ``RunConfig`` and of its nested sections is listed with its dotted path, type, default,
allowed values (ranges, patterns and lengths from the field's metadata, choices from ``Literal`` types)
and its description; then the presets' key values side by side. Nothing is copied by hand, so the
reference cannot drift from the code: ``tests/test_docs.py`` fails when the committed file is stale.

    python scripts/config_reference.py           # (re)write docs/config-reference.md
    python scripts/config_reference.py --check   # exit 1 when the committed file differs
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from opcod_core.config import RunConfig, preset, preset_names  # noqa: E402

OUTPUT = ROOT / "docs" / "config-reference.md"


# --- describing one field ----------------------------------------------------------------------------

def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def type_name(tp: Any) -> str:
    """A short, readable rendering of an annotation (``int``, ``str | None``, ``tuple[str, ...]``)."""
    if tp is type(None):
        return "None"
    if get_origin(tp) is Literal:
        return "choice"
    if _is_union(tp):
        return " | ".join(type_name(a) for a in get_args(tp))
    origin = get_origin(tp)
    if origin is not None:
        args = get_args(tp)
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]"
    if _is_model(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def literal_choices(tp: Any) -> list[Any]:
    """The values of every ``Literal`` inside an annotation (through ``| None``)."""
    if get_origin(tp) is Literal:
        return list(get_args(tp))
    if _is_union(tp):
        return [v for a in get_args(tp) for v in literal_choices(a)]
    return []


def _num(v: Any) -> str:
    """Integers as written, floats as Python prints them (``1.0``, ``0.2``, ``1e-06``)."""
    return repr(v) if isinstance(v, float) else str(v)


def allowed(field: Any) -> str:
    """Ranges, lengths and patterns from the field's metadata; choices from its Literal type."""
    bounds: dict[str, Any] = {}
    for m in field.metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            val = getattr(m, attr, None)
            if val is not None:
                bounds[attr] = val
    parts: list[str] = []
    choices = literal_choices(field.annotation)
    if choices:
        parts.append("one of " + ", ".join(f"`{c}`" for c in choices))
    low = ("≥", bounds["ge"]) if "ge" in bounds else (">", bounds["gt"]) if "gt" in bounds else None
    high = ("≤", bounds["le"]) if "le" in bounds else ("<", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        lo_op = "≤" if low[0] == "≥" else "<"
        parts.append(f"{_num(low[1])} {lo_op} x {high[0]} {_num(high[1])}")
    elif low:
        parts.append(f"{low[0]} {_num(low[1])}")
    elif high:
        parts.append(f"{high[0]} {_num(high[1])}")
    if "min_length" in bounds or "max_length" in bounds:
        lo, hi = bounds.get("min_length"), bounds.get("max_length")
        unit = "characters" if field.annotation is str else "items"
        if lo is not None and hi is not None:
            parts.append(f"{lo} to {hi} {unit}")
        elif lo is not None:
            parts.append(f"at least {lo} {unit}")
        else:
            parts.append(f"at most {hi} {unit}")
    if "pattern" in bounds:
        parts.append(f"matches `{bounds['pattern']}`")
    return "; ".join(parts)


def default_text(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
    else:
        value = field.default
    if value is None:
        return "`None`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"`{_num(value)}`"
    if isinstance(value, (tuple, list, dict)):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{json.dumps(str(value), ensure_ascii=False)}`"


def _cell(text: str) -> str:
    """Markdown table cells: one line, pipes escaped (inside code spans too: GitHub honours ``\\|``)."""
    return text.replace("\n", " ").replace("|", "\\|")


# --- walking the model -------------------------------------------------------------------------------

def _section_model(tp: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model, is_list) when the annotation is a section (optional or not) or a tuple/list of one
    section type."""
    if _is_model(tp):
        return tp, False
    if _is_union(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and _is_model(args[0]):
            return args[0], False
    if get_origin(tp) in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if args and all(_is_model(a) for a in args) and len(set(args)) == 1:
            return args[0], True
    return None, False


def sections(model: type[BaseModel], prefix: str = "", title: str = "Top level",
             doc: str = "") -> list[tuple[str, str, str, list[list[str]]]]:
    """[(heading, anchor-free prefix, section description, rows)], depth first, in declaration order."""
    rows: list[list[str]] = []
    nested: list[tuple[str, str, str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub, is_list = _section_model(field.annotation)
        if sub is not None:
            sub_prefix = f"{path}[i]." if is_list else f"{path}."
            label = f"`{path}[i]`" if is_list else f"`{path}`"
            desc = field.description or ""
            if field.default is None:
                desc += " Optional section: absent (`None`) by default."
            nested.append((label, sub_prefix, desc, sub))
            continue
        rows.append([f"`{path}`", type_name(field.annotation), default_text(field), allowed(field),
                     field.description or ""])
    out = [(title, prefix, doc, rows)] if rows else []
    for label, sub_prefix, desc, sub in nested:
        out.extend(sections(sub, sub_prefix, label, desc))
    return out


# --- presets -----------------------------------------------------------------------------------------

def _lr(v: float) -> str:
    return f"{v:g}"


PRESET_ROWS: list[tuple[str, Any]] = [
    ("models", lambda c: " / ".join(f"`{s.model}`" for s in c.students)),
    ("student names (strong domain)", lambda c: " / ".join(f"{s.name} ({s.strong_domain or '-'})" for s in c.students)),
    ("warm-up SFT steps", lambda c: " / ".join(str(s.warmup_sft_steps) for s in c.students)),
    ("specialisation (lr, batch, epochs or steps)", lambda c: " / ".join(
        f"{_lr(s.specialize.lr)}, {s.specialize.batch_size}, "
        + (f"{s.specialize.steps} steps" if s.specialize.steps else f"{s.specialize.epochs} epochs")
        if s.specialize else "-" for s in c.students)),
    ("chat template kwargs", lambda c: " / ".join(
        json.dumps(s.chat_template_kwargs) if s.chat_template_kwargs else "-" for s in c.students)),
    ("data source", lambda c: f"`{c.data.source}`" + (f" `{c.data.path}`" if c.data.path else "")
        + (f" (level {c.data.level})" if c.data.level else "")),
    ("domains", lambda c: " / ".join(c.data.domains)),
    ("items per domain (cap)", lambda c: str(c.data.max_items_per_domain or "all")),
    ("R × K (rounds × steps per direction)", lambda c: f"{c.schedule.rounds} × {c.schedule.steps_per_direction}"),
    ("batch B (prompts per step)", lambda c: str(c.rollout.batch_prompts)),
    ("n (rollouts per prompt)", lambda c: str(c.rollout.n)),
    ("rollout max new tokens", lambda c: str(c.rollout.max_new_tokens)),
    ("tutor max new tokens", lambda c: str(c.tutor.max_new_tokens)),
    ("gating mode, τ", lambda c: f"{c.gating.mode}, {_num(c.gating.tau)}"),
    ("gating val k (questions)", lambda c: f"{c.gating.val_k} ({c.gating.val_max_items or 'all'})"),
    ("context, divergence", lambda c: f"{c.context_mode}, {c.loss.divergence}"),
    ("learning rate", lambda c: _lr(c.optim.lr)),
    ("eval avg@k (test questions)", lambda c: f"{c.eval.k} ({c.eval.max_items or 'all'})"),
    ("backend, executor", lambda c: f"{c.backend}, {c.executor}"),
    ("device, dtype", lambda c: f"{c.device}, {c.dtype}"),
    ("checkpoint every", lambda c: f"{c.checkpoint_every} step" + ("s" if c.checkpoint_every != 1 else "")),
]


def preset_table() -> list[str]:
    names = preset_names()
    configs = [preset(n) for n in names]
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for label, get in PRESET_ROWS:
        lines.append("| " + " | ".join(_cell(x) for x in [label, *(get(c) for c in configs)]) + " |")
    return lines


# --- the document -------------------------------------------------------------------------------------

HEADER = """\
# Run configuration reference

<!-- Generated by scripts/config_reference.py from opcod_core/config.py: do not edit by hand.
     Regenerate with `.venv/bin/python scripts/config_reference.py`; tests/test_docs.py checks it is current. -->

A run is described by one `RunConfig` (`opcod_core/config.py`). Every field has a default (except the two
students' `name` and `model`), a description, and, for numbers, a range checked when the config is built:
an invalid value fails with its dotted path, e.g. `rollout.n: Input should be greater than or equal to 1`.
Checks that involve several fields (the split fractions sum to 1, the two domains differ, file sources need
`data.path`, `hf` needs `data.hf_name`, student names differ, a student's domains are among `data.domains`)
are made by the model's validators and reported the same way.

Ways to set a field:

- a YAML or JSON file: `opcod train my-run.yaml --out runs/exp1` (nested mappings, as in
  `opcod presets --show`); a file `{preset: demo, overrides: {...}}` starts from a preset;
- on the command line: `--set rollout.n=4 --set gating.tau=0.3` (values parsed as JSON when possible);
- through the API: `POST /api/v1/runs` with `{"preset": "tiny", "overrides": {"rollout": {"n": 4}}}`, or a
  full config; `students` overrides are given per student: `{"students": [{"model": "..."}, {}]}`;
- in the dashboard's launch form (`/runs/new`), whose advanced section edits the full config.

`students[i]` stands for each student (`i` = 0, 1, ... in position order; 2 to 8 students).
"""


def render() -> str:
    out = [HEADER]
    out.append("## Presets\n")
    out.append("`tiny` builds tiny random models offline and is what the tests use; `demo` is what `make run` "
               "launches; `paper` follows the paper's published defaults; `tiny-trio` and `sciworld3-trio` have "
               "three specialists (one per domain) tutoring each other. Key values (`opcod presets --show` "
               "prints every field of each):\n")
    out.extend(preset_table())
    out.append("")
    out.append("## Fields\n")
    for title, _prefix, doc, rows in sections(RunConfig):
        out.append(f"### {title}\n")
        if doc:
            out.append(f"{doc}\n")
        out.append("| field | type | default | allowed | description |")
        out.append("|---|---|---|---|---|")
        for row in rows:
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the file on disk differs")
    ap.add_argument("--output", type=Path, default=OUTPUT, help=f"default {OUTPUT.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is out of date: run `python scripts/config_reference.py`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
