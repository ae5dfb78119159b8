"""Prompt wording for the student's rollouts and the self-teacher's context (DESIGN section 2, step 6).

Why it matters: OPCoD compares the student's and the self-teacher's next-token distributions over the
*same* rollout tokens. The student context is (question) and the self-teacher context is (question, a
correct solution s, the peer's feedback f); both are rendered with the chat template and
``add_generation_prompt=True``, and the caller appends the rollout's token ids after each. So the rollout
follows the assistant generation prompt in exactly the same way in both contexts, and only what comes
before it differs.

Rules:
- Keep the wording short: tiny models with small context windows use these prompts.
- With neither s nor f, ``teacher_messages`` is identical to ``rollout_messages`` (teacher = student);
  the trainer skips such rollouts, and ``compose_teacher_inputs`` reports them as ``"none"``.
- Every self-teacher prompt the trainer builds (the real one, the s-only one of the feedback-effect
  heatmap, the "without feedback" baseline of the break rate) goes through ``teacher_context``, so a
  baseline differs from the real teacher prompt only by what it leaves out: in context mode ``f`` the
  teacher without f is the bare question (= the student context), never a context with s in it.
- Multiple-choice prompts end with the instruction to finish with "Answer: X" (X a label); numeric
  prompts with "Answer: <number>". The answer checker extracts the last such line.
- The tutor's prompt lives with its parser in ``opcod_core.anchoring`` (``TutorTemplate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

ContextMode = Literal["s+f", "s", "f"]
CONTEXT_MODES: tuple[str, ...] = ("s+f", "s", "f")
ContextUsed = Literal["s+f", "s", "f", "none"]

SYSTEM_PROMPT = "You are a careful science student. Reason briefly, then give your final answer."
SOLUTION_HEADER = "Here is a correct solution:"
FEEDBACK_HEADER = "A peer tutor's feedback on an attempt:"
TEACHER_LEAD = "Now answer the question yourself."


def format_choices(labels: Sequence[str], choices: Sequence[str]) -> str:
    """``"A) first\\nB) second"``; empty for a question without choices."""
    if len(labels) != len(choices):
        raise ValueError(f"format_choices: {len(labels)} labels but {len(choices)} choices")
    return "\n".join(f"{lb}) {ch}" for lb, ch in zip(labels, choices))


def answer_instruction(labels: Sequence[str], answer_type: str) -> str:
    if answer_type == "mcq":
        return f'Think briefly, then end with "Answer: X" where X is one of {", ".join(labels)}.'
    if answer_type == "numeric":
        return 'Think briefly, then end with "Answer: <number>".'
    raise ValueError(f"answer_type: expected 'mcq' or 'numeric', got {answer_type!r}")


def _question_block(question: str, labels: Sequence[str], choices: Sequence[str]) -> str:
    choices_text = format_choices(labels, choices)
    return f"{question}\n{choices_text}" if choices_text else question


def rollout_messages(question: str, labels: Sequence[str], choices: Sequence[str], answer_type: str) -> list[dict]:
    """The student context: system + user (question, choices, answer instruction)."""
    user = f"{_question_block(question, labels, choices)}\n\n{answer_instruction(labels, answer_type)}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def teacher_messages(
    question: str,
    labels: Sequence[str],
    choices: Sequence[str],
    answer_type: str,
    solution: str | None,
    feedback: str | None,
) -> list[dict]:
    """The self-teacher context: the question, then s (if any), then f (if any), then the same answer
    instruction. Without s and f this equals ``rollout_messages``."""
    parts = [_question_block(question, labels, choices)]
    if solution:
        parts.append(f"{SOLUTION_HEADER}\n{solution.strip()}")
    if feedback:
        parts.append(f"{FEEDBACK_HEADER}\n{feedback.strip()}")
    instruction = answer_instruction(labels, answer_type)
    if solution or feedback:
        instruction = f"{TEACHER_LEAD} {instruction}"
    parts.append(instruction)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def compose_teacher_inputs(
    mode: str, solution: str | None, feedback: str | None
) -> tuple[str | None, str | None, ContextUsed]:
    """What goes into the self-teacher context under ``mode``, and what that amounts to.

    Returns ``(solution_or_None, feedback_or_None, used)``; ``used`` is "s+f", "s", "f" or "none"
    ("none": teacher = student, the rollout is skipped). Empty or whitespace-only strings count as absent.
    """
    if mode not in CONTEXT_MODES:
        raise ValueError(f"context mode: expected one of {list(CONTEXT_MODES)}, got {mode!r}")
    s = solution if solution is not None and solution.strip() and mode in ("s+f", "s") else None
    f = feedback if feedback is not None and feedback.strip() and mode in ("s+f", "f") else None
    used: ContextUsed = "s+f" if s and f else "s" if s else "f" if f else "none"
    return s, f, used


@dataclass(frozen=True)
class TeacherContext:
    """The self-teacher prompt under a context mode: what it contains and its chat messages."""

    solution: str | None
    feedback: str | None
    used: ContextUsed
    messages: list[dict]


def teacher_context(mode: str, question: str, labels: Sequence[str], choices: Sequence[str], answer_type: str,
                    solution: str | None, feedback: str | None) -> TeacherContext:
    """``compose_teacher_inputs`` then ``teacher_messages``: the one way the trainer builds a teacher
    prompt. Pass ``feedback=None`` for the same teacher without the peer's feedback."""
    s, f, used = compose_teacher_inputs(mode, solution, feedback)
    return TeacherContext(s, f, used, teacher_messages(question, labels, choices, answer_type, solution=s, feedback=f))
