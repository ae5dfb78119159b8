"""``opcod export-model RUN CHECKPOINT STUDENT DIR``: one student at one checkpoint as a plain transformers
directory.

Why: a trained student is only useful outside OPCoD Studio if ``AutoModelForCausalLM.from_pretrained(DIR)``
and ``AutoTokenizer.from_pretrained(DIR)`` load it with no OPCoD code. A checkpoint keeps each student's
``model/`` as ``save_pretrained`` wrote it, beside its optimizer state, frozen reference and EMA; the export
copies the model and tokenizer files only, into a temporary directory renamed into place (an interrupted
export leaves nothing half written), and writes ``opcod_export.json`` (run, checkpoint, student and the
student's config) so the provenance travels with the weights.

Our own tiny tokenizers are saved "verbatim" (``opcod_core.models``: loaded as
``PreTrainedTokenizerFast``, because ``AutoTokenizer`` would rebuild them with the model family's rules);
the export names that class in ``tokenizer_config.json`` so plain ``AutoTokenizer`` loads them verbatim too,
and checks that the exported tokenizer encodes a probe text as the checkpoint's does.

RUN is a run's output directory (``opcod train --out DIR``; a served run's is ``<data dir>/runs/<id>``).
CHECKPOINT is a tag (``task-000013-e0000421``), ``latest``, or a checkpoint directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from opcod_core.checkpoint import checkpoint_root, latest_checkpoint

PROBE = "How many atoms are in 2 H2O? Answer: 6"
_SKIP = {"optimizer.pt"}


class ExportError(ValueError):
    """What is missing or in the way, in words."""


def resolve_checkpoint(run_dir: str | Path, checkpoint: str) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"RUN {run_dir}: not a directory")
    if checkpoint == "latest":
        path = latest_checkpoint(run_dir)
        if path is None:
            raise ExportError(f"RUN {run_dir}: no checkpoint")
        return path
    for cand in (Path(checkpoint), checkpoint_root(run_dir) / checkpoint):
        if cand.is_dir():
            return cand
    tags = sorted(p.name for p in checkpoint_root(run_dir).glob("task-*") if p.is_dir())
    raise ExportError(f"CHECKPOINT {checkpoint!r}: not found in {run_dir} (have: {', '.join(tags) or 'none'})")


def export_model(run_dir: str | Path, checkpoint: str, student: str, dest: str | Path, overwrite: bool = False) -> Path:
    """Copy ``student``'s model and tokenizer at ``checkpoint`` of the run to ``dest``; returns ``dest``."""
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    src = ckpt / student / "model"
    if not src.is_dir():
        have = sorted(p.name for p in ckpt.iterdir() if (p / "model").is_dir())
        raise ExportError(f"STUDENT {student!r}: not in checkpoint {ckpt.name} (students: {', '.join(have)})")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise ExportError(f"DIR {dest}: exists and is not empty (use --overwrite)")
    tmp = dest.with_name(f".{dest.name}.export-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=lambda _d, names: [n for n in names if n in _SKIP])
    _name_tokenizer_class(tmp)
    _write_provenance(tmp, Path(run_dir), ckpt, student)
    _check_tokenizer(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def _name_tokenizer_class(directory: Path) -> None:
    from opcod_core.models import _VERBATIM_KEY

    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get(_VERBATIM_KEY):
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_provenance(directory: Path, run_dir: Path, ckpt: Path, student: str) -> None:
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    entry = next((s for s in (config or {}).get("students", []) if s.get("name") == student), None)
    state_path = ckpt / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    (directory / "opcod_export.json").write_text(json.dumps({
        "run_dir": str(run_dir.resolve()), "checkpoint": ckpt.name, "student": student,
        "next_task": state.get("next_task"), "student_config": entry}, indent=2), encoding="utf-8")


def _check_tokenizer(src: Path, exported: Path) -> None:
    from transformers import AutoTokenizer

    from opcod_core.models import load_tokenizer

    want = load_tokenizer(src)(PROBE)["input_ids"]
    got = AutoTokenizer.from_pretrained(str(exported))(PROBE)["input_ids"]
    if got != want:
        raise ExportError(f"the exported tokenizer encodes {PROBE!r} as {got[:8]}..., the checkpoint's as {want[:8]}...")
