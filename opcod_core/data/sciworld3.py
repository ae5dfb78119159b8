"""The science world, version 3 (data source ``sciworld3``): answers computed, not picked, and a wrong
fact table for incognizant tutors.

Why a third version (docs/results/fidelity-v2.md and the fidelity issue): in version 2 the four options
were listed in the question, so a student that does not know a domain still answered right by guessing
in about a quarter of its rollouts, and a correct sibling s (carrying the facts and the answer) existed
for most weak-domain prompts; and no tutor ever wrote well-formed but *wrong* feedback, so the gate had
no harm to block. Version 3 changes the items, not the domains or the knowledge units:

* **No options.** The question asks for a number and nothing else; the answer is checked numerically
  (``answer_type="numeric"``). A student that lacks the fact has to compute from a wrong one, so a
  guess is right far less often than 1 in 4.
* **Wider chemistry.** Formulas XaYb with counts a, b in {1, 2, 3} (and diatomic X2): 709 formulas
  instead of 319, so the held-out test formulas resolve smaller differences. Physics and electricity
  keep their input pairs per relation (63: all but (2, 2)) (single-digit inputs, the arithmetic tiny students learn).
* **A corrupted fact table.** Every item carries ``meta["corrupt_hint"]``: the item's hint in the
  same words with the domain fact made wrong, consistently over the world: every valence electron
  count shifted up by one (F, Cl, Br, I wrap from 7 to 1), every product relation stated as a sum
  ("force = mass + acceleration") and every quotient as a difference ("speed = distance - time"). A
  student whose warm-up teaches it to write feedback from this table on a domain
  (``StudentConfig.warmup_corrupt_domains``) is the paper's incognizant tutor: its feedback names the
  question's concept (anchoring keeps it) and states a fact with confidence, and the fact is wrong.
  The corrupted answer never differs from the gold value by accident only: it always differs (checked
  for every item when the world is built), which is why the input pair (2, 2) is left out of every
  relation (2 x 2 = 2 + 2, and 4 / 2 = 4 - 2).

Everything else is version 2's (``opcod_core.data.sciworld``): the element table, the relations, the
worked answers ("C has 4 and O has 6 valence electrons. 2 x 6 = 12. 4 + 12 = 16." then
"Answer: 16"), the hints, the knowledge units, and the split by group key (held-out formulas and input
pairs, stratified per relation: ``sciworld_split``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

from .sciworld import (CHEM_CONCEPT, CHEM_QUESTION, DIATOMIC, DIGITS, LEFT, RELATIONS, RIGHT, SCIWORLD_DOMAINS,
                       VALENCE, Relation, formula_text)
from .types import Item

WORLD3_COUNTS = (1, 2, 3)
CORRUPT_OP = {"x": "+", "/": "-"}


def corrupt_valence(element: str) -> int:
    """The wrong table: each count shifted up by one, 7 wrapping to 1."""
    return VALENCE[element] % 7 + 1


def _apply(op: str, x: int, y: int) -> int:
    return {"x": x * y, "/": x // y, "+": x + y, "-": x - y}[op]


def _chem_facts(terms: Sequence[tuple[str, int]], table) -> str:
    names = [el for el, _ in terms]
    if len(terms) == 1:
        return f"{names[0]} has {table(names[0])} valence electrons."
    return f"{names[0]} has {table(names[0])} and {names[1]} has {table(names[1])} valence electrons."


def _chem_steps(terms: Sequence[tuple[str, int]]) -> tuple[str, int]:
    """Arithmetic of a formula, one binary operation per step: "3 x 6 = 18. 4 + 18 = 22."."""
    steps, parts = [], []
    for el, n in terms:
        v = VALENCE[el]
        if n > 1:
            steps.append(f"{n} x {v} = {n * v}.")
        parts.append(n * v)
    if len(parts) == 2:
        steps.append(f"{parts[0]} + {parts[1]} = {sum(parts)}.")
    return " ".join(steps), sum(parts)


def _item(item_id: str, domain: str, question: str, gold: int, meta: dict) -> Item:
    return Item(id=item_id, domain=domain, question=question, choices=(), labels=(), gold=str(gold),
                answer_type="numeric",
                meta={"source": "sciworld3", **meta, "answer_value": gold, "answer_text": str(gold),
                      "fact": meta["worked"]})


def _chemistry() -> list[Item]:
    formulas: list[list[tuple[str, int]]] = [[(x, 2)] for x in DIATOMIC]
    formulas += [[(x, a), (y, b)] for x in LEFT for y in RIGHT for a in WORLD3_COUNTS for b in WORLD3_COUNTS]
    items = []
    for terms in formulas:
        f = formula_text(*terms[0], *(terms[1] if len(terms) > 1 else (None, 0)))
        facts = _chem_facts(terms, VALENCE.__getitem__)
        steps, gold = _chem_steps(terms)
        wrong = _chem_facts(terms, corrupt_valence)
        corrupt_total = sum(n * corrupt_valence(el) for el, n in terms)
        meta = {"concept": CHEM_CONCEPT, "facts": [facts], "hint": f"Recall the table: {facts}",
                "corrupt_hint": f"Recall the table: {wrong}", "corrupt_answer": corrupt_total,
                "worked": f"{facts} {steps}", "relation": "valence", "group": f"formula:{f}", "formula": f,
                "units": [f"element:{el}" for el, _ in terms]}
        items.append(_item(f"sciworld3-chemistry-{f}", "chemistry", CHEM_QUESTION.format(f=f), gold, meta))
    return items


def _relation_items(rel: Relation) -> list[Item]:
    items = []
    fact = rel.fact[0].upper() + rel.fact[1:] + "."
    bad_op = CORRUPT_OP[rel.op]
    wrong_fact = fact.replace(f" {rel.op} ", f" {bad_op} ")
    for p in DIGITS:
        for q in DIGITS:
            if p == q == 2:
                continue
            x, y = (p, q) if rel.op == "x" else (p * q, q)
            gold = _apply(rel.op, x, y)
            meta = {"concept": rel.concept, "facts": [fact], "hint": f"Recall the relation: {fact}",
                    "corrupt_hint": f"Recall the relation: {wrong_fact}", "corrupt_answer": _apply(bad_op, x, y),
                    "worked": f"{fact} {x} {rel.op} {y} = {gold}.", "relation": rel.name,
                    "group": f"{rel.name}:{x}:{y}", "inputs": [x, y], "units": [f"relation:{rel.name}"]}
            items.append(_item(f"sciworld3-{rel.domain}-{rel.name}-{x}-{y}", rel.domain,
                               rel.question.format(x=x, y=y), gold, meta))
    return items


@lru_cache(maxsize=1)
def _all_items() -> tuple[Item, ...]:
    items = _chemistry()
    for rel in RELATIONS:
        items += _relation_items(rel)
    for it in items:
        if it.meta["corrupt_answer"] == it.meta["answer_value"]:
            raise AssertionError(f"{it.id}: the corrupted fact gives the right answer")
    return tuple(items)


def sciworld3_items(domains: Iterable[str] = ()) -> list[Item]:
    """Every version-3 item of ``domains`` (all when empty); an unknown domain is an error. There is no
    seed: with no options listed, nothing in an item is random (the split has its own seed)."""
    want = [str(d).strip().lower() for d in domains]
    unknown = [d for d in want if d not in SCIWORLD_DOMAINS]
    if unknown:
        raise ValueError(f"unknown sciworld3 domain(s) {unknown}; available: {list(SCIWORLD_DOMAINS)}")
    return [Item.from_dict(it.to_dict()) for it in _all_items() if not want or it.domain in want]


def sciworld3_corpus() -> list[str]:
    """Every text piece of the world (questions, worked answers, right and wrong hints, numbers)."""
    texts: set[str] = set(SCIWORLD_DOMAINS)
    for it in _all_items():
        texts.update((it.question, it.meta["worked"], it.meta["hint"], it.meta["corrupt_hint"], it.meta["concept"]))
    texts.update(str(n) for n in range(0, 200))
    return sorted(texts)
