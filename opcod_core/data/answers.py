"""Answer verification: which choice (or number) does a model's free text commit to?

Both the reward (correct / incorrect rollouts, the choice of a correct sibling ``s``) and every
reported accuracy depend on this, so it errs on the side of *not* extracting: a wrong extraction
silently corrupts training, a missing one only marks a rollout incorrect.

Multiple choice, in order of trust:

1. **Explicit statements** ("Answer: C", "the answer is (b)", "the correct option is C",
   "**Answer:** C", "\\boxed{C}", "<answer>C</answer>", "I choose C", "C is correct"). The *last*
   one wins, since models often reconsider. A statement naming two labels ("A or B") or a letter that
   is not a label makes the result None rather than falling back to an earlier statement.
2. **A bare label at the end** ("... so C.", "(C)", a last line that is just "C"), or a single
   "C) text" line when no other label is written that way.

A letter counts as a label only when it stands alone. "A" (and any lower-case letter) followed by a
lower-case word is read as ordinary English ("A force is ..."), unless the word is a connective
("A because ...", "b is correct") or the words that follow are that choice's own text. Lower-case
labels are accepted when unambiguous: in brackets, or followed by punctuation or the end of text.

Numbers: the first number after the last "answer" cue, else the last number in the text. Thousands
commas, signs (also the Unicode minus), ``6.02e23``, ``6.02 x 10^23`` / ``6.02×10⁻³``, percentages
and units after the number are handled; digits glued to letters or carets (CO2, m/s^2) are not numbers.

Hidden reasoning: ``is_correct`` reads only the text outside ``<think>...</think>`` blocks
(``opcod_core.thinking.strip_think``). An answer written only inside the reasoning of a thinking model
is one it considered, not one it committed to, so it never counts; text without think tags is read as is.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from ..thinking import strip_think
from .types import Item

CONNECTIVES = {
    "because", "since", "as", "is", "was", "which", "with", "for", "this", "that", "it", "here",
    "per", "according", "due", "seems", "should", "would", "must", "being", "appears", "from",
}

_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")

_ANSWER_CUE = (
    r"(?:\b(?:final|correct|right|best|my)\s+)?\banswers?(?:\s+to\s+(?:this|the)\s+question)?"
    r"\s*(?:is|would\s+be|should\s+be|must\s+be|will\s+be|=|:|：|-|–|—|→|=>)?\s*:?\s*(?:option|choice|letter)?\s*:?"
)
_OPTION_CUE = (r"\b(?:correct|right|best|final)\s+(?:option|choice|letter)\s*"
               r"(?:is|would\s+be|should\s+be|must\s+be|=|:|-)?\s*:?")
_VERB_CUE = r"\b(?:choose|select|pick|go\s+with)\s+(?:option\s+|choice\s+)?"
_CUES = re.compile(f"{_ANSWER_CUE}|{_OPTION_CUE}|{_VERB_CUE}", re.IGNORECASE)

_OPEN = {"(": ")", "[": "]", "{": "}"}


def _clean(text: str) -> str:
    t = text.replace("\r\n", "\n")
    for _ in range(2):
        t = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", t)
    t = re.sub(r"\\boxed\{([^{}]*)\}", r" answer: \1 \n", t)
    t = re.sub(r"<answer>\s*", " answer: ", t, flags=re.IGNORECASE)
    t = re.sub(r"\s*</answer>", " \n", t, flags=re.IGNORECASE)
    t = re.sub(r"\*\*|__|\*|`|\$", "", t)
    return t


def _label_lookup(labels: Sequence[str]) -> dict[str, str]:
    """Maps the text a model might write to a label; letters fold case only when that is unambiguous."""
    exact = {lab: lab for lab in labels}
    folded: dict[str, list[str]] = {}
    for lab in labels:
        folded.setdefault(lab.lower(), []).append(lab)
    for low, labs in folded.items():
        if len(labs) == 1 and low not in exact:
            exact[low] = labs[0]
        up = low.upper()
        if len(labs) == 1 and up not in exact:
            exact[up] = labs[0]
    return exact


def _parse_label(text: str, pos: int, labels: Sequence[str], choices: Sequence[str] | None):
    """Reads a label at ``pos``. Returns ("ok", label, end) | ("none", None, end) when the slot holds
    something label-like that is not one valid label | None when nothing label-like is there."""
    lookup = _label_lookup(labels)
    m = re.compile(r"[ \t]*\n?[ \t]*").match(text, pos)
    p = m.end() if m else pos
    opened = None
    if p < len(text) and text[p] in _OPEN:
        opened = text[p]
        p += 1
    tok = re.compile(r"[A-Za-z0-9]+").match(text, p)
    if not tok:
        return None
    word = tok.group(0)
    end = tok.end()
    single_letter = len(word) == 1 and word.isalpha()
    if opened:
        close = re.compile(r"\s*" + re.escape(_OPEN[opened])).match(text, end)
        if not close:
            return None
        end = close.end()
        if word not in lookup:
            return ("none", None, end) if single_letter else None
        label = lookup[word]
    else:
        if word not in lookup:
            if single_letter and word.isupper() and _delimited(text, end):
                return ("none", None, end)
            return None
        label = lookup[word]
        if single_letter and not _delimited(text, end):
            nxt = re.compile(r"\s+([A-Za-z]+)").match(text, end)
            if nxt is None:
                after = re.compile(r"\s*([-–—=:(])").match(text, end)
                if after is None and not re.compile(r"\s+[0-9]").match(text, end):
                    return None
            else:
                follower = nxt.group(1)
                article_like = word.islower() or word in ("A", "I")
                if article_like and follower[0].islower() and follower.lower() not in CONNECTIVES \
                        and follower.lower() not in ("or", "and") \
                        and not _restates_choice(text, nxt.start(1), label, labels, choices):
                    return None
    # "A or B", "A, B", "A and C": two labels in one statement
    more = re.compile(r"\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?\s*([A-Za-z0-9]+)\b").match(text, end)
    if more and more.group(1) in lookup and lookup[more.group(1)] != label and (
            len(more.group(1)) > 1 or more.group(1).isupper() or not more.group(1).isalpha()
            or re.compile(r"\s*[)\].,;:!?]|\s*$").match(text, more.end())):
        return ("none", None, more.end())
    return ("ok", label, end)


def _delimited(text: str, end: int) -> bool:
    return re.compile(r"\s*(?:$|[.,;:!?)\]}]|\n)").match(text, end) is not None


def _restates_choice(text: str, pos: int, label: str, labels: Sequence[str], choices: Sequence[str] | None) -> bool:
    if not choices or label not in labels:
        return False
    choice = choices[list(labels).index(label)].strip().lower()
    return bool(choice) and text[pos:pos + len(choice)].lower() == choice


def _explicit(text: str, labels: Sequence[str], choices: Sequence[str] | None) -> list[tuple[int, str | None]]:
    found: list[tuple[int, str | None]] = []
    for m in _CUES.finditer(text):
        got = _parse_label(text, m.end(), labels, choices)
        if got is not None:
            found.append((m.start(), got[1]))
    # "C is correct", "(B) is the right answer"
    lab_alt = "|".join(re.escape(x) for x in sorted(_label_lookup(labels), key=len, reverse=True))
    rev = re.compile(rf"(?:(?<![\w'])|(?<=\())[(\[]?({lab_alt})[)\]]?\s+is\s+(?:the\s+)?(?:correct|right)\b"
                     r"(?:\s+(?:answer|option|choice))?")
    lookup = _label_lookup(labels)
    for m in rev.finditer(text):
        word = m.group(1)
        if len(word) == 1 and word.isalpha() and word.islower() and not m.group(0).startswith(("(", "[")):
            continue
        found.append((m.start(), lookup[word]))
    found.sort(key=lambda x: x[0])
    return found


def _trailing(text: str, labels: Sequence[str], choices: Sequence[str] | None) -> str | None:
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    if not lines:
        return None
    lookup = _label_lookup(labels)
    last = lines[-1]
    alone = re.fullmatch(r"[\W_]*?[(\[]?\s*([A-Za-z0-9]+)\s*[)\]]?[.!]?", last)
    if alone and alone.group(1) in lookup:
        return lookup[alone.group(1)]
    end = re.search(r"(?:^|[\s:,])(\(([A-Za-z0-9]+)\)|([A-Za-z0-9]+)\))\s*[.!]?$", last)
    if end:
        word = end.group(2) or end.group(3)
        if word in lookup:
            return lookup[word]
    end = re.search(r"(?:^|[\s:,])([A-Z0-9]+)\s*[.!]?$", last)
    if end and end.group(1) in labels:
        return end.group(1)
    starts = set()
    for ln in lines:
        st = re.match(r"[(\[]?([A-Za-z0-9]+)[)\].:]\s+\S", ln) or re.search(r":\s*\(?([A-Z0-9]+)\)\s+\S", ln)
        if st and st.group(1) in labels:
            starts.add(st.group(1))
    if len(starts) == 1:
        return starts.pop()
    return None


def extract_choice(text: str | None, labels: Sequence[str] = ("A", "B", "C", "D"),
                   choices: Sequence[str] | None = None) -> str | None:
    """The label ``text`` commits to, or None. ``choices`` (the option texts, aligned with
    ``labels``) lets "A sodium ion" count as a label when "sodium ion" is choice A's text."""
    if not text or not labels:
        return None
    t = _clean(text)
    found = _explicit(t, labels, choices)
    if found:
        return found[-1][1]
    return _trailing(t, labels, choices)


