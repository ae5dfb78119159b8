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
  same words with the domain fact made wrong, consistently over the world: every element has a wrong
  valence electron count of its own (``CORRUPT_VALENCE``), every product relation is stated as a sum
  ("force = mass + acceleration") and every quotient as a difference ("speed = distance - time");
  ``meta["corrupt_worked"]`` and ``meta["corrupt_answer"]`` are the worked answer and the answer under
  that table. A student whose warm-up teaches it this table on a domain
  (``StudentConfig.warmup_corrupt_domains``) is the paper's incognizant tutor: its feedback names the
  question's concept (anchoring keeps it) and states a fact with confidence, and the fact is wrong.
  The corrupted answer always differs from the gold value (checked for every item when the world is
  built), which is why the input pair (2, 2) is left out of every relation (2 x 2 = 2 + 2, and
  4 / 2 = 4 - 2) and why the wrong valences are what they are (below).
* **Facts in context can be any facts** (``random_facts``): a variant of an item in which the facts a
  hint states are drawn at random (any valence 1-7 per element; the right or the wrong operation of a
  relation) with the worked answer those facts give. A warm-up that teaches hint *use* on such variants
  teaches the student to compute from whatever facts its context states, without ever pairing the
  domain's questions with its true facts: shown the true hints instead, a tiny student memorised the
  facts of a domain it was meant not to know (plain accuracy 0.83 on it after 3,000 steps).

* **Counts restated.** A chemistry worked answer begins by restating the formula's counts: "CO2 has
  1 C and 2 O. C has 4 and O has 6 valence electrons. 2 x 6 = 12. 4 + 12 = 16." then "Answer: 16".
  Without it (recipe rows up to 7j of docs/results/fidelity-v3-recipe.md) a student that knew the
  valences still misread the subscripts ("B2I3": "2 x 3 = 6. 2 x 7 = 14"): its accuracy fell from 0.82
  on formulas with counts (1, 1) to 0.32 on (3, 3). The restatement makes each multiplication a copy
  of adjacent tokens.

Everything else is version 2's (``opcod_core.data.sciworld``): the element table, the relations, the
worked answers' facts and arithmetic, the hints, the knowledge units, and the split by group key (held-out formulas and input
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
# The wrong valence table. A shifted table (every count + 1) was tried first: a specialist taught to write
# it learned "write each number plus one" and misread the numbers of every question (a "2 kg ... 8 m/s"
# cart became "3 x 9"), so each element gets a wrong count of its own, not a function of its true count.
# Left elements move up (by 1 or 3), halogens and sulfur down (by 4 or 5), oxygen up by 1: with counts
# 1-3 no formula XaYb then has a*dX + b*dY = 0, so the wrong table never gives the right total.
CORRUPT_VALENCE: dict[str, int] = {
    "H": 2, "Li": 4, "Na": 2, "K": 4, "Be": 5, "Mg": 3, "Ca": 5, "B": 6, "Al": 4, "C": 7, "Si": 5,
    "N": 6, "P": 6, "O": 7, "S": 2, "F": 2, "Cl": 3, "Br": 2, "I": 3,
}
VALENCE_RANGE = tuple(range(1, 8))


def corrupt_valence(element: str) -> int:
    """The element's count in the wrong table (``CORRUPT_VALENCE``)."""
    return CORRUPT_VALENCE[element]


