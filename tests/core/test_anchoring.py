"""Anchoring: tutor template, the five categories, answer-leak scrubbing with exact offsets."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opcod_core.anchoring import (
    DEFAULT_TUTOR_TEMPLATE,
    REDACTED,
    FeedbackVerdict,
    Redaction,
    TutorTemplate,
    classify_feedback,
    find_leaks,
    render_tutor_messages,
)

Q = "A strong acid such as HCl is dissolved in water. What is the pH of a 0.01 M HCl solution?"
CHOICES = ["1", "2", "7", "12"]
LABELS = ["A", "B", "C", "D"]

Q2 = "Which enzymes catalyse the hydrolysis of starch during digestion?"
CHOICES2 = ["Lipase", "Amylase", "Pepsin", "Trypsin"]


def classify(raw, question=Q, gold="B", choices=CHOICES, labels=LABELS, **kw):
    return classify_feedback(raw, question, gold=gold, choices=choices, labels=labels, **kw)


# --------------------------------------------------------------------------------------------------
# Template
# --------------------------------------------------------------------------------------------------


def test_default_template_renders_and_hides_gold():
    msgs, prefill = render_tutor_messages(DEFAULT_TUTOR_TEMPLATE, Q, "A) 1\nB) 2", "I think 7. Answer: C", gold="B")
    assert prefill == "<concept>"
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert Q in user and "A) 1\nB) 2" in user and "I think 7. Answer: C" in user
    assert "<concept>" in user and "ONE" in user and "2 sentences" in user
    assert "answer" in user.lower()  # tells the tutor not to reveal it
    assert "gold" not in user.lower()
    assert DEFAULT_TUTOR_TEMPLATE.stop == ("\n\n",) and not DEFAULT_TUTOR_TEMPLATE.show_gold


def test_values_with_braces_are_not_reformatted():
    msgs, _ = render_tutor_messages(DEFAULT_TUTOR_TEMPLATE, "Compute {x} for set {1,2}", "", "use {rollout}")
    assert "Compute {x} for set {1,2}" in msgs[1]["content"] and "use {rollout}" in msgs[1]["content"]


def test_show_gold_template():
    t = TutorTemplate(system="", user="Q: {question}\n{choices}\nAttempt: {rollout}\nGold: {gold}", show_gold=True)
    msgs, _ = render_tutor_messages(t, "q?", "A) x", "r", gold="A")
    assert msgs == [{"role": "user", "content": "Q: q?\nA) x\nAttempt: r\nGold: A"}]
    with pytest.raises(ValueError, match="no gold"):
        render_tutor_messages(t, "q?", "A) x", "r")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(user="{question} {rollout} {answer}"), r"unknown placeholder \{answer\}"),
        (dict(user="{question} {rollout} {0}"), r"unknown placeholder \{0\}"),
        (dict(user="{question} {rollout} {question.upper}"), r"unknown placeholder \{question.upper\}"),
        (dict(user="{question} {rollout} {"), "malformed"),
        (dict(user="{question} {choices}"), r"missing placeholder\(s\) \{rollout\}"),
        (dict(user="{question} {rollout} {gold}"), "show_gold is False"),
        (dict(user="{question} {rollout}", show_gold=True), "no {gold} placeholder"),
        (dict(stop="\n\n"), "stop"),
        (dict(stop=("",)), "stop"),
    ],
)
def test_template_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TutorTemplate(**kwargs)


def test_literal_braces_allowed():
    t = TutorTemplate(user="{question} {rollout} Use {{braces}}")
    msgs, _ = render_tutor_messages(t, "q", "", "r")
    assert msgs[-1]["content"] == "q r Use {braces}"


# --------------------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, category, concept",
    [
        # empty
        ("", "empty", None),
        ("   \n\t ", "empty", None),
        ("<concept>", "empty", None),  # only the prefill came back
        ("<concept></concept>\n", "empty", None),
        # no_concept_tag
        ("The student forgot the logarithm.", "no_concept_tag", None),
        ("<concept>pH", "no_concept_tag", None),  # unclosed: we do not guess where it ends
        ("<concept>pH. The student forgot the log.", "no_concept_tag", None),
        ("pH</concept> missing opening tag", "no_concept_tag", None),
        ("<concept pH> broken tag", "no_concept_tag", None),
        # all_generic
        ("<concept>answer</concept> Think again.", "all_generic", "answer"),
        ("<concept>The correct answer</concept> Check it.", "all_generic", "The correct answer"),
        ("<concept>science</concept>", "all_generic", "science"),
        ("<concept>  </concept> Some critique.", "all_generic", ""),
        ("<concept>...</concept> Some critique.", "all_generic", ""),
        ("<concept>the question's key idea</concept>", "all_generic", "the question's key idea"),
        # no_match
        ("<concept>logarithm</concept> Use the log.", "no_match", "logarithm"),
        ("<concept>ion</concept> Count ions.", "no_match", "ion"),  # not inside "dissolved"/"solution"
        ("<concept>weak acid</concept> x", "no_match", "weak acid"),
        ("<concept>strong base</concept> x", "no_match", "strong base"),
        # kept
        ("<concept>pH</concept> The student forgot the log.", "kept", "pH"),
        ("<concept>PH</concept> Case does not matter.", "kept", "PH"),
        ("<concept>strong   acid</concept> Whitespace is normalised.", "kept", "strong acid"),
        ("<concept>Strong\nacid</concept> x", "kept", "Strong acid"),
        ("<CONCEPT>HCl</CONCEPT> Tags are case-insensitive.", "kept", "HCl"),
        ('<concept>"pH".</concept> Surrounding punctuation stripped.', "kept", "pH"),
        ("<concept>the pH</concept> An article plus a real term.", "kept", "the pH"),
        ("<concept>pH</concept> first <concept>water</concept> second", "kept", "pH"),
    ],
)
def test_categories(raw, category, concept):
    v = classify(raw)
    assert v.category == category, v
    assert v.concept == concept
    assert v.raw == raw
    if category == "kept":
        assert v.sanitised is not None and v.sanitised.startswith("Concept: ")
        assert "<concept>" not in v.sanitised.lower() and "</concept>" not in v.sanitised.lower()
    else:
        assert v.sanitised is None and v.redactions == ()


@pytest.mark.parametrize(
    "raw, category",
    [
        ("<concept>enzyme</concept> plural in question still matches", "kept"),
        ("<concept>hydrolysis of starch</concept> x", "kept"),
        ("<concept>starch digestion</concept> x", "no_match"),
        ("<concept>lysis</concept> not at a word start", "no_match"),
    ],
)
def test_match_is_word_start_anchored(raw, category):
    assert classify(raw, question=Q2, gold="B", choices=CHOICES2).category == category


def test_custom_generic_words():
    raw = "<concept>pH</concept> x"
    assert classify(raw).category == "kept"
    assert classify(raw, generic_words=frozenset({"ph"})).category == "all_generic"


# --------------------------------------------------------------------------------------------------
# Sanitising and leak scrubbing
# --------------------------------------------------------------------------------------------------


def assert_offsets(v: FeedbackVerdict):
    last = -1
    for r in v.redactions:
        assert v.raw[r.start:r.end] == r.original
        assert r.replacement == REDACTED
        assert r.start >= last
        last = r.end


@pytest.mark.parametrize(
    "raw, gold, originals, sanitised",
    [
        (
            "<concept>pH</concept> The student forgot the log.",
            "B", [], "Concept: pH. The student forgot the log.",
        ),
        (
            "<concept>pH</concept> The answer is B. You forgot the log.",
            "B", ["The answer is B"], "Concept: pH. [redacted]. You forgot the log.",
        ),
        (
            "<concept>pH</concept> Answer: (C)",
            "B", ["Answer: (C)"], "Concept: pH. [redacted]",
        ),
        (
            "<concept>pH</concept> The correct option is D, not A.",
            "B", ["The correct option is D"], "Concept: pH. [redacted], not A.",
        ),
        (
            "<concept>pH</concept> You should choose A.",
            "B", ["choose A"], "Concept: pH. You should [redacted].",
        ),
        (
            "<concept>pH</concept> Select option (B) instead.",
            "B", ["Select option (B)"], "Concept: pH. [redacted] instead.",
        ),
        (
            "<concept>pH</concept> Option B is correct.",
            "B", ["Option B is correct"], "Concept: pH. [redacted].",
        ),
        (
            "<concept>pH</concept> Clearly (B) is the right answer.",
            "B", ["(B) is the right answer"], "Concept: pH. Clearly [redacted].",
        ),
        (
            "<concept>pH</concept> The final answer should be [B].",
            "B", ["The final answer should be [B]"], "Concept: pH. [redacted].",
        ),
        (
            "<concept>pH</concept> Taking -log gives 2, so the answer is B.",
            "B", ["2", "the answer is B"], "Concept: pH. Taking -log gives [redacted], so [redacted].",
        ),
        (
            "<concept>pH</concept> A strong acid: the answer is A.",  # article kept, label A scrubbed
            "B", ["the answer is A"], "Concept: pH. A strong acid: [redacted].",
        ),
        (
            "<concept>pH</concept> Choose (A); a log helps.",
            "B", ["Choose (A)"], "Concept: pH. [redacted]; a log helps.",
        ),
        (
            "<concept>pH</concept> A pH of 2.5 or 12 is wrong.",  # gold text "2" not inside "2.5"; "12" is not gold
            "B", [], "Concept: pH. A pH of 2.5 or 12 is wrong.",
        ),
        (
            "<concept>pH</concept> The answer is 2.",  # numeric statement and gold text overlap: one span
            "B", ["The answer is 2"], "Concept: pH. [redacted].",
        ),
    ],
)
def test_scrubbing(raw, gold, originals, sanitised):
    v = classify(raw, gold=gold)
    assert v.category == "kept"
    assert [r.original for r in v.redactions] == originals
    assert v.sanitised == sanitised
    assert_offsets(v)


@pytest.mark.parametrize(
    "critique",
    [
        "A student often forgets the logarithm.",
        "A strong acid dissociates fully. A careful check helps.",
        "The answer is a value you get from the concentration.",
        "Choose a different approach and take the log.",
        "Consider a answer is A better approach maybe",  # "A" followed by a word: prose, not a label
        "I think you mixed up I and II in the sum.",
    ],
)
def test_article_a_not_scrubbed(critique):
    v = classify(f"<concept>pH</concept> {critique}", gold="A")
    assert v.category == "kept"
    # gold choice "1" does not appear in these critiques, so nothing at all is scrubbed
    assert v.redactions == ()
    assert v.sanitised == f"Concept: pH. {critique}"


@pytest.mark.parametrize(
    "raw, originals",
    [
        ("<concept>hydrolysis</concept> Amylase breaks it down.", ["Amylase"]),
        ("<concept>hydrolysis</concept> Salivary AMYLASE, not lipase.", ["AMYLASE"]),
        ("<concept>hydrolysis</concept> Think about amylases? No.", []),  # whole words only
        ("<concept>starch</concept> Lipase works on fats.", []),  # a wrong option is not a leak
    ],
)
def test_gold_choice_text_scrubbed(raw, originals):
    v = classify(raw, question=Q2, gold="B", choices=CHOICES2)
    assert v.category == "kept"
    assert [r.original for r in v.redactions] == originals
    assert all(r.rule == "gold_choice_text" for r in v.redactions)
    assert_offsets(v)


def test_multiword_gold_text_whitespace_flexible():
    q = "Which gas is produced when zinc reacts with dilute acid?"
    v = classify_feedback(
        "<concept>zinc</concept> You get hydrogen\n  gas here.", q,
        gold="C", choices=["oxygen gas", "carbon dioxide", "hydrogen gas"], labels=["A", "B", "C"],
    )
    assert [r.original for r in v.redactions] == ["hydrogen\n  gas"]
    assert v.sanitised == "Concept: zinc. You get [redacted] here."
    assert_offsets(v)


def test_concept_that_is_the_gold_text_is_redacted_in_sanitised():
    q = "Is the dissolution of NaOH exothermic or endothermic?"
    v = classify_feedback(
        "<concept>exothermic</concept> Heat is released.", q,
        gold="A", choices=["exothermic", "endothermic"], labels=["A", "B"],
    )
    assert v.category == "kept" and v.concept == "exothermic"
    assert v.sanitised == "Concept: [redacted]. Heat is released."
    assert v.redactions[0].start == len("<concept>") and v.redactions[0].original == "exothermic"
    assert_offsets(v)


def test_numeric_gold_scrubbed_without_choices():
    q = "A car travels 100 m in 20 s. What is its average speed in m/s?"
    v = classify_feedback("<concept>average speed</concept> Divide 100 by 20 to get 5.", q,
                          gold="5", choices=None, labels=None)
    assert [r.original for r in v.redactions] == ["5"]
    assert v.sanitised == "Concept: average speed. Divide 100 by 20 to get [redacted]."
    assert_offsets(v)
    v = classify_feedback("<concept>average speed</concept> The answer is 4.5 m/s.", q,
                          gold="5", choices=None, labels=None)
    assert [r.rule for r in v.redactions] == ["numeric_answer_statement"]
    assert v.redactions[0].original == "The answer is 4.5"


def test_unknown_gold_still_scrubs_letter_statements():
    v = classify("<concept>pH</concept> The answer is C.", gold=None, choices=None, labels=None)
    assert [r.original for r in v.redactions] == ["The answer is C"]
    assert_offsets(v)


def test_text_before_tag_and_extra_tags():
    raw = "Hmm. <concept>pH</concept> Also <concept>water</concept> matters."
    v = classify(raw)
    assert v.category == "kept"
    assert v.sanitised == "Hmm. Concept: pH. Also water matters."


def test_redactions_in_segments_offset_into_raw():
    raw = "Answer: B <concept>pH</concept> but choose D."
    v = classify(raw)
    assert [r.original for r in v.redactions] == ["Answer: B", "choose D"]
    assert_offsets(v)
    assert v.sanitised == "[redacted] Concept: pH. but [redacted]."


def test_to_dict_round_trips_through_json():
    v = classify("<concept>pH</concept> The answer is B.")
    d = v.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["category"] == "kept" and d["concept"] == "pH"
    assert d["redactions"] == [Redaction(22, 37, "The answer is B", REDACTED, "answer_statement").to_dict()]
    assert classify("").to_dict() == {"raw": "", "concept": None, "category": "empty", "sanitised": None, "redactions": []}


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

_alphabet = st.sampled_from(list("ABCDab (){}[].:,;!?\n") + ["answer is ", "choose ", "option ", " is correct", "2", "Amylase"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=40).map("".join))
def test_leak_offsets_always_point_at_raw(text):
    reds = find_leaks(text, gold="B", choices=CHOICES2, labels=LABELS)
    last = 0
    for r in reds:
        assert text[r.start:r.end] == r.original and r.end > r.start >= last
        last = r.end


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_classify_never_crashes_and_is_consistent(concept, critique):
    raw = f"<concept>{concept}</concept>{critique}"
    v = classify(raw)
    assert v.category in ("kept", "no_match", "no_concept_tag", "empty", "all_generic")
    assert (v.sanitised is not None) == (v.category == "kept")
    assert_offsets(v)
