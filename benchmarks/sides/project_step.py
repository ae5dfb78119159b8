"""The project's side of ``benchmarks/step_vs_trl.py``: the work of ``workload.py`` through the code a run uses.

    python benchmarks/sides/project_step.py WORKDIR    (in the project's virtualenv; prints one JSON line)

Generation is ``HFBackend.generate`` (the transformers backend of every CPU run) and the update
``StudentRuntime.distill_step`` (the tutee's step: student and self-teacher logits, the loss, backward,
clipping, AdamW). The tokenizer is loaded without its EOS token, so every rollout runs its 64 tokens, as
TRL's does with ``min_new_tokens``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import BETA, LR, MAX_GRAD_NORM, StepClock, Workload, report  # noqa: E402


def default_micro_batch() -> int:
    """The rows per forward/backward pass of a run's distillation step (``StudentRuntime``'s default)."""
    import inspect

    from opcod_core.student import StudentRuntime

    return inspect.signature(StudentRuntime.__init__).parameters["micro_batch"].default


def main(workdir: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from opcod_core.config import LossConfig, OptimConfig
    from opcod_core.generation.base import SamplingParams
    from opcod_core.generation.hf import HFBackend
    from opcod_core.student import StudentRuntime
    from opcod_core.student_types import DistillExample

    w = Workload.load(workdir / "workload.json")
    torch.set_num_threads(w.threads)
    torch.manual_seed(w.seed)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(Path(w.tokenizer_dir) / "tokenizer.json"), pad_token="<pad>")
    model = AutoModelForCausalLM.from_pretrained(w.model_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    backend = HFBackend(model, tok)
    micro_batch = w.micro_batch or default_micro_batch()
    rt = StudentRuntime("bench", model, tok, backend, OptimConfig(lr=LR, max_grad_norm=MAX_GRAD_NORM),
                        micro_batch=micro_batch)
    loss_cfg = LossConfig(divergence="jsd", beta=BETA)
    prompt_ids, teacher_ids = w.token_ids(tok)
    clock = StepClock()
    for step in range(w.warmup_steps + w.steps):
        clock.begin()
        t0 = time.perf_counter()
        samples = backend.generate(prompt_ids, SamplingParams(n=w.rollouts, temperature=1.0,
                                                              max_new_tokens=w.new_tokens, seed=w.seed + step))
        clock.add_generation(time.perf_counter() - t0)
        examples = [DistillExample(student_prefix=prompt_ids[i], rollout=c.token_ids, teacher_prefix=teacher_ids[i])
                    for i, group in enumerate(samples) for c in group]
        if any(len(e.rollout) != w.new_tokens for e in examples):
            raise RuntimeError("a rollout ended early: the workload needs every rollout at full length")
        rt.distill_step(examples, loss_cfg)
        clock.end()
    return report("project", clock, w.warmup_steps,
                  w.prefix_lengths(prompt_ids, teacher_ids),
                  torch=torch.__version__, micro_batch=micro_batch)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
