"""Dotted paths into nested config dicts (``"rollout.n"``, ``"students.0.name"``): the launch form's field
names, ``opcod train --set KEY=VALUE`` and the pages' config reads all address a run config this way."""

from __future__ import annotations

from typing import Any


def get_path(d: Any, path: str, default: Any = None) -> Any:
    """``d["a"]["b"][0]`` for ``"a.b.0"`` (dict keys, list indices); ``default`` where the path ends."""
    cur = d
    for p in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(p)
        elif isinstance(cur, (list, tuple)) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            return default
    return default if cur is None else cur


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at ``path``, creating the dicts (and lists, before an index) on the way."""
    parts = path.split(".")
    cur: Any = d
    for i, p in enumerate(parts[:-1]):
        nxt_is_index = parts[i + 1].isdigit()
        if isinstance(cur, list):
            idx = int(p)
            while len(cur) <= idx:
                cur.append({} if not nxt_is_index else [])
            cur = cur[idx]
        else:
            if not isinstance(cur.get(p), (dict, list)):
                cur[p] = [] if nxt_is_index else {}
            cur = cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        idx = int(last)
        while len(cur) <= idx:
            cur.append(None)
        cur[idx] = value
    else:
        cur[last] = value
