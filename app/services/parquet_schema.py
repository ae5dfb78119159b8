"""The Arrow schema of the Parquet export, derived from a pydantic model (the exported exchange).

One row per exchange; scalars as Arrow scalars, the per-token arrays (``token_ids``, ``tokens``,
``divergence``, ``divergence_s_only``, ``student_logprob``) and the choices as list columns, and the few
free-form fields (``redactions``) as JSON text. Derived from the pydantic fields, so a field added to
the event schema reaches the export without a second list here. Readable by pandas, polars and
``datasets.load_dataset("parquet", ...)``.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel

_SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, stored as JSON text) of a field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _arrow_type(args[0])
    if origin is Literal:
        return pa.string(), False
    if origin is list and args and args[0] in _SCALARS:
        return pa.list_(_SCALARS[args[0]]), False
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    return pa.string(), True


def schema_of(model: type[BaseModel]) -> tuple[pa.Schema, list[str]]:
    """The Arrow schema of ``model``'s fields, and the fields stored as JSON text."""
    fields = {name: _arrow_type(f.annotation) for name, f in model.model_fields.items()}
    return (pa.schema([(name, t) for name, (t, _) in fields.items()]),
            [name for name, (_, as_json) in fields.items() if as_json])


def arrow_table(rows: list[BaseModel], schema: pa.Schema, as_json: list[str]) -> pa.Table:
    dicts = [r.model_dump() for r in rows]
    for d in dicts:
        for name in as_json:
            d[name] = json.dumps(d[name], ensure_ascii=False)
    return pa.Table.from_pylist(dicts, schema=schema)
