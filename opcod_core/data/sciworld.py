"""The science world: procedurally generated multi-domain science tasks that tiny students can learn.

Why it exists: at CPU scale no real model knows enough science for OPCoD to show anything (a 135M model
is at chance on MMLU science), so the benchmark needs a controlled world where each item needs (a) a
domain *fact* a student may or may not know and (b) a tiny, domain-independent *skill* (one or two
single-digit operations) that both students can learn. A peer's hint can then supply (a) without (b)'s
result, which is exactly the knowledge transfer OPCoD is meant to produce.

Domains (one question per formula or number combination, four numeric options listed in the question):

* ``chemistry`` — total valence electrons of a small formula, from a table of main-group valence
  electron counts (real values: H 1, C 4, O 6, Cl 7, ...). Formulas are XaYb with a, b in {1, 2}
  (X from the "left" elements, Y from O S F Cl Br I) and diatomic X2. Total = a*v(X) + b*v(Y).
  Single-digit values and counts 1-2 keep the arithmetic to one multiplication by 2 and one addition
  (the issue's feasibility notes; molar masses need two-digit sums, which 1M-parameter models fail).
* ``physics`` — mechanics relations with single-digit inputs: products (F = m*a, p = m*v, W = F*d,
  d = v*t, J = F*t) and quotients (v = d/t, a = F/m, P = W/t, rho = m/V, p = F/A) where the quotient is
  a single digit, so the dividend is a product from the same table.
* ``electricity`` (optional third domain) — V = I*R, P = V*I, Q = I*t, E = P*t, I = V/R, R = V/I.

Worked answers spell out every operation on one binary step ("2 x 6 = 12. 4 + 12 = 16.") then end with
"Answer: 16". The options (the gold value and three plausible distractors: wrong-operation results, a
neighbouring valence, counts ignored or swapped, near misses) are listed in the question, but the item
is verified as *numeric* (``answer_type="numeric"``): measured with 1.4M-parameter students warmed up
for 700 steps, lettered multiple choice failed at the last step — facts and arithmetic right, then the
wrong letter (greedy, 1 of 8 chemistry validation items correct) — because mapping a computed value to
its letter is a lookup these models had not learned; writing the value itself is a copy they do learn.
``Item.meta`` holds: ``concept`` (a term that occurs in the question), ``facts`` (the
domain facts needed), ``hint`` (names the concept and states the facts, never the result: the result
is strictly larger than every stated value for chemistry, and a physics hint states only the relation),
``worked`` (the worked line without the answer label), ``answer_value``, ``relation``, ``group`` and
``units`` (the knowledge units the item needs: its elements, or its relation — a student that "partly
knows" a domain knows a subset of these, ``opcod_core.warmup.partial_split``).

Splits hold out *unseen formulas* (chemistry) and *unseen number combinations per relation* (physics,
electricity): each group key (formula, or relation + inputs) lives in exactly one split, and the split
is stratified per relation so every relation occurs in every split. Everything is a pure function of
the seed: choice order from ``sha256(seed, item id)``, split from ``sha256(seed, group)``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from .splits import check_fractions, split_counts
from .types import SPLITS, Item, SplitDataset

SCIWORLD_DOMAINS: tuple[str, ...] = ("chemistry", "physics", "electricity")
N_CHOICES = 4
DIGITS = tuple(range(2, 10))  # single-digit inputs (1 would make x*1 = x trivial)

# Valence electrons of main-group elements (groups 1, 2, 13-17).
VALENCE: dict[str, int] = {
    "H": 1, "Li": 1, "Na": 1, "K": 1, "Be": 2, "Mg": 2, "Ca": 2, "B": 3, "Al": 3, "C": 4, "Si": 4,
    "N": 5, "P": 5, "O": 6, "S": 6, "F": 7, "Cl": 7, "Br": 7, "I": 7,
}
LEFT = ("H", "Li", "Na", "K", "Be", "Mg", "Ca", "B", "Al", "C", "Si", "N", "P")
RIGHT = ("O", "S", "F", "Cl", "Br", "I")
DIATOMIC = ("H", "N", "O", "F", "Cl", "Br", "I")
CHEM_CONCEPT = "valence electrons"
CHEM_QUESTION = "How many valence electrons are there in total in one {f} unit?"


@dataclass(frozen=True)
class Relation:
    """``result = x op y`` for the two numbers the question states, in the order it states them."""

    name: str
    domain: str
    concept: str        # occurs in the question text
    op: str             # "x" or "/"
    fact: str           # the domain fact, e.g. "force = mass x acceleration"
    question: str       # with {x} and {y}


RELATIONS: tuple[Relation, ...] = (
    Relation("force", "physics", "force", "x", "force = mass x acceleration",
             "A {x} kg cart accelerates at {y} m/s2. What is the net force on it in N?"),
    Relation("momentum", "physics", "momentum", "x", "momentum = mass x velocity",
             "A {x} kg ball moves at {y} m/s. What is its momentum in kg m/s?"),
    Relation("work", "physics", "work", "x", "work = force x distance",
             "A force of {x} N pushes a box {y} m. How much work is done in J?"),
    Relation("distance", "physics", "distance", "x", "distance = speed x time",
             "A car moves at {x} m/s for {y} s. What distance does it cover in m?"),
    Relation("impulse", "physics", "impulse", "x", "impulse = force x time",
             "A force of {x} N acts on a puck for {y} s. What is the impulse in N s?"),
    Relation("speed", "physics", "speed", "/", "speed = distance / time",
             "A runner covers {x} m in {y} s. What is her average speed in m/s?"),
    Relation("acceleration", "physics", "acceleration", "/", "acceleration = force / mass",
             "A net force of {x} N acts on a {y} kg sled. What is its acceleration in m/s2?"),
    Relation("power", "physics", "power", "/", "power = work / time",
             "A motor does {x} J of work in {y} s. What is its power in W?"),
    Relation("density", "physics", "density", "/", "density = mass / volume",
             "A block of mass {x} kg fills {y} m3. What is its density in kg/m3?"),
    Relation("pressure", "physics", "pressure", "/", "pressure = force / area",
             "A force of {x} N presses on {y} m2. What is the pressure in Pa?"),
    Relation("voltage", "electricity", "voltage", "x", "voltage = current x resistance",
             "A current of {x} A flows through a {y} ohm resistor. What is the voltage across it in V?"),
    Relation("electric_power", "electricity", "electric power", "x", "electric power = voltage x current",
             "A lamp on {x} V draws {y} A. What electric power does it use in W?"),
    Relation("charge", "electricity", "charge", "x", "charge = current x time",
             "A current of {x} A flows for {y} s. How much charge passes in C?"),
    Relation("energy", "electricity", "energy", "x", "energy = power x time",
             "A {x} W heater runs for {y} s. How much energy does it use in J?"),
    Relation("current", "electricity", "current", "/", "current = voltage / resistance",
             "A {x} V battery drives a {y} ohm resistor. What current flows in A?"),
    Relation("resistance", "electricity", "resistance", "/", "resistance = voltage / current",
             "A {x} V source pushes {y} A through a wire. What is its resistance in ohm?"),
)


def _rng(*parts: object) -> random.Random:
    key = ":".join(str(p) for p in parts)
    return random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big"))


def formula_text(x: str, a: int, y: str | None = None, b: int = 0) -> str:
    return f"{x}{a if a > 1 else ''}" + (f"{y}{b if b > 1 else ''}" if y else "")


def valence_total(terms: Sequence[tuple[str, int]]) -> int:
    return sum(VALENCE[el] * n for el, n in terms)


def _chem_worked(terms: Sequence[tuple[str, int]]) -> tuple[str, str]:
    """(facts sentence, arithmetic steps) — every step one binary operation."""
    names = [el for el, _ in terms]
    vals = [VALENCE[el] for el in names]
    if len(terms) == 1:
        facts = f"{names[0]} has {vals[0]} valence electrons."
    else:
        facts = f"{names[0]} has {vals[0]} and {names[1]} has {vals[1]} valence electrons."
    steps, parts = [], []
    for el, n in terms:
        if n == 2:
            steps.append(f"2 x {VALENCE[el]} = {2 * VALENCE[el]}.")
        parts.append(n * VALENCE[el])
    if len(parts) == 2:
        steps.append(f"{parts[0]} + {parts[1]} = {sum(parts)}.")
    return facts, " ".join(steps)


def _distractors(gold: int, candidates: Iterable[int], rng: random.Random) -> list[int]:
    """Three distinct positive values != gold: wrong-operation results first, then near misses."""
    out: list[int] = []
    cands = [c for c in dict.fromkeys(candidates) if c > 0 and c != gold]
    rng.shuffle(cands)
    for c in cands:
        if len(out) < N_CHOICES - 1:
            out.append(c)
    near = [gold + d for d in (1, -1, 2, -2, 3, 4, -3, 5, 6)]
    for c in near:
        if len(out) < N_CHOICES - 1 and c > 0 and c != gold and c not in out:
            out.append(c)
    return out


def _make_item(seed: int, item_id: str, domain: str, question: str, gold: int, distractors: list[int],
               meta: dict) -> Item:
    values = [gold] + distractors
    rng = _rng(seed, "choices", item_id)
    rng.shuffle(values)
    options = ", ".join(str(v) for v in values)
    return Item(id=item_id, domain=domain, question=f"{question} Options: {options}.", choices=(), labels=(),
                gold=str(gold), answer_type="numeric",
                meta={"source": "sciworld", **meta, "options": values, "answer_value": gold,
                      "answer_text": str(gold), "fact": meta["worked"]})


def _chemistry(seed: int) -> list[Item]:
    formulas: list[list[tuple[str, int]]] = [[(x, 2)] for x in DIATOMIC]
    formulas += [[(x, a), (y, b)] for x in LEFT for y in RIGHT for a in (1, 2) for b in (1, 2) if x != y]
    items = []
    for terms in formulas:
        f = formula_text(*terms[0], *(terms[1] if len(terms) > 1 else (None, 0)))
        gold = valence_total(terms)
        facts, steps = _chem_worked(terms)
        rng = _rng(seed, "distract", f)
        wrong = [sum(VALENCE[el] for el, _ in terms)]                           # counts ignored
        wrong += [gold + v - VALENCE[el] for el, _ in terms for v in (VALENCE[el] + 1, VALENCE[el] - 1)]
        if len(terms) == 2:
            (x, a), (y, b) = terms
            wrong.append(b * VALENCE[x] + a * VALENCE[y])                       # counts swapped
        hint_facts = facts
        meta = {"concept": CHEM_CONCEPT, "facts": [facts], "hint": f"Recall the table: {hint_facts}",
                "worked": f"{facts} {steps}", "relation": "valence", "group": f"formula:{f}", "formula": f,
                "units": [f"element:{el}" for el, _ in terms]}
        items.append(_make_item(seed, f"sciworld-chemistry-{f}", "chemistry", CHEM_QUESTION.format(f=f),
                                gold, _distractors(gold, wrong, rng), meta))
    return items


def _relation_items(seed: int, rel: Relation) -> list[Item]:
    items = []
    for p in DIGITS:
        for q in DIGITS:
            if rel.op == "x":
                x, y, gold = p, q, p * q
                wrong = [x + y, abs(x - y), x * y + x, x * y - y]
            else:                      # x / y = p, with x = p * q the product of two single digits
                x, y, gold = p * q, q, p
                wrong = [x * y if x * y < 100 else x + y, x - y, x + y, q]
            step = f"{x} {rel.op} {y} = {gold}."
            fact = rel.fact[0].upper() + rel.fact[1:] + "."
            meta = {"concept": rel.concept, "facts": [fact], "hint": f"Recall the relation: {fact}",
                    "worked": f"{fact} {step}", "relation": rel.name, "group": f"{rel.name}:{x}:{y}",
                    "inputs": [x, y], "units": [f"relation:{rel.name}"]}
            rng = _rng(seed, "distract", rel.name, x, y)
            items.append(_make_item(seed, f"sciworld-{rel.domain}-{rel.name}-{x}-{y}", rel.domain,
                                    rel.question.format(x=x, y=y), gold, _distractors(gold, wrong, rng), meta))
    return items


@lru_cache(maxsize=8)
def _all_items(seed: int) -> tuple[Item, ...]:
    items = _chemistry(seed)
    for rel in RELATIONS:
        items += _relation_items(seed, rel)
    return tuple(items)


def sciworld_items(domains: Iterable[str] = (), seed: int = 0) -> list[Item]:
    """Every item of ``domains`` (all when empty); an unknown domain is an error."""
    want = [str(d).strip().lower() for d in domains]
    unknown = [d for d in want if d not in SCIWORLD_DOMAINS]
    if unknown:
        raise ValueError(f"unknown sciworld domain(s) {unknown}; available: {list(SCIWORLD_DOMAINS)}")
    return [Item.from_dict(it.to_dict()) for it in _all_items(seed) if not want or it.domain in want]


def sciworld_split(items: Sequence[Item], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                   domains: Sequence[str] = (), max_items_per_domain: int | None = None) -> SplitDataset:
    """Split by group key (formula / relation + inputs), stratified per relation.

    Within each relation the groups are ranked by ``sha256(seed, group)`` and cut by ``fractions``;
    ``max_items_per_domain`` caps each domain after splitting, proportionally per split."""
    fr = check_fractions(fractions)
    order = list(domains) or sorted({it.domain for it in items})
    splits: dict[str, dict[str, list[Item]]] = {d: {s: [] for s in SPLITS} for d in order}
    by_rel: dict[tuple[str, str], list[Item]] = {}
    for it in items:
        if it.domain in splits:
            by_rel.setdefault((it.domain, it.meta["relation"]), []).append(it)
    for (domain, _rel), group in sorted(by_rel.items()):
        ranked = sorted(group, key=lambda it: hashlib.sha256(f"{seed}:{it.meta['group']}".encode()).hexdigest())
        n_train, n_val, _ = split_counts(len(ranked), fr)
        cuts = (ranked[:n_train], ranked[n_train:n_train + n_val], ranked[n_train + n_val:])
        for name, part in zip(SPLITS, cuts, strict=True):
            splits[domain][name].extend(part)
    for domain in order:
        if not splits[domain]["train"]:
            raise ValueError(f"no sciworld items for domain {domain!r}")
        for name in SPLITS:
            # interleave relations deterministically so that a capped prefix covers every relation
            part = sorted(splits[domain][name],
                          key=lambda it: hashlib.sha256(f"{seed}:order:{it.id}".encode()).hexdigest())
            if max_items_per_domain is not None:
                part = part[:max(1, round(max_items_per_domain * fr[SPLITS.index(name)]))]
            splits[domain][name] = part
    return SplitDataset(splits=splits)


def sciworld_corpus() -> list[str]:
    """Every text piece the world can produce (all items of seed 0; other seeds only reorder choices)."""
    texts: set[str] = set(SCIWORLD_DOMAINS)
    for it in _all_items(0):
        texts.update((it.question, it.meta["worked"], it.meta["hint"], it.meta["concept"], *it.choices))
    texts.update(str(n) for n in range(0, 100))
    return sorted(texts)
