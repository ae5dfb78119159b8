"""Training step against TRL: the same self-distillation work through the project and through TRL 1.16.

    python benchmarks/step_vs_trl.py [--vocab 49152,4096] [--reps 2] [--steps 3] [--threads 2]
                                     [--peer trl|none] [--quick] [--no-record]

The work is defined in ``benchmarks/sides/workload.py`` (a random Llama, 4 prompts x 4 rollouts x 64
tokens, live self-teacher with a privileged context, full-vocabulary JSD, AdamW). For each vocabulary size
the driver prepares, once, under ``--workdir``: the tokenizer (49,152: SmolLM2's, from the demo's offline
assets; 4,096: a byte-level BPE trained here on Python's standard library sources), the random model
saved with ``save_pretrained`` (both sides load the same weights) and the prompt texts. Then it runs the
sides alternately, each in a fresh process (so peak RSS is the side's own): TRL in ``.venv-trl`` (built
on first use: torch 2.13.0 from the machine's wheel, ``trl==1.16.0`` and the project's own transformers
version) and the project in this interpreter's environment, in the order TRL, project, project, TRL, ...
over ``--reps`` repetitions. Each side runs ``--warmup`` steps, then ``--steps`` measured ones.

Prints one JSON object: per vocabulary and side, the median seconds per step and per phase (generation,
update), completion tokens per second, peak RSS, the step's useful FLOPs (``workload.useful_flops``) as a
share of the GEMM rate measured in this process on the same threads; then the ratios (project over TRL:
tokens/s, peak RSS). Appends a line per vocabulary to docs/benchmarks.md. Absolute times move between
runs on a shared machine: the ratios, from one invocation, are the figures.

``--compare-rev REV`` adds a third side: the project's step as it was at git revision REV (its
``opcod_core`` from a worktree, run by the same side script), for a before/after figure in one invocation.

``--quick`` (the test suite's smoke run): a one-layer model, 8 new tokens, one rep, one step, vocab 4,096,
the project side only unless ``--peer trl``. It checks that the benchmark runs; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "sides"))
sys.path.insert(0, str(HERE))

import workload as wl  # noqa: E402
from record import record  # noqa: E402

TRL_VERSION = "1.16.0"
TRL_VENV = ROOT / ".venv-trl"
VOCABS = (49152, 4096)


# ------------------------------------------------------------------ assets

def _stdlib_corpus(max_chars: int = 4_000_000) -> str:
    """Text to train the small tokenizer and cut prompts from: Python's own sources, in a fixed order."""
    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(errors="replace")
        parts.append(text)
        size += len(text)
        if size >= max_chars:
            break
    return "\n".join(parts)


def build_tokenizer(vocab: int, out: Path, cache_dir: Path) -> None:
    """A transformers tokenizer directory with an EOS and a pad token and exactly ``vocab`` entries."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if vocab == 49152:
        from opcod_core.assets import prepare_smollm

        tok = AutoTokenizer.from_pretrained(prepare_smollm(cache_dir))
        tok.pad_token = "<|endoftext|>"
    elif vocab == 4096:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<pad>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        bpe.train_from_iterator(_stdlib_corpus().splitlines(), trainer=trainer)
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<pad>")
    else:
        raise SystemExit(f"--vocab: {vocab} is not one of {list(VOCABS)}")
    if len(tok) != vocab:
        raise SystemExit(f"the tokenizer for --vocab {vocab} has {len(tok)} entries")
    tok.save_pretrained(out)


def build_model(tokenizer_dir: Path, out: Path, size: dict, seed: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                      num_attention_heads=size["heads"], num_key_value_heads=size["heads"],
                      intermediate_size=size["intermediate"], tie_word_embeddings=True, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(out)


def prompt_texts(tokenizer_dir: Path, n: int, tokens: int, offset: int) -> list[str]:
    """``n`` texts of about ``tokens`` tokens each, consecutive pieces of the corpus from piece ``offset``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tok(_stdlib_corpus(400_000))["input_ids"]
    return [tok.decode(ids[(offset + i) * tokens:(offset + i + 1) * tokens]) for i in range(n)]


