"""Dispatch from a ``DataSpec`` to the right loader, then to the split.

``load_items`` is shared by training (strict: the first bad record raises) and ``inspect`` (lenient:
bad records are collected). A requested domain that the data does not contain is reported the same
way, since silently training on fewer domains than asked would make the gate meaningless.
"""

from __future__ import annotations

from .builtin import builtin_items
from .errors import DataFormatError
from .generic import load_csv, load_jsonl
from .hf import load_hf
from .mmlu import load_mmlu
from .records import LoadResult, normalize_domain
from .sciknoweval import load_sciknoweval
from .sciworld import sciworld_items, sciworld_split
from .sciworld3 import sciworld3_items
from .spec import DataSpec
from .splits import split_items
from .types import SplitDataset


def load_items(spec: DataSpec, strict: bool = True) -> LoadResult:
    """All items ``spec`` selects, unsplit, with bad records (lenient mode) and skip counts."""
    doms = spec.domains
    if spec.source == "builtin":
        result = LoadResult(items=builtin_items(doms))
        result.n_records = len(result.items)
    elif spec.source == "sciworld":
        result = LoadResult(items=sciworld_items(doms, seed=spec.split_seed))
        result.n_records = len(result.items)
    elif spec.source == "sciworld3":
        result = LoadResult(items=sciworld3_items(doms))
        result.n_records = len(result.items)
    elif spec.source == "sciknoweval":
        result = load_sciknoweval(spec.path, level=spec.level, domains=doms, strict=strict)
    elif spec.source == "jsonl":
        result = load_jsonl(spec.path, domains=doms, strict=strict)
    elif spec.source == "csv":
        result = load_csv(spec.path, domains=doms, strict=strict)
    elif spec.source == "mmlu":
        result = load_mmlu(spec.path, groups=spec.mmlu_groups, domains=doms, strict=strict)
    elif spec.source == "hf":
        result = load_hf(spec.hf_name or spec.path, spec.hf_config, spec.hf_split, domains=doms,
                         columns=spec.hf_columns, strict=strict)
    else:  # DataSpec validates the source; this guards against a hand-built object
        raise ValueError(f"unknown data source {spec.source!r}")
    present = {it.domain for it in result.items}
    missing = [d for d in (normalize_domain(x) for x in doms) if d not in present]
    if missing:
        where = spec.path or spec.hf_name or spec.source
        extra = f" with level {spec.level!r}" if spec.level else ""
        err = DataFormatError(where, None, "domains",
                              f"no valid items for domain(s) {missing}{extra}; found: {sorted(present)}")
        if strict:
            raise err
        result.errors.append(err)
    return result


def load_dataset(spec: DataSpec) -> SplitDataset:
    """Loads (strictly) and splits: ``SplitDataset.splits[domain][split] -> list[Item]``."""
    result = load_items(spec, strict=True)
    if not result.items:
        where = spec.path or spec.hf_name or spec.source
        raise DataFormatError(where, None, None, f"no items selected ({dict(result.skipped) or 'empty'})")
    if spec.source in ("sciworld", "sciworld3"):  # held-out formulas / number combinations: split by group, not by item
        return sciworld_split(result.items, spec.fractions, spec.split_seed, spec.domains, spec.max_items_per_domain)
    return split_items(result.items, spec.fractions, spec.split_seed, spec.max_items_per_domain, spec.domains)
