"""What crosses a student's boundary: the examples it trains on, the per-rollout results and the step
output it returns (token ids, text and small per-token float lists, so a student can live in another
process: ``opcod_core.executors.ray``), and the tokenizer-only text operations every student shares.
Importable without the student's weights or backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from opcod_core import models


@dataclass
class DistillExample:
    """One rollout to train on. ``teacher_prefix`` None means teacher = student (skipped)."""

    student_prefix: list[int]
    rollout: list[int]
    teacher_prefix: list[int] | None
    s_only_prefix: list[int] | None = None   # for the feedback-effect heatmap (divergence with s only)
    weight: float = 1.0


@dataclass
class ExampleResult:
    divergence: list[float]                  # per rollout token, under the teacher context used
    divergence_s_only: list[float] | None    # per rollout token, teacher with s only (None: not computed)
    student_logprob: list[float]             # log p_student(y_t) per token
    loss: float                              # this rollout's mean token divergence (0 when skipped)


@dataclass
class StepOutput:
    loss: float
    results: list[ExampleResult]
    metrics: dict[str, float] = field(default_factory=dict)


class TextOps:
    """Tokenizer-only operations; shared by the runtime and by proxies of students that live in
    another process (they keep a copy of the tokenizer, so text never crosses the boundary twice)."""

    tokenizer = None
    chat_template_kwargs: dict = {}  # the student's StudentConfig.chat_template_kwargs (never mutated)

    def render(self, messages: list[dict], prefill: str = "") -> list[int]:
        """Every prompt of this student (rollouts, self-teacher, tutor, evaluation, warm-up) goes
        through here, with the student's chat template variables."""
        return models.render_prompt(self.tokenizer, messages, add_generation_prompt=True, prefill=prefill,
                                    chat_template_kwargs=self.chat_template_kwargs)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each token as the text it contributes (byte-level pieces decoded one at a time)."""
        return [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]
