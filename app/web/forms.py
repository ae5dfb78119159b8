"""The launch form: which config fields it shows, how form values become a run config, and how a
validation error's field path finds its way back to the field that caused it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from app.errors import field_errors
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


def _choices(model, field: str) -> tuple[str, ...]:
    return tuple(get_args(model.model_fields[field].annotation))


@dataclass(frozen=True)
class Field:
    path: str  # dotted config path, also the form control's name
    label: str
    kind: str = "text"  # text | int | float | select
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
          help="local: both students in the worker; ray: each student in a Ray actor."),
    Field("students.0.name", "Student 1 name", group="Students"),
    Field("students.0.model", "Student 1 model", group="Students",
          help="HF id, local directory, or tiny:llama / tiny:qwen2."),
    Field("students.0.strong_domain", "Student 1 strong domain", optional=True, group="Students"),
    Field("students.1.name", "Student 2 name", group="Students"),
    Field("students.1.model", "Student 2 model", group="Students"),
    Field("students.1.strong_domain", "Student 2 strong domain", optional=True, group="Students"),
    Field("data.source", "Dataset", "select", _choices(DataConfig, "source"), group="Data"),
    Field("data.path", "Dataset path", optional=True, group="Data",
          help="Needed for file-based datasets (sciknoweval, jsonl, csv)."),
    Field("data.domains.0", "Domain A", group="Data"),
    Field("data.domains.1", "Domain B", group="Data"),
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
FIELD_BY_PATH = {f.path: f for f in FIELDS}
GROUPS = tuple(dict.fromkeys(f.group for f in FIELDS))


def form_values(config: dict[str, Any]) -> dict[str, str]:
    """The form's initial values from a config dict (strings, as the browser sends them back)."""
    out = {}
    for f in FIELDS:
        v = get_path(config, f.path)
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


def _form_key(path: str) -> str:
    """The launch form field an error at ``path`` belongs to: the longest field that is the path or a
    prefix of it, else the first field inside it; "" (the whole form) when none, or when ``path`` is a list
    whose items are fields (``students``: an error about several students, such as two with one name)."""
    loc = path.split(".")
    for i in range(len(loc), 0, -1):
        if ".".join(loc[:i]) in FIELD_BY_PATH:
            return ".".join(loc[:i])
    inside = next((f.path for f in FIELDS if path and f.path.startswith(path + ".")), "")
    return "" if inside[len(path) + 1:].split(".")[0].isdigit() else inside


def _errors_from_validation(err: ValidationError, fields_known: bool) -> dict[str, list[str]]:
    """Errors keyed by the form field they belong to; the rest under "" (the form) or "config_text"."""
    out: dict[str, list[str]] = {}
    for f in field_errors(err):
        path = "" if f["path"] == "(body)" else f["path"]
        key = _form_key(path) if fields_known else ""
        msg = f["message"]
        if not key:
            key = "config_text" if not fields_known else ""
            msg = f"{path}: {msg}" if path else msg
        out.setdefault(key, []).append(msg)
    return out


def build_config(form: dict[str, str]) -> LaunchResult:
    """A validated RunConfig from the launch form, or the errors keyed by the field that caused them."""
    preset_name = form.get("preset") or "tiny"
    if preset_name not in preset_names():
        return LaunchResult(None, {"preset": [f"unknown preset '{preset_name}'"]})
    if form.get("use_advanced"):
        text = form.get("config_text") or ""
        try:
            data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError, RecursionError) as exc:  # ValueError: JSON errors, ints over 4300 digits
            return LaunchResult(None, {"config_text": [f"not valid YAML or JSON: {str(exc).splitlines()[0][:200]}"]})
        if not isinstance(data, dict):
            return LaunchResult(None, {"config_text": ["the config must be a mapping (YAML) or an object (JSON)"]})
        try:
            return LaunchResult(RunConfig.model_validate(data), {})
        except ValidationError as err:
            return LaunchResult(None, _errors_from_validation(err, fields_known=False))
    base = preset(preset_name).to_dict()
    for f in FIELDS:
        if f.path not in form:
            continue
        raw = form[f.path].strip()
        if raw == "" and f.optional:
            value: Any = None
        else:
            value = raw  # pydantic parses numbers from strings and reports the field on failure
        set_path(base, f.path, value)
    try:
        return LaunchResult(RunConfig.model_validate(base), {})
    except ValidationError as err:
        return LaunchResult(None, _errors_from_validation(err, fields_known=True))
