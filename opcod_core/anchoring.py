"""Anchored tutor feedback: the tutor prompt, the rule-based check and answer-leak scrubbing
(DESIGN section 2, step 5).

Why: free-form peer feedback from a small model is mostly noise, and feedback that states the final
answer turns distillation into copying. Anchoring asks the tutor for ONE technical concept taken from the
problem, marked ``<concept>...</concept>``, then a short critique that must not reveal the answer. A
rule-based check then sorts every feedback into exactly one category, and only ``kept`` feedback is used,
after sanitising. The categories are reported as they are, so a run shows honestly how much was thrown away.

Small models need scaffolding to produce the format at all: the template prefills the assistant turn with
``<concept>`` and stops at a blank line. Both are configurable (``TutorTemplate``); the parser always
receives the prefill plus the generated text (``raw_with_prefill``).

Classification rules, in order (first match wins):
1. ``empty``: the text is whitespace, or only whitespace and concept tags (e.g. just the prefill).
2. ``no_concept_tag``: no complete ``<concept>X</concept>`` pair (tags are case-insensitive). An
   *unclosed* tag is ``no_concept_tag`` too: we do not guess where the concept ends (a stop string or the
   token limit may have cut it, or the model ran on into its critique). With several pairs the first counts.
3. ``all_generic``: the concept has no word outside ``generic_words`` ("answer", "question", "science",
   articles, ...). An empty pair ``<concept> </concept>`` names nothing and lands here too.
4. ``no_match``: the concept (surrounding punctuation stripped) does not occur in the question text,
   compared case-insensitively with whitespace runs collapsed. The occurrence must start at a word start,
   so "ion" does not match inside "reaction", while plurals and suffixes ("enzyme" in "enzymes") still do.
5. ``kept``: everything else.

Sanitising (kept feedback only): the tags are removed and the concept kept inline,
``"Concept: X. <critique>"``; every statement of the final answer is replaced by ``[redacted]``:
- explicit answer statements for any choice label: "the answer is B", "Answer: (C)", "correct option is
  D", "choose A", "option B is correct", "(B) is the right answer"; and "the answer is <number>";
- the gold choice's full text, wherever it appears as whole words (case-insensitive, whitespace-flexible),
  when gold, choices and labels are known; for a numeric question (no choices) the gold number itself.
Labels match case-sensitively, so the lowercase article "a" is never a label. The uppercase letters that
are also English words ("A", "I") only count as a label when parenthesised/bracketed or followed by
punctuation or the end of the text: "choose A." is scrubbed, "choose A different route" is not.
Each scrub is a ``Redaction`` whose offsets point into the raw text (``raw[start:end] == original``).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Literal, Sequence

from opcod_core.thinking import strip_think
from opcod_core.vocabulary import ANCHORING_CATEGORIES

Category = Literal["kept", "no_match", "no_concept_tag", "empty", "all_generic"]
CATEGORIES: tuple[str, ...] = ANCHORING_CATEGORIES

REDACTED = "[redacted]"
TEMPLATE_PLACEHOLDERS: frozenset[str] = frozenset({"question", "choices", "rollout", "gold"})
REQUIRED_PLACEHOLDERS: frozenset[str] = frozenset({"question", "rollout"})

DEFAULT_GENERIC_WORDS: frozenset[str] = frozenset("""
a an the of to in on at for and or by with from as is are be this that these those it its
answer answers question questions problem problems solution solutions concept concepts option options
choice choices correct incorrect right wrong true false best final key main important basic general
science scientific chemistry physics biology knowledge understanding idea ideas topic fact facts
information term terms thing things step steps reasoning logic analysis method approach calculation
calculations result results value values student attempt given none all above below
""".split())


# ----------------------------------------------------------------------------------------------------
# Tutor prompt template
# ----------------------------------------------------------------------------------------------------

DEFAULT_TUTOR_SYSTEM = (
    "You are a science tutor. You review a student's attempt and never reveal the final answer."
)
DEFAULT_TUTOR_USER = (
    "Problem:\n{question}\n{choices}\n\n"
    "Student's attempt:\n{rollout}\n\n"
    "Name ONE technical concept from the problem that matters most, copied from the problem text, "
    "as <concept>...</concept>. Then critique the attempt in at most 2 sentences. "
    "Do not state the final answer or the correct option."
)


def _placeholders(template: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"TutorTemplate.user: malformed template ({exc}); write literal braces as {{{{ }}}}") from None
    names: set[str] = set()
    for _literal, field, _spec, _conv in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_PLACEHOLDERS:
            raise ValueError(
                f"TutorTemplate.user: unknown placeholder {{{field}}}; "
                f"allowed: {', '.join('{' + p + '}' for p in sorted(TEMPLATE_PLACEHOLDERS))}"
            )
        names.add(field)
    return names


@dataclass(frozen=True)
class TutorTemplate:
    """How the tutor is prompted. ``user`` is a ``str.format`` template over {question}, {choices},
    {rollout} and, only when ``show_gold`` is set, {gold}. The assistant turn is prefilled with
    ``prefill`` and generation stops at any of ``stop``."""

    system: str = DEFAULT_TUTOR_SYSTEM
    user: str = DEFAULT_TUTOR_USER
    prefill: str = "<concept>"
    stop: tuple[str, ...] = ("\n\n",)
    show_gold: bool = False

    def __post_init__(self) -> None:
        names = _placeholders(self.user)
        missing = REQUIRED_PLACEHOLDERS - names
        if missing:
            raise ValueError(
                f"TutorTemplate.user: missing placeholder(s) {', '.join('{' + m + '}' for m in sorted(missing))}"
            )
        if "gold" in names and not self.show_gold:
            raise ValueError("TutorTemplate.user: placeholder {gold} used but show_gold is False")
        if self.show_gold and "gold" not in names:
            raise ValueError("TutorTemplate.user: show_gold is True but the template has no {gold} placeholder")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("TutorTemplate.stop: expected a tuple of non-empty strings")


DEFAULT_TUTOR_TEMPLATE = TutorTemplate()


def render_tutor_messages(
    template: TutorTemplate,
    question: str,
    choices_text: str,
    rollout: str,
    gold: str | None = None,
) -> tuple[list[dict], str]:
    """Chat messages for the tutor and the assistant prefill to append after the generation prompt.

    The gold answer reaches the tutor only when ``template.show_gold`` is set (then it is required).
    The tutor sees the attempt without its hidden reasoning (``<think>`` blocks removed by
    ``opcod_core.thinking.strip_think``; text without think tags is shown unchanged)."""
    values = {"question": question, "choices": choices_text, "rollout": strip_think(rollout)}
    if template.show_gold:
        if gold is None:
            raise ValueError("render_tutor_messages: template.show_gold is True but no gold answer was given")
        values["gold"] = gold
    messages = []
    if template.system:
        messages.append({"role": "system", "content": template.system})
    messages.append({"role": "user", "content": template.user.format(**values)})
    return messages, template.prefill


# ----------------------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redaction:
    """One scrubbed span: ``raw[start:end] == original`` was replaced by ``replacement``."""

    start: int
    end: int
    original: str
    replacement: str
    rule: str

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "original": self.original,
                "replacement": self.replacement, "rule": self.rule}


@dataclass(frozen=True)
class FeedbackVerdict:
    raw: str
    concept: str | None
    category: Category
    sanitised: str | None
    redactions: tuple[Redaction, ...] = ()

    @property
    def kept(self) -> bool:
        return self.category == "kept"

    def to_dict(self) -> dict:
        return {"raw": self.raw, "concept": self.concept, "category": self.category,
                "sanitised": self.sanitised, "redactions": [r.to_dict() for r in self.redactions]}


_TAG_PAIR = re.compile(r"<concept>(.*?)</concept>", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(r"</?concept>", re.IGNORECASE)
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
_POSSESSIVE = re.compile(r"['\u2019]s$")
_EDGE_PUNCT = " \t\r\n\"'`.,;:!?()[]{}*_"
_SHOWN_STRIP = " \t\r\n\"'`.,;:!?*_"  # keeps brackets, so a redacted concept shows as "[redacted]"


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _concept_in_question(concept: str, question: str) -> bool:
    c, q = _norm(concept), _norm(question)
    if not c:
        return False
    start = q.find(c)
    while start != -1:
        if start == 0 or not (q[start - 1].isalnum() and c[0].isalnum()):
            return True
        start = q.find(c, start + 1)
    return False


# ----------------------------------------------------------------------------------------------------
# Leak scrubbing
# ----------------------------------------------------------------------------------------------------

_WORD_LETTERS = {"A", "I"}  # labels that are also English words: need parentheses or punctuation after


def _label_alt(label: str) -> str:
    """Regex for one label: parenthesised/bracketed, or bare with a safe right boundary."""
    esc = re.escape(label)
    bracketed = rf"\({esc}\)|\[{esc}\]"
    if label in _WORD_LETTERS:
        bare = rf"{esc}(?=[ \t]*(?:[.,;:!?)\]\n]|$))"
    else:
        bare = rf"{esc}(?![A-Za-z0-9])"
    left = r"(?<![A-Za-z0-9])"
    return rf"(?:{bracketed}|{left}{bare})"


def _leak_patterns(labels: Sequence[str]) -> list[tuple[str, re.Pattern]]:
    labels = sorted({lb for lb in labels if lb}, key=len, reverse=True)
    if not labels:
        return []
    lab = "(?:" + "|".join(_label_alt(lb) for lb in labels) + ")"
    noun = r"(?:answer|option|choice)"
    qualifier = r"(?:final|correct|right|best|true)"
    verb = r"(?:is|would\s+be|should\s+be|must\s+be|=|:)"
    stated = (
        rf"(?i:\b(?:the\s+)?(?:{qualifier}\s+)?{noun}\s*{verb}\s*(?:(?:option|choice|answer|letter)\s+)?)"
        + lab
    )
    choose = r"(?i:\b(?:choose|select|pick|go\s+with|opt\s+for|circle)\s+(?:(?:option|choice|answer|letter)\s+)?)" + lab
    label_is = (
        rf"(?:(?i:\b{noun}\s+)?){lab}"
        rf"(?i:\s+is\s+(?:the\s+|indeed\s+)?(?:correct|right|true|best)(?:\s+{noun})?\b)"
    )
    return [
        ("answer_statement", re.compile(stated)),
        ("choose_label", re.compile(choose)),
        ("label_is_correct", re.compile(label_is)),
    ]


_NUMERIC_STATED = re.compile(
    r"(?i:\b(?:the\s+)?(?:(?:final|correct|right)\s+)?answer\s*(?:is|=|:|should\s+be|would\s+be)\s*)"
    r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?"
)


def _text_pattern(text: str) -> re.Pattern | None:
    words = text.split()
    if not words:
        return None
    body = r"\s+".join(re.escape(w) for w in words)
    left = r"(?<![\w.])" if re.match(r"[\w.]", words[0]) else ""
    right = r"(?![\w])" if re.search(r"\w$", words[-1]) else ""
    if re.fullmatch(r"[-+]?[\d.,]+", text.strip()):
        right = r"(?![\w]|\.\d)"  # "3" must not match inside "3.5"
    return re.compile(left + body + right, re.IGNORECASE)


def _gold_text(gold: str | None, choices: Sequence[str] | None, labels: Sequence[str] | None) -> tuple[str | None, str]:
    if gold is None or not str(gold).strip():
        return None, ""
    if choices:
        if labels is None:
            labels = [chr(ord("A") + i) for i in range(len(choices))]
        if gold in labels:
            idx = list(labels).index(gold)
            if idx < len(choices):
                return choices[idx], "gold_choice_text"
        return None, ""
    return str(gold), "gold_value"


def find_leaks(
    text: str,
    *,
    gold: str | None,
    choices: Sequence[str] | None,
    labels: Sequence[str] | None,
    offset: int = 0,
) -> list[Redaction]:
    """Non-overlapping answer statements in ``text`` (offsets shifted by ``offset``), sorted by start.

    Overlaps are resolved by earliest start, then longest span."""
    eff_labels = list(labels) if labels else [chr(ord("A") + i) for i in range(len(choices) if choices else 10)]
    patterns = _leak_patterns(eff_labels)
    patterns.append(("numeric_answer_statement", _NUMERIC_STATED))
    gtext, grule = _gold_text(gold, choices, labels)
    if gtext is not None:
        pat = _text_pattern(gtext)
        if pat is not None:
            patterns.append((grule, pat))
    found: list[tuple[int, int, str]] = []
    for rule, pat in patterns:
        for m in pat.finditer(text):
            if m.end() > m.start():
                found.append((m.start(), m.end(), rule))
    found.sort(key=lambda t: (t[0], -(t[1] - t[0])))
    out: list[Redaction] = []
    last_end = -1
    for start, end, rule in found:
        if start < last_end:
            continue
        out.append(Redaction(start + offset, end + offset, text[start:end], REDACTED, rule))
        last_end = end
    return out


def _apply(text: str, redactions: Sequence[Redaction], offset: int) -> str:
    parts, pos = [], 0
    for r in redactions:
        parts.append(text[pos:r.start - offset])
        parts.append(r.replacement)
        pos = r.end - offset
    parts.append(text[pos:])
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------


def classify_feedback(
    raw_with_prefill: str,
    question: str,
    *,
    gold: str | None,
    choices: Sequence[str] | None,
    labels: Sequence[str] | None,
    generic_words: frozenset[str] = DEFAULT_GENERIC_WORDS,
) -> FeedbackVerdict:
    """Sort one tutor feedback into a category and sanitise it if kept (rules in the module docstring)."""
    raw = raw_with_prefill or ""
    if not _ANY_TAG.sub("", raw).strip():
        return FeedbackVerdict(raw, None, "empty", None, ())
    m = _TAG_PAIR.search(raw)
    if m is None:
        return FeedbackVerdict(raw, None, "no_concept_tag", None, ())
    concept = m.group(1).strip(_EDGE_PUNCT)
    concept = " ".join(concept.split())
    words = [_POSSESSIVE.sub("", w.casefold()) for w in _WORD.findall(concept)]
    generic = {w.casefold() for w in generic_words}
    if not words or all(w in generic for w in words):
        return FeedbackVerdict(raw, concept, "all_generic", None, ())
    if not _concept_in_question(concept, question):
        return FeedbackVerdict(raw, concept, "no_match", None, ())

    # Kept: scrub each segment separately so no redaction straddles a tag.
    segments = [(0, m.start()), (m.start(1), m.end(1)), (m.end(), len(raw))]
    redactions: list[Redaction] = []
    pieces: list[str] = []
    for a, b in segments:
        seg = raw[a:b]
        reds = find_leaks(seg, gold=gold, choices=choices, labels=labels, offset=a)
        redactions.extend(reds)
        pieces.append(_apply(seg, reds, a))
    before, concept_part, after = (" ".join(_ANY_TAG.sub("", p).split()) for p in pieces)
    concept_shown = concept_part.strip(_SHOWN_STRIP) or concept
    sanitised = " ".join(x for x in (before, f"Concept: {concept_shown}.", after) if x)
    return FeedbackVerdict(raw, concept, "kept", sanitised, tuple(redactions))
