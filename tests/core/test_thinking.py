"""Thinking models: the chat template's thinking switch reaches every prompt a student renders
(``StudentConfig.chat_template_kwargs``), and ``<think>`` blocks stay out of the sibling s, of what
the tutor reads and of answer extraction (``opcod_core.thinking``)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
from types import SimpleNamespace

import pytest

from opcod_core.anchoring import TutorTemplate, render_tutor_messages
from opcod_core.config import preset
from opcod_core.data.answers import is_correct
from opcod_core.data.types import Item
from opcod_core.models import TINY_CHAT_TEMPLATE, build_tiny_tokenizer, render_prompt
from opcod_core.thinking import strip_think

# The tiny template with Qwen3's switch: the generation prompt opens the assistant turn with an empty
# think block when thinking is off, and with an open one otherwise (Qwen3 itself lets the model open it).
THINKING_TEMPLATE = TINY_CHAT_TEMPLATE.replace(
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}",
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}")
assert THINKING_TEMPLATE != TINY_CHAT_TEMPLATE

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the symbol of iron?"}]
ITEM = Item(id="q1", domain="chemistry", question="What is the chemical symbol of iron?",
            choices=("Fe", "Ir", "In", "I"), labels=("A", "B", "C", "D"), gold="A")


@pytest.fixture(scope="module")
def thinking_tok():
    tok = build_tiny_tokenizer(["What is the symbol of iron? Answer: A", "<think> reasoning </think>", "Be brief."] * 4,
                               vocab_size=300)
    tok.chat_template = THINKING_TEMPLATE
    return tok


# ------------------------------------------------------------------ strip_think

@pytest.mark.parametrize("text", [
    "", "Answer: B", "  The symbol of iron is Fe.\nAnswer: A  ", "I think it is A. Answer: A",
    "<concept>iron</concept> Recall the table.", "a < b and c > d; think about it",
])
def test_text_without_think_tags_is_unchanged(text):
    assert strip_think(text) == text


@pytest.mark.parametrize("text, expected", [
    ("<think>It could be B. Answer: B</think>\n\nThe symbol of iron is Fe. Answer: A",
     "The symbol of iron is Fe. Answer: A"),
    ("<think>\n\n</think>\n\nAnswer: A", "Answer: A"),                         # empty block (thinking off)
    ("<think></think>Answer: A", "Answer: A"),
    ("Fe. Answer: A\n<think>or maybe B", "Fe. Answer: A\n"),                   # unterminated at the end
    ("<think>Answer: B", ""),                                                   # never closed: all reasoning
    ("weighing B and A. Answer: B</think>\n\nAnswer: A", "Answer: A"),          # block opened by the prompt
    ("<think>one</think> Fe is iron. <think>two\n</think>Answer: A", "Fe is iron. Answer: A"),
])
def test_think_blocks_are_removed(text, expected):
    assert strip_think(text) == expected
    assert "<think>" not in strip_think(text) and "</think>" not in strip_think(text)


# ------------------------------------------------------------------ answers

@pytest.mark.parametrize("text, extracted, correct", [
    ("<think>The answer is B.</think>\nAnswer: A", "A", True),
    ("<think>The answer is A.</think>\nAnswer: B", "B", False),     # the committed answer counts
    ("<think>Fe, so Answer: A", None, False),                        # an answer only inside <think> never counts
    ("<think>The answer is A.</think>", None, False),
    ("Answer: A", "A", True),
])
def test_answers_inside_think_do_not_count(text, extracted, correct):
    assert is_correct(ITEM, text) == (extracted, correct)


# ------------------------------------------------------------------ tutor and sibling s

def test_tutor_reads_the_attempt_without_its_reasoning():
    template = TutorTemplate()
    messages, _ = render_tutor_messages(template, ITEM.question, "A) Fe", "<think>secret musing</think>\nAnswer: A")
    user = messages[-1]["content"]
    assert "secret musing" not in user and "<think>" not in user and "Answer: A" in user
    plain, _ = render_tutor_messages(template, ITEM.question, "A) Fe", "Fe is iron. Answer: A")
    assert "Fe is iron. Answer: A" in plain[-1]["content"]


def test_sibling_s_is_the_answer_without_the_reasoning():
    from opcod_core.step import Row, choose_siblings

    texts = ["<think>long musing one</think>\nFe is iron. Answer: A", "<think>musing two</think>\nAnswer: A"]
    rows = [Row(ITEM, 0, k, [1], [2, 3], t, *is_correct(ITEM, t)) for k, t in enumerate(texts)]
    assert all(r.correct for r in rows)
    choose_siblings(SimpleNamespace(config=preset("tiny"), global_step=0), rows)  # context mode s+f
    assert rows[0].s_index == 1 and rows[0].s_text == "Answer: A"
    assert rows[1].s_index == 0 and rows[1].s_text == "Fe is iron. Answer: A"


# ------------------------------------------------------------------ chat template switch

def test_render_passes_the_template_kwargs(thinking_tok):
    on = thinking_tok.decode(render_prompt(thinking_tok, MESSAGES))
    off = thinking_tok.decode(render_prompt(thinking_tok, MESSAGES, chat_template_kwargs={"enable_thinking": False}))
    assert on.endswith("<|assistant|><think>\n")
    assert off.endswith("<|assistant|><think>\n\n</think>\n\n")
    explicit_on = render_prompt(thinking_tok, MESSAGES, chat_template_kwargs={"enable_thinking": True})
    assert thinking_tok.decode(explicit_on) == on
    # the prefill still follows the generation prompt
    prefilled = render_prompt(thinking_tok, MESSAGES, prefill="<concept>", chat_template_kwargs={"enable_thinking": False})
    assert thinking_tok.decode(prefilled) == off + "<concept>"
    # a template without the switch ignores the variable, and the plain format ignores all of them
    plain = copy.deepcopy(thinking_tok)
    plain.chat_template = None
    assert render_prompt(plain, MESSAGES, chat_template_kwargs={"enable_thinking": False}) == render_prompt(plain, MESSAGES)


def test_student_built_from_config_renders_with_its_template_kwargs(thinking_tok):
    """Every prompt of a student goes through ``TextOps.render``; the runtime built from the config
    carries the student's ``chat_template_kwargs`` (the paper preset: thinking off)."""
    from opcod_core.build import build_student
    from opcod_core.config import preset
    from opcod_core.data.types import SplitDataset

    assert [s.chat_template_kwargs for s in preset("paper").students] == [{"enable_thinking": False}] * 2
    assert [s.chat_template_kwargs for s in preset("tiny").students] == [{}, {}]
    cfg = preset("tiny", {"students": [{"warmup_sft_steps": 0, "chat_template_kwargs": {"enable_thinking": False}},
                                       {"warmup_sft_steps": 0}]})
    data = SplitDataset(splits={})
    off, default = build_student(0, cfg, data), build_student(1, cfg, data)
    assert off.chat_template_kwargs == {"enable_thinking": False} and default.chat_template_kwargs == {}
    for rt in (off, default):
        rt.tokenizer = thinking_tok
    assert off.decode(off.render(MESSAGES)).endswith("<think>\n\n</think>\n\n")
    assert default.decode(default.render(MESSAGES, prefill="<concept>")).endswith("<|assistant|><think>\n<concept>")


@pytest.mark.parametrize("bad, match", [
    ({"tokenize": True}, "chat_template_kwargs.tokenize: not allowed"),
    ({"not an identifier": 1}, "not allowed"),
    ({"enable_thinking": [False]}, "expected a string, number, boolean or null"),
])
def test_template_kwargs_are_validated(bad, match):
    from pydantic import ValidationError

    from opcod_core.config import preset

    with pytest.raises(ValidationError, match=match):
        preset("tiny", {"students": [{"chat_template_kwargs": bad}, {}]})
