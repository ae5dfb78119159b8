"""Which CPU kernel settings move the floats on this machine, and what the benchmarks' AVX2 pin costs.

Why: the fidelity benchmark pins torch's CPU float path to AVX2 (``opcod_core.bench.floatpath``) because a
student warm-up built on an AVX-512 CPU left the committed build (made on AVX2 CPUs) at its first loss
figure. This script shows, on the machine it runs on, which of the three settings changes results, and
compares the speed of a small training step native and pinned, side by side in one invocation.

Each setting runs in a fresh interpreter (the settings are read when torch and its libraries load):
``native``, each of ``ATEN_CPU_CAPABILITY=avx2``, ``MKL_CBWR=AVX2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` alone,
and the pin (all three). Each prints a digest of a few ops' outputs (matrix products, log-softmax,
layer norm, a reduction, one step of an MLP with AdamW) and the mean time of that step over ``--steps``
steps after a warm-up. Prints JSON; appends a line to docs/benchmarks.md unless ``--no-record``.

    usage: python benchmarks/float_path.py [--steps N] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import record  # noqa: E402

SETTINGS = {
    "native": {},
    "aten": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl": {"MKL_CBWR": "AVX2"},
    "onednn": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "pinned": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}

PROBE = r"""
import hashlib, json, sys, time
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
def digest(t):
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:12]
a, b = torch.randn(256, 1024, generator=g), torch.randn(1024, 512, generator=g)
x = torch.randn(64, 1000, generator=g)
out = {"capability": torch.backends.cpu.get_cpu_capability(),
       "matmul": digest(a @ b), "log_softmax": digest(torch.log_softmax(x, -1)),
       "layer_norm": digest(torch.nn.functional.layer_norm(x, (1000,))), "sum_exp": digest(torch.exp(x).sum(-1))}
model = torch.nn.Sequential(torch.nn.Embedding(1000, 128), torch.nn.Flatten(), torch.nn.Linear(128 * 16, 256),
                            torch.nn.GELU(), torch.nn.LayerNorm(256), torch.nn.Linear(256, 1000))
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
tokens = torch.randint(0, 1000, (32, 16), generator=g)
target = torch.randint(0, 1000, (32,), generator=g)
def step():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(tokens), target)
    loss.backward()
    opt.step()
    return loss
for _ in range(5):
    step()
steps = int(sys.argv[1])
t0 = time.perf_counter()
for _ in range(steps):
    loss = step()
out["step_ms"] = (time.perf_counter() - t0) / steps * 1000
out["training"] = digest(torch.cat([p.flatten() for p in model.parameters()]))
print(json.dumps(out))
"""


def run(setting: dict, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS["pinned"]}
    env.update(setting, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(steps)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="timed training steps per setting")
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args()
    results = {name: run(setting, args.steps) for name, setting in SETTINGS.items()}
    ops = ("matmul", "log_softmax", "layer_norm", "sum_exp", "training")
    moved = {name: [op for op in ops if r[op] != results["native"][op]] for name, r in results.items() if name != "native"}
    figures = {"capability_native": results["native"]["capability"], "differs_from_native": moved,
               "step_ms": {name: round(r["step_ms"], 3) for name, r in results.items()},
               "pinned_over_native": round(results["pinned"]["step_ms"] / results["native"]["step_ms"], 3)}
    print(json.dumps(figures, indent=2))
    if not args.no_record:
        text = (f"native {figures['capability_native']}; differs from native: "
                + ", ".join(f"{k} [{' '.join(v) or 'nothing'}]" for k, v in moved.items())
                + f"; step {figures['step_ms']['native']} ms native, {figures['step_ms']['pinned']} ms pinned "
                f"(x{figures['pinned_over_native']})")
        record("CPU float path", "python benchmarks/float_path.py" + (f" --steps {args.steps}" if args.steps != 300 else ""),
               text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
