import json

import pytest
from pydantic import ValidationError

from opcod_core.config import RunConfig, format_validation_error, preset, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip_json_and_yaml(name):
    cfg = preset(name)
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    assert cfg.preset == name


def test_every_field_is_documented():
    def walk(model):
        for fname, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{fname} has no help text"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)
    walk(RunConfig)


@pytest.mark.parametrize("overrides, path", [
    ({"rollout": {"n": 0}}, "rollout.n"),
    ({"gating": {"tau": -1}}, "gating.tau"),
    ({"loss": {"beta": 1.0}}, "loss.beta"),
    ({"gating": {"mode": "sometimes"}}, "gating.mode"),
    ({"schedule": {"rounds": 0}}, "schedule.rounds"),
    ({"rollout": {"bogus": 1}}, "rollout.bogus"),
])
def test_invalid_values_fail_with_field_path(overrides, path):
    with pytest.raises(ValidationError) as err:
        preset("tiny", overrides)
    lines = format_validation_error(err.value)
    assert any(line.startswith(path) for line in lines), lines


def test_cross_field_checks():
    with pytest.raises(ValidationError, match="different names"):
        preset("tiny", {"students": [{"name": "x"}, {"name": "x"}]})
    with pytest.raises(ValidationError, match="not one of"):
        preset("tiny", {"students": [{"strong_domain": "biology"}, {}]})
    with pytest.raises(ValidationError, match="path is required"):
        preset("tiny", {"data": {"source": "jsonl"}})


def test_overrides_merge_students_elementwise():
    cfg = preset("tiny", {"students": [{"model": "tiny:qwen2"}, {}], "rollout": {"n": 2}})
    assert cfg.students[0].model == "tiny:qwen2" and cfg.students[0].name == "chem"
    assert cfg.students[1].model == "tiny:qwen2" and cfg.rollout.n == 2


def test_yaml_with_preset_and_overrides():
    cfg = RunConfig.from_yaml("preset: tiny\noverrides:\n  seed: 3\n")
    assert cfg.seed == 3 and cfg.preset == "tiny"


def test_unknown_preset():
    with pytest.raises(KeyError, match="unknown preset"):
        preset("huge")
    assert set(preset_names()) >= {"tiny", "demo", "paper"}


def test_frozen():
    cfg = preset("tiny")
    with pytest.raises(ValidationError):
        cfg.seed = 4  # type: ignore[misc]
    json.loads(cfg.to_json())
