#!/usr/bin/env bash
# GPU path check: a short OPCoD run with two small Qwen-family students on the vLLM backend
# (official CUDA `vllm`), then rollout tokens/s, weight-sync time and step time from its events.
#
# Usage (on a machine with an NVIDIA GPU):
#   scripts/gpu_check.sh                 # builds .venv-gpu (torch + vllm from PyPI) and runs
#   MODEL_A=/models/qwen2.5-0.5b MODEL_B=/models/qwen3-0.6b scripts/gpu_check.sh   # local model dirs
#   STEPS=5 ROUNDS=1 OUT=/tmp/gpu-check scripts/gpu_check.sh
# The models come from the Hugging Face hub unless MODEL_A/MODEL_B name local directories; the data
# are the built-in science questions (no download).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this script needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

VENV=${VENV:-.venv-gpu}
MODEL_A=${MODEL_A:-Qwen/Qwen2.5-0.5B-Instruct}
MODEL_B=${MODEL_B:-Qwen/Qwen3-0.6B}
STEPS=${STEPS:-4}
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-.cache/gpu-check}

if [ ! -x "$VENV/bin/opcod" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q vllm            # official CUDA build; brings its own torch
  "$VENV/bin/pip" install -q -e .
fi
"$VENV/bin/python" -c "import torch, vllm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'vllm', vllm.__version__)"

rm -rf "$OUT"
"$VENV/bin/opcod" train --preset tiny --out "$OUT" --quiet \
  --backend vllm \
  --set device=cuda --set dtype=bfloat16 \
  --set "students=[{\"name\":\"qwen-a\",\"model\":\"$MODEL_A\",\"strong_domain\":\"chemistry\",\"warmup_sft_steps\":0,\"warmup_domains\":null},{\"name\":\"qwen-b\",\"model\":\"$MODEL_B\",\"strong_domain\":\"physics\",\"warmup_sft_steps\":0,\"warmup_domains\":null}]" \
  --set schedule.rounds="$ROUNDS" --set schedule.steps_per_direction="$STEPS" \
  --set rollout.batch_prompts=8 --set rollout.n=8 --set rollout.max_new_tokens=256 \
  --set tutor.max_new_tokens=96 --set optim.lr=1e-6 \
  --set eval.k=4 --set eval.max_items=32 --set gating.val_k=2 \
  --set vllm.gpu_memory_utilization=0.25

"$VENV/bin/python" - "$OUT/events.jsonl" <<'EOF'
import json, statistics, sys

steps = [e for e in map(json.loads, open(sys.argv[1])) if e["type"] == "step"]
if not steps:
    sys.exit("gpu_check: the run wrote no step events")
def col(key):
    return [e["metrics"][key] for e in steps if key in e["metrics"]]
def show(label, values, unit):
    if values:
        print(f"{label:<28} median {statistics.median(values):10.3f} {unit}   min {min(values):.3f}   max {max(values):.3f}   (n={len(values)})")
print(f"steps: {len(steps)}")
show("rollout tokens/s", col("throughput/rollout_tokens_per_s"), "tok/s")
show("weight sync (per update)", [v for v in col("time/weight_sync") if v > 0], "s")
show("rollout time", col("time/rollout"), "s")
show("train time", col("time/train"), "s")
show("step time", col("time/step"), "s")
EOF
