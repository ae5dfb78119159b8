"""Prompts: choices formatting, rollout and self-teacher contexts, teacher-input composition."""

import pytest

from opcod_core.prompts import (
    FEEDBACK_HEADER,
    SOLUTION_HEADER,
    compose_teacher_inputs,
    format_choices,
    rollout_messages,
    teacher_context,
    teacher_messages,
)

Q = "Which particle has a negative charge?"
LABELS = ["A", "B", "C"]
CHOICES = ["proton", "electron", "neutron"]


@pytest.mark.parametrize(
    "labels, choices, expected",
    [
        (["A", "B"], ["x", "y"], "A) x\nB) y"),
        (["A", "B", "C", "D"], ["1", "2", "7", "12"], "A) 1\nB) 2\nC) 7\nD) 12"),
        ([], [], ""),
        (("1",), ("only",), "1) only"),
    ],
)
def test_format_choices(labels, choices, expected):
    assert format_choices(labels, choices) == expected


def test_format_choices_length_mismatch():
    with pytest.raises(ValueError, match="2 labels but 1 choices"):
        format_choices(["A", "B"], ["x"])


def test_rollout_messages_mcq():
    msgs = rollout_messages(Q, LABELS, CHOICES, "mcq")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert user.startswith(Q + "\nA) proton\nB) electron\nC) neutron\n\n")
    assert '"Answer: X"' in user and "A, B, C" in user


def test_rollout_messages_numeric():
    msgs = rollout_messages("What is 2 + 3?", [], [], "numeric")
    user = msgs[1]["content"]
    assert user.startswith("What is 2 + 3?\n\n") and "Answer: <number>" in user
    with pytest.raises(ValueError, match="answer_type"):
        rollout_messages(Q, LABELS, CHOICES, "essay")


@pytest.mark.parametrize("answer_type, labels, choices", [("mcq", LABELS, CHOICES), ("numeric", [], [])])
def test_teacher_without_context_equals_student(answer_type, labels, choices):
    assert teacher_messages(Q, labels, choices, answer_type, None, None) == rollout_messages(Q, labels, choices, answer_type)
    assert teacher_messages(Q, labels, choices, answer_type, "", "") == rollout_messages(Q, labels, choices, answer_type)


@pytest.mark.parametrize(
    "solution, feedback, has_s, has_f",
    [
        ("Electrons carry negative charge. Answer: B", "Concept: charge. Check the sign.", True, True),
        ("Electrons carry negative charge. Answer: B", None, True, False),
        (None, "Concept: charge. Check the sign.", False, True),
    ],
)
def test_teacher_messages_order_and_content(solution, feedback, has_s, has_f):
    msgs = teacher_messages(Q, LABELS, CHOICES, "mcq", solution, feedback)
    student = rollout_messages(Q, LABELS, CHOICES, "mcq")
    assert msgs[0] == student[0]  # same system prompt
    user = msgs[1]["content"]
    assert user.startswith(Q + "\nA) proton\nB) electron\nC) neutron\n\n")
    assert (SOLUTION_HEADER in user) is has_s and (FEEDBACK_HEADER in user) is has_f
    if has_s:
        assert solution in user
    if has_f:
        assert feedback in user
    if has_s and has_f:
        assert user.index(SOLUTION_HEADER) < user.index(FEEDBACK_HEADER)
    # the instruction to answer comes last, identical to the student's instruction
    instruction = student[1]["content"].split("\n\n")[-1]
    assert user.endswith(instruction)
    assert user.index(instruction) > max(user.find(SOLUTION_HEADER), user.find(FEEDBACK_HEADER))


S, F = "a correct solution", "kept feedback"


@pytest.mark.parametrize(
    "mode, solution, feedback, expected",
    [
        ("s+f", S, F, (S, F, "s+f")),
        ("s+f", None, F, (None, F, "f")),  # no correct sibling, kept feedback
        ("s+f", S, None, (S, None, "s")),  # feedback discarded or tutor silent
        ("s+f", None, None, (None, None, "none")),  # teacher = student: skipped
        ("s+f", "  ", F, (None, F, "f")),  # blank counts as absent
        ("s", S, F, (S, None, "s")),
        ("s", None, F, (None, None, "none")),
        ("s", S, None, (S, None, "s")),
        ("f", S, F, (None, F, "f")),
        ("f", S, None, (None, None, "none")),
        ("f", None, F, (None, F, "f")),
        ("f", None, "", (None, None, "none")),
    ],
)
def test_compose_teacher_inputs(mode, solution, feedback, expected):
    assert compose_teacher_inputs(mode, solution, feedback) == expected


def test_compose_teacher_inputs_rejects_unknown_mode():
    with pytest.raises(ValueError, match="context mode"):
        compose_teacher_inputs("sf", S, F)


@pytest.mark.parametrize("mode", ["s+f", "s", "f"])
def test_teacher_context_without_feedback_is_the_real_context_minus_f(mode):
    real = teacher_context(mode, Q, LABELS, CHOICES, "mcq", "Electrons are negative. Answer: B", "Think about charge.")
    base = teacher_context(mode, Q, LABELS, CHOICES, "mcq", "Electrons are negative. Answer: B", None)
    assert real.messages == teacher_messages(Q, LABELS, CHOICES, "mcq", real.solution, real.feedback)
    assert base.feedback is None and base.solution == real.solution
    if mode == "f":
        # the teacher never saw s: without f it sees just the question, which is the student context
        assert base.used == "none" and base.messages == rollout_messages(Q, LABELS, CHOICES, "mcq")
        assert SOLUTION_HEADER not in real.messages[1]["content"]
    else:
        assert base.used == "s" and SOLUTION_HEADER in base.messages[1]["content"]
        assert FEEDBACK_HEADER not in base.messages[1]["content"]
