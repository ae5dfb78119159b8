"""Hidden reasoning in model output: ``<think>...</think>`` blocks (Qwen3, DeepSeek-R1 and kin).

Why: thinking models write their reasoning inside ``<think>`` tags before the visible answer. Three
places must not take that reasoning for the answer:

* the sibling ``s`` put in the self-teacher context is "a correct solution", not the tutee's scratch
  work (a long think block would also crowd the teacher's context);
* the tutor comments on the attempt as a reader sees it (``anchoring.render_tutor_messages``);
* answer extraction (``data.answers.is_correct``): an answer that appears only inside ``<think>`` is
  a guess the model considered, not the one it committed to, so it never counts as correct. This
  also keeps the first two consistent: a correct rollout always has an answer outside its think
  block, so its stripped text (the ``s`` a teacher sees) still states that answer.

The token ids of a rollout are never changed: the think tokens are part of the policy and stay in
the distillation loss. Only the *text* shown to a reader (tutor, self-teacher context, answer
checker) is stripped. Text without think tags comes back unchanged, character for character.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<think>", "</think>"

# A closed block (empty ones included) and the whitespace after it.
_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
# An opened block the model never closed (cut off by the token limit or a stop string): all of it is reasoning.
_UNTERMINATED = re.compile(r"<think>.*\Z", re.DOTALL)


def strip_think(text: str) -> str:
    """``text`` without its reasoning. Removed, in this order:

    1. a leading part that ends with a ``</think>`` not preceded by any ``<think>``: templates that open
       the block in the prompt (``<think>\\n`` as part of the generation prompt) leave only the closing
       tag in the completion, so everything before it is reasoning;
    2. every closed ``<think>...</think>`` block, empty ones included, with the whitespace after it;
    3. an unterminated ``<think>...`` at the end.

    Text without think tags is returned unchanged (identity). Tags are matched exactly (lower case,
    no attributes), as the thinking templates write them."""
    if OPEN not in text and CLOSE not in text:
        return text
    close = text.find(CLOSE)
    opened = text.find(OPEN)
    if close >= 0 and (opened < 0 or close < opened):
        text = text[close + len(CLOSE):].lstrip()
    text = _BLOCK.sub("", text)
    return _UNTERMINATED.sub("", text)
