"""TRL's side of ``benchmarks/step_vs_trl.py``: the work of ``workload.py`` through TRL 1.16's SDFTTrainer.

    .venv-trl/bin/python benchmarks/sides/trl_step.py WORKDIR    (prints one JSON line)

``trl.experimental.sdft.SDFTTrainer`` with ``teacher_model_kind="live"`` (the self-teacher is the live
weights), ``distillation_mode="full_logits"`` with alpha 0.5 (the same generalized JSD), gradient
checkpointing and vLLM off, one optimizer step per generation of 4 prompts x 4 rollouts (16 rows per
device batch, no accumulation), constant lr, AdamW (``adamw_torch``), logging kept out of the measured
steps. ``min_new_tokens`` holds every rollout to its 64 tokens. A step is timed from the trainer's
``on_step_begin`` to ``on_step_end`` callback; generation is ``SDFTTrainer._generate``, timed around it.
Runs in its own virtualenv (``.venv-trl``, built by the driver); opcod_core is not imported.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import BETA, LR, MAX_GRAD_NORM, StepClock, Workload, report  # noqa: E402


def main(workdir: Path) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    w = Workload.load(workdir / "workload.json")
    torch.set_num_threads(w.threads)
    tok = AutoTokenizer.from_pretrained(w.tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(w.model_dir, dtype=torch.float32)
    rows = len(w.prompts) * w.rollouts
    data = Dataset.from_dict({"prompt": list(w.prompts), "privileged_context": list(w.contexts)})
    clock = StepClock()

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end()

    with tempfile.TemporaryDirectory() as out:
        args = SDFTConfig(
            output_dir=out, per_device_train_batch_size=rows, num_generations=w.rollouts,
            gradient_accumulation_steps=1, steps_per_generation=1, max_steps=w.warmup_steps + w.steps,
            max_completion_length=w.new_tokens, generation_kwargs={"min_new_tokens": w.new_tokens},
            temperature=1.0, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
            max_grad_norm=MAX_GRAD_NORM, optim="adamw_torch", weight_decay=0.0,
            distillation_mode="full_logits", distillation_alpha=BETA, teacher_model_kind="live",
            gradient_checkpointing=False, use_vllm=False, shuffle_dataset=False, seed=w.seed,
            use_cpu=True, bf16=False, fp16=False, report_to="none", logging_steps=10_000, save_strategy="no",
            dataloader_num_workers=0, disable_tqdm=True)
        trainer = SDFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[Timer()])
        generate = trainer._generate

        def timed_generate(prompt_ids):
            t0 = time.perf_counter()
            out_ids = generate(prompt_ids)
            clock.add_generation(time.perf_counter() - t0)
            lengths = {len(c) for c in out_ids[1]}
            if lengths != {w.new_tokens}:
                raise RuntimeError(f"rollouts of {sorted(lengths)} tokens: the workload needs {w.new_tokens} each")
            return out_ids

        trainer._generate = timed_generate
        trainer.train()
    return report("trl", clock, w.warmup_steps, w.prefix_lengths(*w.token_ids(tok)),
                  torch=torch.__version__, trl=trl.__version__)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