# ---------------------------------------------------------------------------------------------- numbers

_MANTISSA = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_NUMBER = re.compile(
    rf"(?<![\w.^_/])(?:"
    rf"(?P<pow>10)\s*\^\s*\{{?\s*(?P<powexp>[-+]?\d+)\s*\}}?"
    rf"|(?P<num>{_MANTISSA})(?:[eE](?P<e>[-+]?\d+)"
    rf"|\s*(?:[xX*·]|\\times|\\cdot)\s*10\s*(?:\^|\*\*)\s*\{{?\s*(?P<x>[-+]?\d+)\s*\}}?"
    rf"|\s*/\s*(?P<den>\d+)(?![\d.]))?"
    rf")")
_NUM_CUE = re.compile(r"\banswer(?:\s+is)?\s*(?:[:=≈]|is|\bof\b)?|=\s*(?=[-+.\d])", re.IGNORECASE)


def _normalise_numbers(text: str) -> str:
    t = text.replace("−", "-").replace("–", "-").replace("×", "x").replace("\u2009", "").replace("\u202f", "")
    t = re.sub(r"10\s*([⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)", lambda m: "10^" + m.group(1).translate(_SUPERSCRIPT), t)
    return t


def _value(m: re.Match) -> float | None:
    try:
        if m.group("pow"):
            return 10.0 ** int(m.group("powexp"))
        mantissa = m.group("num").replace(",", "")
        exponent = m.group("e") if m.group("e") is not None else m.group("x")
        if exponent is not None:
            return float(f"{mantissa}e{int(exponent)}")
        x = float(mantissa)
        if m.group("den") is not None:
            den = int(m.group("den"))
            return x / den if den else None
        return x
    except (OverflowError, ValueError):
        return None