def _apply(op: str, x: int, y: int) -> int:
    return {"x": x * y, "/": x // y, "+": x + y, "-": x - y}[op]


def _chem_facts(terms: Sequence[tuple[str, int]], table) -> str:
    names = [el for el, _ in terms]
    if len(terms) == 1:
        return f"{names[0]} has {table(names[0])} valence electrons."
    return f"{names[0]} has {table(names[0])} and {names[1]} has {table(names[1])} valence electrons."


def _chem_steps(terms: Sequence[tuple[str, int]], table=VALENCE.__getitem__) -> tuple[str, int]:
    """Arithmetic of a formula under a valence ``table``, one binary operation per step:
    "3 x 6 = 18. 4 + 18 = 22."."""
    steps, parts = [], []
    for el, n in terms:
        v = table(el)
        if n > 1:
            steps.append(f"{n} x {v} = {n * v}.")
        parts.append(n * v)
    if len(parts) == 2:
        steps.append(f"{parts[0]} + {parts[1]} = {sum(parts)}.")
    return " ".join(steps), sum(parts)


def _chem_counts(terms: Sequence[tuple[str, int]]) -> str:
    """The formula's counts restated: "B2I3 has 2 B and 3 I." (a count of one is written out too)."""
    f = formula_text(*terms[0], *(terms[1] if len(terms) > 1 else (None, 0)))
    return f"{f} has " + " and ".join(f"{n} {el}" for el, n in terms) + "."


def _chem_worked(terms: Sequence[tuple[str, int]], table) -> tuple[str, str, int]:
    """(facts, worked answer, total) of a formula under a valence ``table``. The worked answer restates
    the counts before the facts (``_chem_counts``), so the multiplications copy a count from a few
    tokens back instead of reading a subscript out of the question."""
    facts = _chem_facts(terms, table)
    steps, total = _chem_steps(terms, table)
    return facts, f"{_chem_counts(terms)} {facts} {steps}", total


def _relation_worked(fact: str, op: str, x: int, y: int) -> tuple[str, int]:
    value = _apply(op, x, y)
    return f"{fact} {x} {op} {y} = {value}.", value


def _relation_fact(meta: dict, op: str) -> str:
    right = meta["facts"][0]
    return right if op == meta["op"] else right.replace(f" {meta['op']} ", f" {op} ")


def random_facts(item: Item, rng) -> tuple[str, str, int]:
    """(hint, worked answer, answer) of ``item`` under facts drawn from ``rng``: each element's valence
    uniform over 1-7, or a relation's right or wrong operation with equal chance. The hint has the
    item's hint wording ("Recall the table: ..." / "Recall the relation: ...")."""
    meta = item.meta
    if "terms" in meta:
        table = {el: rng.choice(VALENCE_RANGE) for el, _n in meta["terms"]}
        facts, worked, total = _chem_worked([tuple(t) for t in meta["terms"]], table.__getitem__)
        return f"Recall the table: {facts}", worked, total
    if "op" in meta:
        op = rng.choice((meta["op"], CORRUPT_OP[meta["op"]]))
        fact = _relation_fact(meta, op)
        worked, value = _relation_worked(fact, op, *meta["inputs"])
        return f"Recall the relation: {fact}", worked, value
    raise ValueError(f"{item.id}: random facts need a sciworld3 item (meta 'terms' or 'op')")


def corrupt_where_unknown(item: Item, known_units) -> Item:
    """``item`` with its corrupted hint, worked answer and answer (``meta["corrupt_*"]``) wrong only on the
    knowledge units outside ``known_units``: the feedback a student that partly knows the domain writes
    when it tutors from the wrong table where it knows nothing and from the true one where it knows. A
    chemistry formula mixing a known and an unknown element states the known valence right and the other
    wrong; a relation item has one unit, so it is wrong or, if known, not corrupted at all (the item is
    returned as it is, as is an item whose units are all known: callers pass items with some unknown unit).
    The mixed answer still differs from the gold value: every element's wrong count differs from its true
    one."""
    known = set(known_units)
    meta = item.meta
    if "terms" not in meta or not known.intersection(meta["units"]) or known.issuperset(meta["units"]):
        return item
    terms = [tuple(t) for t in meta["terms"]]
    table = {el: VALENCE[el] if f"element:{el}" in known else CORRUPT_VALENCE[el] for el, _n in terms}
    wrong, worked, total = _chem_worked(terms, table.__getitem__)
    if total == meta["answer_value"]:
        raise AssertionError(f"{item.id}: the partly corrupted facts give the right answer")
    return Item.from_dict({**item.to_dict(), "meta": {**meta, "corrupt_hint": f"Recall the table: {wrong}",
                                                      "corrupt_worked": worked, "corrupt_answer": total}})


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
        facts, worked, gold = _chem_worked(terms, VALENCE.__getitem__)
        wrong, wrong_worked, corrupt_total = _chem_worked(terms, corrupt_valence)
        meta = {"concept": CHEM_CONCEPT, "facts": [facts], "hint": f"Recall the table: {facts}",
                "corrupt_hint": f"Recall the table: {wrong}", "corrupt_answer": corrupt_total,
                "corrupt_worked": wrong_worked, "worked": worked, "relation": "valence", "group": f"formula:{f}",
                "formula": f, "terms": [[el, n] for el, n in terms], "units": [f"element:{el}" for el, _ in terms]}
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
            worked, gold = _relation_worked(fact, rel.op, x, y)
            wrong_worked, wrong_value = _relation_worked(wrong_fact, bad_op, x, y)
            meta = {"concept": rel.concept, "facts": [fact], "hint": f"Recall the relation: {fact}",
                    "corrupt_hint": f"Recall the relation: {wrong_fact}", "corrupt_answer": wrong_value,
                    "corrupt_worked": wrong_worked, "worked": worked, "relation": rel.name, "op": rel.op,
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
        texts.update((it.question, it.meta["worked"], it.meta["hint"], it.meta["corrupt_hint"], it.meta["corrupt_worked"],
                      it.meta["concept"]))
    texts.update(str(n) for n in range(0, 200))
    return sorted(texts)
