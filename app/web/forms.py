"""The launch form: which config fields it shows, how form values become a run config, and how a
validation error's field path finds its way back to the field that caused it.

The students are rows of the same three fields (``students.<i>.name``, ``.model``, ``.strong_domain``), 2 to 8
of them (``app.web.launch_rows``: which preset student each row came from, adding and removing rows); an error
in a row is shown at that row's field and, with the field's label and config path ("Student 3 name",
``students.2.name``), in the summary at the top of the form. An error about several students at once (two with
one name) is a form-level error."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from app.errors import field_errors
import app.web.launch_rows as launch_rows
from opcod_core.dotted import get_path, set_path
from opcod_core.config import (
    DataConfig,
    GatingConfig,
    LossConfig,
    RunConfig,
    TutorConfig,
    preset,
    preset_names,
)
from opcod_core.presets import PRESETS


def _choices(model, field: str) -> tuple[str, ...]:
    return tuple(get_args(model.model_fields[field].annotation))


@dataclass(frozen=True)
class Field:
    path: str  # dotted config path, also the form control's name
    label: str
    kind: str = "text"  # text | int | float | select | list (comma-separated)
    options: tuple[str, ...] = ()
    optional: bool = False  # empty means "not set" (None)
    help: str = ""
    group: str = ""

    @property
    def id(self) -> str:
        return "f-" + self.path.replace(".", "-")


FIELDS: tuple[Field, ...] = (
    Field("name", "Run name", group="Run", help="Shown in lists and charts."),
    Field("algorithm", "Algorithm", "select", _choices(RunConfig, "algorithm"), group="Run",
          help="OPCoD, the GRPO baseline, or one-way distillation from a frozen peer."),
    Field("seed", "Seed", "int", group="Run", help="Data order, sampling and the choice of s."),
    Field("backend", "Generation backend", "select", _choices(RunConfig, "backend"), group="Run",
          help="transformers, or vLLM engines with weights synced after each update."),
    Field("executor", "Executor", "select", _choices(RunConfig, "executor"), group="Run",
          help="local: every student in the worker; ray: each student in a Ray actor."),
    Field("data.source", "Dataset", "select", _choices(DataConfig, "source"), group="Data"),
    Field("data.path", "Dataset path", optional=True, group="Data",
          help="Needed for file-based datasets (sciknoweval, jsonl, csv)."),
    Field("data.domains", "Domains", "list", group="Data",
          help="2 to 8, separated by commas; every student's strong domain is one of them."),
    Field("schedule.rounds", "Rounds R", "int", group="Schedule"),
    Field("schedule.steps_per_direction", "Steps per direction K", "int", group="Schedule"),
    Field("rollout.n", "Rollouts per prompt n", "int", group="Schedule"),
    Field("rollout.batch_prompts", "Prompts per step B", "int", group="Schedule"),
    Field("gating.mode", "Gating mode", "select", _choices(GatingConfig, "mode"), group="Tutoring"),
    Field("gating.tau", "Threshold τ", "float", group="Tutoring",
          help="A student may tutor when its cognizance gap Δ ≤ τ."),
    Field("context_mode", "Teacher context", "select", _choices(RunConfig, "context_mode"), group="Tutoring"),
    Field("tutor.approval", "Feedback approval", "select", _choices(TutorConfig, "approval"), group="Tutoring",
          help="manual: kept feedback waits for a human in the approvals queue."),
    Field("loss.divergence", "Divergence", "select", _choices(LossConfig, "divergence"), group="Training"),
    Field("optim.lr", "Learning rate", "float", group="Training"),
)
STUDENTS = "Students"
#: The fieldsets in page order; the student rows (``student_fields``) form the second one.
GROUPS = ("Run", STUDENTS, *dict.fromkeys(f.group for f in FIELDS if f.group != "Run"))
STUDENT_COLUMNS = (Field("name", "name"), Field("model", "model"),
                   Field("strong_domain", "strong domain", optional=True))


def student_fields(i: int) -> tuple[Field, ...]:
    """The fields of student row ``i`` (0-based; labelled from 1: "Student 3 name" is ``students.2.name``)."""
    return tuple(Field(f"students.{i}.{c.path}", f"Student {i + 1} {c.label}", c.kind, optional=c.optional,
                       group=STUDENTS) for c in STUDENT_COLUMNS)


def fields_for(rows: int) -> tuple[Field, ...]:
    """Every field of a form with ``rows`` student rows."""
    return FIELDS + tuple(f for i in range(rows) for f in student_fields(i))


def form_values(config: dict[str, Any]) -> dict[str, str]:
    """The form's initial values from a config dict (strings, as the browser sends them back)."""
    out = {}
    for f in fields_for(len(config.get("students") or ())):
        v = get_path(config, f.path)
        if f.kind == "list" and isinstance(v, (list, tuple)):
            out[f.path] = ", ".join(str(x) for x in v)
        else:
            out[f.path] = "" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    return out