def prepare(vocab: int, workdir: Path, args) -> Path:
    """The work directory of one vocabulary (built once; ``--quick`` has its own)."""
    size = wl.QUICK if args.quick else wl.MODEL
    d = workdir / f"{'quick-' if args.quick else ''}v{vocab}"
    tok_dir, model_dir = d / "tokenizer", d / "model"
    if not (model_dir / "config.json").exists():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        from opcod_core.paths import default_cache_dir

        build_tokenizer(vocab, tok_dir, Path(args.cache_dir) if args.cache_dir else default_cache_dir())
        build_model(tok_dir, model_dir, size, seed=0)
    new_tokens = 8 if args.quick else wl.NEW_TOKENS
    w = wl.Workload(model_dir=str(model_dir), tokenizer_dir=str(tok_dir),
                    prompts=prompt_texts(tok_dir, wl.PROMPTS, wl.PROMPT_TOKENS, 0),
                    contexts=prompt_texts(tok_dir, wl.PROMPTS, wl.CONTEXT_TOKENS, wl.PROMPTS),
                    new_tokens=new_tokens, steps=args.steps, warmup_steps=args.warmup, threads=args.threads,
                    micro_batch=args.micro_batch)
    w.save(d / "workload.json")
    return d


def ensure_trl_venv() -> Path:
    """``.venv-trl`` with TRL 1.16 beside the project's torch and transformers versions (built once)."""
    import torch
    import transformers

    py = TRL_VENV / "bin" / "python"
    check = "import trl, transformers; print(trl.__version__, transformers.__version__)"
    want = f"{TRL_VERSION} {transformers.__version__}"
    if py.exists() and subprocess.run([str(py), "-c", check], capture_output=True, text=True).stdout.strip() == want:
        return py
    print(f"building {TRL_VENV} (TRL {TRL_VERSION}) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run(pip + [f"trl=={TRL_VERSION}", f"transformers=={transformers.__version__}"], check=True)
    return py


# ------------------------------------------------------------------ running

def revision_tree(rev: str) -> Path:
    """A checkout of the project at ``rev`` (a git worktree under the work directory's parent, made once):
    its ``opcod_core`` runs the project's side as it was, for a before/after figure in one invocation."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = ROOT / ".cache" / "bench-revisions" / sha
    if not (tree / "opcod_core").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return tree


def run_side(side: str, d: Path, python: Path, threads: int, source: Path | None = None) -> dict:
    """One fresh process of ``side`` (``project`` or ``trl``); ``source``: a checkout whose opcod_core the
    project's side imports instead of the installed one."""
    script = HERE / "sides" / f"{side}_step.py"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([str(python), str(script), str(d)], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"the {side} side failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict], vocab: int, size: dict, new_tokens: int, peak: float) -> dict:
    steps = [s for r in runs for s in r["steps"]]
    med = {k: statistics.median(s[k] for s in steps) for k in ("step_s", "generate_s", "update_s")}
    tokens = runs[0]["tokens"]
    rows = len(tokens["student_prefix"])
    flops = wl.useful_flops(size, vocab, tokens["student_prefix"], tokens["teacher_prefix"], new_tokens)
    return {
        "s_per_step": round(med["step_s"], 3), "generate_s": round(med["generate_s"], 3),
        "update_s": round(med["update_s"], 3),
        "per_rep_s": [round(statistics.median(s["step_s"] for s in r["steps"]), 3) for r in runs],
        "tokens_per_s": round(rows * new_tokens / med["step_s"], 1),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
        "update_gflop": round(flops["update"] / 1e9, 2), "generate_gflop": round(flops["generate"] / 1e9, 2),
        "update_flop_share": round(flops["update"] / med["update_s"] / peak, 3),
        "step_flop_share": round((flops["update"] + flops["generate"]) / med["step_s"] / peak, 3),
        **{k: runs[0][k] for k in ("torch", "trl", "micro_batch") if k in runs[0]},
    }


def measure(args) -> dict:
    workdir = Path(args.workdir)
    vocabs = [4096] if args.quick else [int(v) for v in args.vocab.split(",")]
    peer = args.peer or ("none" if args.quick else "trl")
    pythons = {"project": Path(sys.executable)}
    sources: dict[str, Path | None] = {"project": None}
    if args.compare_rev:
        label = f"project@{args.compare_rev}"
        pythons[label], sources[label] = Path(sys.executable), revision_tree(args.compare_rev)
    if peer == "trl":
        pythons["trl"] = ensure_trl_venv()
    size = wl.QUICK if args.quick else wl.MODEL
    result: dict = {"machine": None, "threads": args.threads, "model": size, "reps": args.reps, "steps": args.steps,
                    "vocab": {}}
    peaks = [wl.gemm_peak_flops(args.threads)]
    for vocab in vocabs:
        d = prepare(vocab, workdir, args)
        new_tokens = wl.Workload.load(d / "workload.json").new_tokens
        runs: dict[str, list[dict]] = {side: [] for side in pythons}
        order = list(pythons)[::-1]  # the peer first, this revision last
        for rep in range(args.reps):
            for side in (order if rep % 2 == 0 else order[::-1]):
                script = "trl" if side == "trl" else "project"
                runs[side].append(run_side(script, d, pythons[side], args.threads, sources.get(side)))
        peaks.append(wl.gemm_peak_flops(args.threads))
        peak = max(peaks)
        sides = {side: summarise(r, vocab, size, new_tokens, peak) for side, r in runs.items()}
        entry = {"sides": sides, "gemm_peak_gflops": round(peak / 1e9, 1)}
        p = sides["project"]
        for other, key in (("trl", ""), (f"project@{args.compare_rev}", "_vs_rev")):
            if other in sides and (other == "trl" or args.compare_rev):
                entry[f"tokens_per_s_ratio{key}"] = round(p["tokens_per_s"] / sides[other]["tokens_per_s"], 3)
                entry[f"peak_rss_ratio{key}"] = round(p["peak_rss_gb"] / sides[other]["peak_rss_gb"], 3)
        result["vocab"][str(vocab)] = entry
    from record import machine

    result["machine"] = machine()
    return result


def figures(vocab: str, entry: dict) -> str:
    def side(name: str, s: dict) -> str:
        return (f"{name} {s['s_per_step']} s/step (generate {s['generate_s']} / update {s['update_s']}), "
                f"{s['tokens_per_s']} tok/s, RSS {s['peak_rss_gb']} GB, useful FLOPs {s['step_flop_share']:.0%} "
                f"of GEMM peak (update {s['update_flop_share']:.0%})")

    parts = [f"vocab {vocab}: " + "; ".join(side(n, s) for n, s in entry["sides"].items())]
    if "tokens_per_s_ratio" in entry:
        parts.append(f"project/TRL tokens/s x{entry['tokens_per_s_ratio']}, peak RSS x{entry['peak_rss_ratio']}")
    if "tokens_per_s_ratio_vs_rev" in entry:
        parts.append(f"project/earlier revision tokens/s x{entry['tokens_per_s_ratio_vs_rev']}, "
                     f"peak RSS x{entry['peak_rss_ratio_vs_rev']}")
    parts.append(f"GEMM peak {entry['gemm_peak_gflops']} GFLOP/s")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", default=",".join(str(v) for v in VOCABS), help="vocabulary sizes, of 49152 and 4096")
    ap.add_argument("--reps", type=int, default=2, help="runs of each side per vocabulary, alternated")
    ap.add_argument("--steps", type=int, default=3, help="measured steps per run")
    ap.add_argument("--warmup", type=int, default=1, help="steps per run before measuring")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="the project's rows per forward/backward (default: what runs use, StudentRuntime's)")
    ap.add_argument("--peer", choices=("trl", "none"), default=None, help="default: trl (none with --quick)")
    ap.add_argument("--compare-rev", default=None, metavar="REV",
                    help="also run the project's side at git revision REV (a worktree under .cache/): before/after")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny model, one rep, one step")
    ap.add_argument("--workdir", default=str(ROOT / ".cache" / "bench-step"))
    ap.add_argument("--cache-dir", default=None, help="where the demo's SmolLM2 is prepared (default: the command "
                    "line's cache, opcod_core.paths.default_cache_dir)")
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.steps, args.warmup = 1, 1, 0
    result = measure(args)
    print(json.dumps(result))
    if not args.no_record and not args.quick:
        cmd = "python benchmarks/step_vs_trl.py " + " ".join(argv if argv is not None else sys.argv[1:])
        for vocab, entry in result["vocab"].items():
            record("Training step vs TRL", cmd.strip(), figures(vocab, entry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