def extract_number(text: str | None) -> float | None:
    """The number ``text`` commits to, or None."""
    if not text:
        return None
    t = _normalise_numbers(_clean(text))
    numbers = [(m.start(), v) for m in _NUMBER.finditer(t) if (v := _value(m)) is not None and math.isfinite(v)]
    if not numbers:
        return None
    cues = [m.end() for m in _NUM_CUE.finditer(t) if m.group(0).lower().startswith("answer")]
    for cue_end in reversed(cues):
        after = [v for start, v in numbers if start >= cue_end]
        if after:
            return after[0]
    return numbers[-1][1]


def is_correct(item: Item, text: str | None, rel_tol: float = 1e-2, abs_tol: float = 1e-6) -> tuple[str | None, bool]:
    """``(extracted, correct)``: the extracted label or number (as text) and whether it matches gold.
    Only the text outside ``<think>`` blocks is read (see the module docstring)."""
    if text is not None:
        text = strip_think(text)
    if item.answer_type == "numeric":
        x = extract_number(text)
        if x is None:
            return None, False
        gold = float(str(item.gold).replace(",", ""))
        return format(x, ".10g"), math.isclose(x, gold, rel_tol=rel_tol, abs_tol=abs_tol)
    label = extract_choice(text, item.labels, item.choices)
    return label, label is not None and label == item.gold
