"""`opcod export-model`: a trained student at a checkpoint loads with plain transformers, no OPCoD code."""

from __future__ import annotations

import json

import pytest
import torch

from opcod_core.cli import main
from opcod_core.trainer import Trainer

import tiny_support

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cache):
    out = tmp_path_factory.mktemp("export-run")
    tr = Trainer(tiny_support.small(rounds=1, steps=1, gating={"mode": "always"}), out, cache_dir=tiny_cache)
    tr.task_eval(0)
    tr.task_gate(1)
    tr.task_step(1, 1, 0)
    tr.next_task = 3
    tr.save_checkpoint()
    return tr, out


def test_exported_student_loads_with_auto_classes_and_keeps_its_weights(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tr, out = trained
    name = tr.names[0]   # direction 1: this student is the tutee, so its weights moved
    assert main(["export-model", str(out), "latest", name, str(tmp_path / "m")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    live = tr.students[name]
    probe = "How many atoms are in 2 H2O?"
    assert tok(probe)["input_ids"] == live.tokenizer(probe)["input_ids"]
    ids = torch.tensor([live.tokenizer(probe)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, live.model(ids).logits, atol=1e-5)
    info = json.loads((tmp_path / "m" / "opcod_export.json").read_text())
    assert info["student"] == name and info["checkpoint"].startswith("task-") and info["next_task"] == 3
    assert not (tmp_path / "m" / "optimizer.pt").exists()


def test_export_errors_name_the_argument(trained, tmp_path, capsys):
    tr, out = trained
    assert main(["export-model", str(out), "latest", "nobody", str(tmp_path / "a")]) == 2
    assert "STUDENT 'nobody'" in capsys.readouterr().err
    assert main(["export-model", str(out), "task-999", tr.names[0], str(tmp_path / "b")]) == 2
    assert "CHECKPOINT 'task-999'" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert main(["export-model", str(out), "latest", tr.names[0], str(tmp_path / "c")]) == 2
    assert "DIR" in capsys.readouterr().err and (tmp_path / "c" / "keep.txt").read_text() == "mine"