def config_text(config: dict[str, Any], fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(config, indent=2)
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


@dataclass
class LaunchResult:
    config: RunConfig | None
    errors: dict[str, list[str]]  # field path -> messages ("" = the whole form, "config_text" = editor)


def _form_key(path: str, fields: tuple[Field, ...]) -> str:
    """The launch form field an error at ``path`` belongs to: the longest field that is the path or a
    prefix of it, else the first field inside it; "" (the whole form) when none, or when ``path`` is a list
    whose items are fields (``students``: an error about several students, such as two with one name)."""
    paths = {f.path for f in fields}
    loc = path.split(".")
    for i in range(len(loc), 0, -1):
        if ".".join(loc[:i]) in paths:
            return ".".join(loc[:i])
    inside = next((f.path for f in fields if path and f.path.startswith(path + ".")), "")
    return "" if inside[len(path) + 1:].split(".")[0].isdigit() else inside


def _errors_from_validation(err: ValidationError, fields: tuple[Field, ...] | None) -> dict[str, list[str]]:
    """Errors keyed by the form field they belong to; the rest under "" (the form), or under "config_text"
    when ``fields`` is None (the advanced editor)."""
    out: dict[str, list[str]] = {}
    for f in field_errors(err):
        path = "" if f["path"] == "(body)" else f["path"]
        key = _form_key(path, fields) if fields is not None else ""
        msg = f["message"]
        if not key:
            key = "config_text" if fields is None else ""
            msg = f"{path}: {msg}" if path else msg
        out.setdefault(key, []).append(msg)
    return out


def service_errors(fields: list[dict[str, str]], rows: int) -> dict[str, list[str]]:
    """A service's refusal (``Invalid.fields``, e.g. the run policy's ``students.2.model``) as form errors:
    at the field it names when the form has it, else at the form level with its path."""
    paths = {f.path for f in fields_for(rows)}
    errors: dict[str, list[str]] = {}
    for f in fields:
        key = f["path"] if f["path"] in paths else ""
        errors.setdefault(key, []).append(f["message"] if key else f"{f['path']}: {f['message']}")
    return errors


def _advanced(text: str) -> LaunchResult:
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:  # ValueError: JSON errors, ints over 4300 digits
        return LaunchResult(None, {"config_text": [f"not valid YAML or JSON: {str(exc).splitlines()[0][:200]}"]})
    if not isinstance(data, dict):
        return LaunchResult(None, {"config_text": ["the config must be a mapping (YAML) or an object (JSON)"]})
    try:
        return LaunchResult(RunConfig.model_validate(data), {})
    except ValidationError as err:
        return LaunchResult(None, _errors_from_validation(err, None))


def _value(f: Field, raw: str) -> Any:
    raw = raw.strip()
    if f.kind == "list":
        return [x.strip() for x in raw.split(",") if x.strip()]
    if raw == "" and f.optional:
        return None
    return raw  # pydantic parses numbers from strings and reports the field on failure


def build_config(form: dict[str, Any]) -> LaunchResult:
    """A validated RunConfig from the launch form, or the errors keyed by the field that caused them.

    The preset's config is the base: each student row is the preset student it came from (a new row: the
    student defaults) with the row's fields on top (``app.web.launch_rows``), then every other field."""
    preset_name = form.get("preset") or "tiny"
    if preset_name not in preset_names():
        return LaunchResult(None, {"preset": [f"unknown preset '{preset_name}'"]})
    if form.get("use_advanced"):
        return _advanced(form.get("config_text") or "")
    base = preset(preset_name).to_dict()
    try:
        rows = launch_rows.parse_rows(form.get("student_rows"), len(base["students"]))
    except launch_rows.RowError as exc:
        return LaunchResult(None, {"": [str(exc)]})
    base["students"] = [copy.deepcopy(base["students"][r]) if r is not None else {} for r in rows]
    fields = fields_for(len(rows))
    for f in fields:
        if isinstance(form.get(f.path), str):
            set_path(base, f.path, _value(f, form[f.path]))
    try:
        return LaunchResult(RunConfig.model_validate(base), {})
    except ValidationError as err:
        return LaunchResult(None, _errors_from_validation(err, fields))


# --- what the template shows ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorItem:
    """One line of the error summary: the field's label and config path (which names the student row)."""

    field_id: str
    label: str
    path: str
    message: str


@dataclass(frozen=True)
class LaunchView:
    preset: str
    values: dict[str, str]
    errors: dict[str, list[str]]
    config_text: str
    use_advanced: bool
    rows: launch_rows.RowsView

    def context(self) -> dict[str, Any]:
        students = tuple(student_fields(i) for i in range(len(self.rows.new)))
        by_path = {f.path: f for f in fields_for(len(students))}
        summary = [ErrorItem(by_path[k].id, by_path[k].label, k, m) for k, ms in self.errors.items()
                   if k in by_path for m in ms]
        return {"presets": preset_names(), "preset": self.preset, "fields": FIELDS, "groups": GROUPS,
                "students": students, "rows": self.rows, "values": self.values, "errors": self.errors,
                "summary": summary, "config_text": self.config_text, "use_advanced": self.use_advanced}


def preset_view(name: str) -> LaunchView:
    """The form filled with preset ``name`` (one row per student of the preset)."""
    cfg = preset(name).to_dict()
    rows = launch_rows.default_rows(len(cfg["students"]))
    return LaunchView(name, form_values(cfg), {}, config_text(cfg), False, launch_rows.view(rows))


def _posted(form: dict[str, Any]) -> tuple[str, list[int | None], dict[str, str], str | None]:
    """The preset, rows and typed values of a post, and why its rows could not be read (they are then the
    preset's)."""
    name = form.get("preset") if form.get("preset") in preset_names() else "tiny"
    n = len(PRESETS[name]()["students"])
    problem = None
    try:
        rows = launch_rows.parse_rows(form.get("student_rows"), n)
    except launch_rows.RowError as exc:
        rows, problem = launch_rows.default_rows(n), str(exc)
    return name, rows, {f.path: str(form.get(f.path, "")) for f in fields_for(len(rows))}, problem


def _view(form: dict[str, Any], name: str, rows: list[int | None], values: dict[str, str],
          errors: dict[str, list[str]]) -> LaunchView:
    return LaunchView(name, values, errors, str(form.get("config_text") or ""), bool(form.get("use_advanced")),
                      launch_rows.view(rows))


def posted_view(form: dict[str, Any], errors: dict[str, list[str]]) -> LaunchView:
    """The form as posted (what was typed is kept), with ``errors``."""
    name, rows, values, _ = _posted(form)
    return _view(form, name, rows, values, errors)


def row_action_view(form: dict[str, Any]) -> tuple[LaunchView, bool]:
    """The form after its ``row_action`` (add or remove a student row, keeping what was typed), and whether it
    was done (else the view carries the reason at the form level)."""
    name, rows, values, problem = _posted(form)
    if problem is None:
        try:
            rows, values = launch_rows.apply(str(form.get("row_action") or ""), rows, values)
        except launch_rows.RowError as exc:
            problem = str(exc)
    return _view(form, name, rows, values, {"": [problem]} if problem else {}), problem is None
