"""The student part of the run configuration: ``StudentConfig`` (one peer: its model, its domain and how it
is warmed up) and ``SpecializeConfig`` (the supervised specialisation of real models).

Why its own module: the warm-up has grown options of its own (domain skew, partly known and corrupt
domains, schedule, batch, build seed, the build check), and ``opcod_core.config`` stays the place of the
run-level sections. ``opcod_core.config`` re-exports both classes, so ``from opcod_core.config import
StudentConfig`` keeps working.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base of every config section: frozen, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# apply_chat_template's own parameters: a chat template variable must not shadow one of them.
_RESERVED_TEMPLATE_KWARGS = frozenset({
    "conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
    "continue_final_message", "tokenize", "padding", "truncation", "max_length", "return_tensors",
    "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs"})


class SpecializeConfig(Section):
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


class StudentConfig(Section):
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
    warmup_partial_weight: dict[str, float] | None = Field(None, description="How often the known items "
                                                           "of a partly known domain are drawn, relative to "
                                                           "the own domain's (weight 1); default: its "
                                                           "warmup_partial share. The share sets which units "
                                                           "are known, the weight how often they are practised.")
    warmup_corrupt_domains: tuple[str, ...] | None = Field(None, description="Hinted domains on which the "
                                                           "warm-up teaches the tutor format from the world's "
                                                           "corrupted fact table (meta 'corrupt_hint', sciworld3): "
                                                           "an incognizant tutor whose feedback there is "
                                                           "well-formed, anchored and wrong. On a domain it "
                                                           "also partly knows (warmup_partial), only the facts "
                                                           "of the units it does not know are wrong.")
    warmup_unknown_belief: float = Field(1.0, ge=0.0, le=1.0, description="On warmup_corrupt_domains, the "
                                         "share of the student's own (unhinted) answers computed from the "
                                         "corrupted fact table; the rest from random facts. 1: it believes the "
                                         "wrong table firmly (its errors are confident, and a JSD to a teacher "
                                         "that knows better saturates: docs/results/divergence-v3.md); below 1: "
                                         "it leans wrong but is unsure (its feedback there stays corrupted). "
                                         "At 0.5 phys, knowing no chemistry, still did not learn it and lost "
                                         "some of its physics (docs/results/belief-v3.md); the v3 preset's weak "
                                         "domains, partly known, use 0 on the units the student does not know.")
    warmup_batch_size: int = Field(16, ge=1, le=4096, description="Examples per warm-up step.")
    warmup_schedule: Literal["constant", "cosine", "converge"] = Field(
        "constant", description="Warm-up learning rate: constant; cosine decay to 0 over the warm-up steps; or "
        "converge: constant until the training loss's moving average falls below warmup_converge_loss (at "
        "most warmup_sft_steps steps), then cosine decay to 0 over warmup_decay_steps (ends converged "
        "whenever the loss dropped).")
    warmup_converge_loss: float = Field(0.15, gt=0, description="Loss that ends the constant phase of the "
                                        "converge schedule (exponential moving average, weight 0.02).")
    warmup_decay_steps: int = Field(1000, ge=1, le=100_000, description="Cosine decay steps after the "
                                    "constant phase of the converge schedule.")
    warmup_attempts: int = Field(1, ge=1, le=10, description="Warm-up attempts of a build: an attempt "
                                 "whose converge-schedule loss has not converged by warmup_sft_steps, or "
                                 "that misses its build check (warmup_expect, warmup_self_teacher_tolerance), "
                                 "is discarded and the next starts from fresh weights and batches (same "
                                 "known units); the last fails loudly. The build's record names the attempt "
                                 "that passed. 1: one attempt, as before the option.")
    warmup_own_contexts: Literal["with_solution", "balanced"] = Field(
        "with_solution", description="Own-domain self-teacher contexts in the skewed warm-up: always with a "
        "solution s (and the hint in half), or balanced over s, hint alone and s + hint, so that a hint on "
        "the student's own domain reads as a restatement of what it knows.")
    warmup_hinted_facts: Literal["given", "random"] = Field(
        "given", description="Facts stated by the hinted domains' warm-up hints: the items' own (the student "
        "can learn the facts from them), or random facts with the answers they give (hint use without the "
        "domain's facts; needs a world that can vary its facts: sciworld3).")
    warmup_hinted_contexts: Literal["balanced", "hint"] = Field(
        "balanced", description="Self-teacher contexts of the random-fact hinted examples: s, hint and s + hint "
        "evenly, or the hint always (with s in 30%).")
    warmup_hinted_share: float | None = Field(None, ge=0.0, le=0.9, description="Share of hinted-domain "
                                              "examples in a skewed warm-up batch (default 0.35); own-domain "
                                              "answers take the rest of the batch.")
    warmup_own_context_share: float | None = Field(None, ge=0.0, le=0.9, description="Share of own-domain "
                                                   "self-teacher-context examples in a skewed warm-up batch "
                                                   "(default 0.1); own-domain answers take the difference.")
    warmup_expect: dict[str, tuple[float, float]] | None = Field(
        None, description="Intended plain accuracy [low, high] per domain on the validation split after the "
        "warm-up (avg@4); the build fails, naming student, domain and measured value, when one is missed.")
    warmup_self_teacher_tolerance: float | None = Field(
        None, ge=0.0, le=1.0, description="Build check of the self-teacher: on each own domain, accuracy with a "
        "correct solution s in context (validation avg@4) may fall below plain accuracy by at most this much, "
        "or the build fails naming student, domain and both values. Default: not checked.")
    build_seed: int | None = Field(None, ge=0, description="Seed of the student's initial weights and warm-up "
                                   "instead of the run's seed and the student's position: the same student "
                                   "(same cache key) in every run and pair that names it.")
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
        for domain, weight in (self.warmup_partial_weight or {}).items():
            if not 0.0 < weight <= 10.0:
                raise ValueError(f"warmup_partial_weight.{domain}: weight must be in (0, 10], got {weight}")
            if domain not in (self.warmup_partial or {}):
                raise ValueError(f"warmup_partial_weight.{domain}: not one of warmup_partial "
                                 f"{list(self.warmup_partial or {})}")
        for domain in self.warmup_corrupt_domains or ():
            if domain not in (self.warmup_hinted_domains or ()):
                raise ValueError(f"warmup_corrupt_domains: {domain!r} is not one of warmup_hinted_domains "
                                 f"{list(self.warmup_hinted_domains or ())}")
        if self.warmup_unknown_belief < 1.0 and not self.warmup_corrupt_domains:
            raise ValueError(f"warmup_unknown_belief: {self.warmup_unknown_belief} has no effect without "
                             "warmup_corrupt_domains (the domains whose answers it shapes)")
        for domain, bounds in (self.warmup_expect or {}).items():
            lo, hi = bounds
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"warmup_expect.{domain}: expected 0 <= low <= high <= 1, got {list(bounds)}")
        return self
