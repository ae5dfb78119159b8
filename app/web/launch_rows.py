"""The launch form's student rows (issue 17): a run has 2 to 8 students, and the form shows one row per student
(name, model, strong domain) that a researcher adds and removes.

A row that a preset filled keeps the rest of that preset student's settings (warm-up, build seed, ...) when it
is edited or moved; a row added in the form starts from the student defaults. The form carries which preset
student each row came from in one hidden field, ``student_rows`` (``"0,1,new"``), so removing a row in the
middle moves the later rows with their own settings instead of handing them their neighbour's. Adding and
removing are plain form posts (a submit button named ``row_action``: ``add`` or ``remove:<index>``) that answer
the same form with what was typed, with or without JavaScript (htmx sends the clicked button with the form).
"""

from __future__ import annotations

from dataclasses import dataclass

from opcod_core.peer_config import MAX_PEERS, MIN_PEERS

NEW = "new"
COLUMNS = ("name", "model", "strong_domain")
ADD = "add"
REMOVE = "remove:"


class RowError(ValueError):
    """A row request the form cannot honour (message shown at the form level)."""


def default_rows(preset_students: int) -> list[int | None]:
    return list(range(preset_students))


def parse_rows(raw: str | None, preset_students: int) -> list[int | None]:
    """The rows of a posted form: per row, the index of the preset student it came from, or None for a new
    row; every preset student when the post does not say (a script posting single fields)."""
    if raw is None or not raw.strip():
        return default_rows(preset_students)
    tokens = [t.strip() for t in raw[:200].split(",")]
    if not MIN_PEERS <= len(tokens) <= MAX_PEERS:
        raise RowError(f"students: a run has {MIN_PEERS} to {MAX_PEERS} students, the form had {len(tokens)} rows")
    rows: list[int | None] = []
    for t in tokens:
        if t == NEW:
            rows.append(None)
        elif t.isdigit() and int(t) < preset_students:
            rows.append(int(t))
        else:
            raise RowError(f"student_rows: '{t[:20]}' is not a student of this preset: the rows came from "
                           "another one; load the preset again (choose it in the list, or Load preset)")
    return rows


def rows_value(rows: list[int | None]) -> str:
    """The hidden field's value for ``rows``."""
    return ",".join(NEW if r is None else str(r) for r in rows)


def _key(i: int, column: str) -> str:
    return f"students.{i}.{column}"


def apply(action: str, rows: list[int | None], values: dict[str, str]) -> tuple[list[int | None], dict[str, str]]:
    """``rows`` and the typed ``values`` after adding a row (its model is the last row's, the rest blank) or
    removing one (the later rows move up with their values); ``RowError`` when the action cannot be done."""
    rows, values = list(rows), dict(values)
    n = len(rows)
    if action == ADD:
        if n >= MAX_PEERS:
            raise RowError(f"students: a run has at most {MAX_PEERS} students")
        rows.append(None)
        for c in COLUMNS:
            values[_key(n, c)] = values.get(_key(n - 1, "model"), "") if c == "model" else ""
        return rows, values
    if action.startswith(REMOVE):
        index = action[len(REMOVE):]
        if not (index.isdigit() and int(index) < n):
            raise RowError(f"students: there is no student row '{index[:20]}' to remove")
        if n <= MIN_PEERS:
            raise RowError(f"students: a run needs at least {MIN_PEERS} students")
        i = int(index)
        del rows[i]
        for j in range(i, n - 1):
            for c in COLUMNS:
                values[_key(j, c)] = values.get(_key(j + 1, c), "")
        for c in COLUMNS:
            values.pop(_key(n - 1, c), None)
        return rows, values
    raise RowError(f"row_action: unknown action '{action[:20]}'")


@dataclass(frozen=True)
class RowsView:
    """What the template needs about the rows (the fields of each come from ``app.web.forms``)."""

    value: str  # the hidden field
    new: tuple[bool, ...]  # per row: added in the form (starts from the defaults)
    can_add: bool
    can_remove: bool


def view(rows: list[int | None]) -> RowsView:
    return RowsView(rows_value(rows), tuple(r is None for r in rows), len(rows) < MAX_PEERS, len(rows) > MIN_PEERS)
