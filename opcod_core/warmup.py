"""Supervised warm-up: make a domain-stronger student (and a usable tutor) from a base model.

``warmup_sft_steps`` steps of supervised training on the train split of the student's warm-up
domains (default: its strong domain) before round 1. Each batch mixes two formats:

* answer format (1 of 2 examples): rollout prompt -> "<worked line> Answer: X" + EOS, where the
  worked line is the item's fact when the dataset provides one (``meta["fact"]``), else nothing;
* tutor format (1 of 2): tutor prompt with the prefilled "<concept>" -> "term</concept> hint" +
  stop string, where the term is the item's concept (``meta["concept"]``) and the hint never
  states the answer.

This is what lets randomly initialised tiny models exercise every path of the trainer (correct and
incorrect rollouts, kept and discarded feedback). For real models it is an optional way to make
the paper's "stronger in one domain" pairs from a single base model. Sampling of warm-up items is
seeded per student, so a warm-up is reproducible and can be cached by its inputs.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from opcod_core.anchoring import TutorTemplate, render_tutor_messages
from opcod_core.data.types import Item
from opcod_core.prompts import format_choices, rollout_messages


def answer_target(item: Item) -> str:
    fact = item.meta.get("fact")
    return f"{fact} Answer: {item.gold}" if fact else f"Answer: {item.gold}"


def tutor_target(item: Item, stop: str) -> str | None:
    concept = item.meta.get("concept")
    if not concept:
        return None
    hint = item.meta.get("hint") or f"Recall what you know about {concept}."
    return f"{concept}</concept> {hint}{stop}"


def warm_up(student, items: list[Item], steps: int, lr: float, template: TutorTemplate, seed: int,
            batch_size: int = 16, progress=None) -> list[float]:
    """Runs ``steps`` supervised steps on ``items``; returns the loss curve."""
    if not items:
        raise ValueError(f"student {student.name}: no warm-up items")
    rng = random.Random(f"warmup-{seed}-{student.name}")
    eos = student.tokenizer.eos_token or ""
    stop = template.stop[0] if template.stop else "\n"
    curve: list[float] = []
    for step in range(steps):
        prompts, targets = [], []
        for j in range(batch_size):
            item = rng.choice(items)
            tutor_text = tutor_target(item, stop) if j % 2 == 1 else None
            if tutor_text is not None:
                attempt = rng.choice([answer_target(item), f"Answer: {rng.choice(item.labels)}"])
                messages, prefill = render_tutor_messages(
                    template, item.question, format_choices(list(item.labels), list(item.choices)), attempt)
                prompts.append(student.render(messages, prefill=prefill))
                targets.append(student.encode(tutor_text + eos))
            else:
                messages = rollout_messages(item.question, list(item.labels), list(item.choices), item.answer_type)
                prompts.append(student.render(messages))
                targets.append(student.encode(answer_target(item) + eos))
        curve.append(student.sft_step(prompts, targets, lr=lr))
        if progress is not None:
            progress(step + 1, steps, curve[-1])
    return curve


def sanitised_hint(item: Item, template: TutorTemplate, hint: str | None = None, gold: str | None = None) -> str | None:
    """The item's hint (or ``hint``, a variant's, whose answer is ``gold``) exactly as OPCoD would feed it
    to a self-teacher: written in the tutor format, classified and sanitised by the anchoring check
    (``"Concept: X. <hint>"``); None if not kept."""
    from opcod_core.anchoring import classify_feedback

    concept, hint = item.meta.get("concept"), hint or item.meta.get("hint")
    if not concept or not hint:
        return None
    v = classify_feedback(f"{template.prefill}{concept}</concept> {hint}", item.question,
                          gold=item.gold if gold is None else gold, choices=list(item.choices),
                          labels=list(item.labels))
    return v.sanitised if v.kept else None


def partial_split(items: list[Item], share: float, key: str) -> tuple[list[Item], list[Item], list[str]]:
    """Splits one domain's ``items`` for a student that partly knows the domain: a seeded subset of
    the domain's knowledge units (``meta["units"]``: sciworld elements or relations), ``round(share * n)``
    of the ``n`` units, is known; an item is *known* when every unit it needs is known.
    Returns (known items, other items, known units). The known items are learned like the student's own
    domain — facts, worked answers and the tutor format — so the student also *writes hints* for the
    domain, right ones for known units and its best guess for the others: the partly cognizant tutor
    the cognizance gate exists to judge."""
    missing = [it.id for it in items if not it.meta.get("units")]
    if missing:
        raise ValueError(f"warmup_partial needs items with knowledge units (meta['units']); "
                         f"{len(missing)} items have none, e.g. {missing[0]!r}")
    units = sorted({u for it in items for u in it.meta["units"]})
    known = set(random.Random(f"partial-{key}").sample(units, round(share * len(units))))
    inside = [it for it in items if set(it.meta["units"]) <= known]
    outside = [it for it in items if not set(it.meta["units"]) <= known]
    return inside, outside, sorted(known)


# Shares of a skewed warm-up batch (skewed_examples), by kind of example:
# * hinted: a hinted-domain item in the self-teacher context with the peer-style sanitised hint
#   (sanitised_hint; with probability 0.3 also a correct solution s) -> the worked answer; a fraction
#   unhinted_fraction is shown unhinted instead, so that the student answers unhinted weak-domain questions
#   in the right format (without it the feasibility study found the wrong format) while seeing too few of
#   them to learn that domain's facts;
# * own_tutor: an own-domain item in the tutor format (prefilled "<concept>") -> "term</concept> hint";
# * own_context: an own-domain item in a self-teacher context (s, and the hint in half) -> the worked answer;
# * corrupt_tutor (only with a corrupt pool): a corrupt-domain item in the tutor format -> "term</concept>
#   <corrupted hint>" (meta["corrupt_hint"]): confident, anchored, wrong feedback on an unknown domain;
# * the rest, own: an own-domain item in the student context -> the worked answer.
SKEW_MIX = {"own_tutor": 0.15, "own_context": 0.1, "hinted": 0.35, "corrupt_tutor": 0.1}
# With random hinted facts (hinted_facts="random") the mix is SKEW_MIX's and own-domain contexts state
# the true facts; OWN_CONTEXT_RANDOM is the share of own contexts that state random facts instead. Measured
# on the v3 specialists (docs/results/fidelity-v3-recipe.md): with 0 (this mix), chem's plain split came
# out as intended (chemistry 0.87, physics 0.85, electricity 0.02) but a true hint on its own chemistry
# made it misread the formula's counts (0.28 with the hint); with all own contexts random (own answers at
# 25%) its plain chemistry fell to 0.52; with half random (own answers 35%) no specialist had left the
# loss plateau after 1,750 steps. So the measured recipe stays the default until one does better.
# The own-context share is a student setting (own_context_share, StudentConfig.warmup_own_context_share):
# at this mix's 0.1 chem's self-teacher with a correct s was worse than it on chemistry (0.70 against 0.87
# plain, recipe row 10); 0.18 with a longer decay closed the gap (row 10f, the v3 preset).
SKEW_MIX_RANDOM = dict(SKEW_MIX)
OWN_CONTEXT_RANDOM = 0.0
# Contexts of the random-fact hinted examples (hinted_contexts): "balanced" draws s, f and s + f evenly (the
# self-teacher's three contexts, each seen on every hinted domain); "hint" shows the hint always and the
# solution with it in 30% (the given-facts examples' contexts, row 1 of the v3 recipe notes).
HINTED_CONTEXTS = ("balanced", "hint")


def warmup_lr(lr: float, step: int, steps: int, schedule: str) -> float:
    """The warm-up's learning rate at ``step`` (0-based): constant, or cosine decay from ``lr`` to 0."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(steps, 1)))
    raise ValueError(f"warm-up schedule must be constant or cosine, got {schedule!r}")


class ConvergeSchedule:
    """``warmup_schedule="converge"``: constant ``lr`` until the training loss has converged, then a fixed
    cosine decay to 0 over ``decay_steps``.

    Why: a tiny student learns to copy the question's numbers in a sudden transition (the loss sits on a
    plateau near 0.8, then drops). Measured on the v3 specialists, that transition came after 250 steps in
    one build and after 1,500 in another with the same recipe; a cosine decay fixed in advance had then
    already cut the rate, and that build ended on the plateau (plain accuracy about 0.05 everywhere). Here
    the decay starts when the loss's exponential moving average (weight ``EMA``) falls below ``loss``, or
    at ``max_steps`` if it never does (the build check then fails loudly), so every build ends converged,
    whenever its transition came. ``decay_start`` records when the decay began.

    ``give_up``: a loss that has not converged by ``max_steps`` ends the warm-up there, without the decay
    (``gave_up``), for a build that will start another attempt (``StudentConfig.warmup_attempts``): in every
    v3 build measured, a warm-up whose loss had not converged by the limit missed its split or sat at the
    edge of it (fidelity-v3-recipe.md, row 11d), so the decay's steps are better spent on a fresh start."""

    EMA = 0.02

    def __init__(self, lr: float, max_steps: int, decay_steps: int, loss: float, give_up: bool = False):
        self.lr, self.max_steps, self.decay_steps, self.loss = lr, max_steps, decay_steps, loss
        self.give_up = give_up
        self.ema: float | None = None
        self.decay_start: int | None = None
        self.converged = False
        self.gave_up = False

    @property
    def total_steps(self) -> int:
        return self.max_steps + self.decay_steps

    def lr_at(self, step: int) -> float | None:
        """The rate of ``step``, or None once the decay is over (the warm-up ends)."""
        if self.decay_start is None and self.ema is not None and self.ema < self.loss:
            self.decay_start, self.converged = step, True
        elif self.decay_start is None and step >= self.max_steps:
            if self.give_up:
                self.gave_up = True
                return None
            self.decay_start = step
        if self.decay_start is None:
            return self.lr
        done = step - self.decay_start
        return None if done >= self.decay_steps else warmup_lr(self.lr, done, self.decay_steps, "cosine")

    def observe(self, loss: float) -> None:
        self.ema = loss if self.ema is None else (1 - self.EMA) * self.ema + self.EMA * loss


def _attempt(item: Item, rng: random.Random, bare: bool = False) -> str:
    """A student attempt shown in a tutor-format warm-up prompt: the worked answer or a bare guess (a
    label, a listed option, or for open numeric items the answer a wrong fact table gives).

    ``bare``: the guess only. The corrupted-table tutor examples use it: an attempt that states the right
    facts next to a target that states them shifted (C has 4 in the prompt, "C has 5" in the target)
    trains the model to write numbers it reads with an offset, which measured on the v3 specialists
    destroyed copying everywhere (a question's "2 kg ... 8 m/s" became "3 x 9"; plain validation accuracy
    0.08 after 3,000 steps against 0.13 / 0.41 after 600 steps without these examples)."""
    guesses = (list(item.labels) or [str(v) for v in item.meta.get("options", ())]
               or ([str(item.meta["corrupt_answer"])] if "corrupt_answer" in item.meta else []) or [item.gold])
    guess = f"Answer: {rng.choice(guesses)}"
    return guess if bare else rng.choice([answer_target(item), guess])


def skewed_warm_up(student, own: list[Item], hinted: list[Item], steps: int, lr: float, template: TutorTemplate,
                   seed: int, unhinted_fraction: float = 0.05, batch_size: int = 16, progress=None,
                   partly_known: Sequence[tuple[list[Item], float]] = (), corrupt: Sequence[Item] = (),
                   schedule: str | ConvergeSchedule = "constant", own_contexts: str = "with_solution",
                   hinted_facts: str = "given", hinted_contexts: str = "balanced",
                   hinted_share: float | None = None, own_context_share: float | None = None,
                   unknown_belief: float = 1.0) -> list[float]:
    """Warm-up with domain skew (the science world's students): the student learns the facts of its
    ``own`` domains and only learns to *use* facts given in context for the ``hinted`` domains.
    The batches are ``skewed_examples``'s (seeded per student); each example's prompt is rendered with
    the student's chat template (tutor prompts with the "<concept>" prefill) and its target ends with EOS.
    ``schedule="cosine"`` decays the learning rate to 0 (``warmup_lr``); a ``ConvergeSchedule`` runs until
    the loss converged and then decays (``steps`` is then ignored: the schedule has its own bounds)."""
    if not own:
        raise ValueError(f"student {student.name}: no own-domain warm-up items")
    eos = student.tokenizer.eos_token or ""
    total = schedule.total_steps if isinstance(schedule, ConvergeSchedule) else steps
    examples = skewed_examples(student.name, own, hinted, total, template, seed, unhinted_fraction, batch_size,
                               partly_known, corrupt, own_contexts, hinted_facts, hinted_contexts, hinted_share,
                               own_context_share, unknown_belief)
    curve: list[float] = []
    for step, batch in enumerate(examples):
        if isinstance(schedule, ConvergeSchedule):
            rate = schedule.lr_at(step)
            if rate is None:
                break
        else:
            rate = warmup_lr(lr, step, steps, schedule)
        prompts = [student.render(messages, prefill=prefill or "") for _kind, messages, prefill, _target in batch]
        targets = [student.encode(target + eos) for _kind, _messages, _prefill, target in batch]
        curve.append(student.sft_step(prompts, targets, lr=rate))
        if isinstance(schedule, ConvergeSchedule):
            schedule.observe(curve[-1])
        if progress is not None:
            progress(step + 1, total, curve[-1])
    return curve


def skewed_examples(name: str, own: list[Item], hinted: list[Item], steps: int, template: TutorTemplate, seed: int,
                    unhinted_fraction: float = 0.05, batch_size: int = 16,
                    partly_known: Sequence[tuple[list[Item], float]] = (), corrupt: Sequence[Item] = (),
                    own_contexts: str = "with_solution", hinted_facts: str = "given",
                    hinted_contexts: str = "balanced", hinted_share: float | None = None,
                    own_context_share: float | None = None, unknown_belief: float = 1.0):
    """The skewed warm-up's batches as text: per step a list of (kind, messages, prefill or None, target
    without EOS), each example drawn independently (``Random`` seeded by student name and seed) by the
    shares of ``SKEW_MIX`` (``SKEW_MIX_RANDOM`` with ``hinted_facts="random"``; the kinds are described
    there). ``own_contexts="balanced"``: own-domain contexts drawn uniformly from s, hint alone and s + hint
    (not s always), so that a hint on the student's own domain restates what it knows.
    ``partly_known``: (known items of a partly known domain, share) pairs (``partial_split``), treated as
    own items; an own item comes from the own pool with weight 1 and from each known pool with its share
    (uniform over the union would let the larger domain dominate). ``hinted_facts="random"``: hinted and
    (a share ``OWN_CONTEXT_RANDOM`` of) own contexts state random facts (``counterfactual_example``), in the
    contexts ``hinted_contexts`` names. ``hinted_share`` / ``own_context_share``: the share of hinted /
    own-context examples instead of the mix's (the own-domain answers take the difference).
    ``unknown_belief``: on a corrupt domain, the share of unhinted answers from the wrong table
    (``counterfactual_example``)."""
    if hinted_facts not in ("given", "random"):
        raise ValueError(f"hinted_facts must be given or random, got {hinted_facts!r}")
    if hinted_contexts not in HINTED_CONTEXTS:
        raise ValueError(f"hinted_contexts must be one of {list(HINTED_CONTEXTS)}, got {hinted_contexts!r}")
    believed_wrong = {it.domain for it in corrupt}
    pools = [own] + [known for known, share in partly_known if known and share > 0]
    weights = [1.0] + [share for known, share in partly_known if known and share > 0]
    rng = random.Random(f"skewed-warmup-{seed}-{name}")
    stop = template.stop[0] if template.stop else "\n"
    mix = SKEW_MIX_RANDOM if hinted_facts == "random" else SKEW_MIX
    for kind, share in (("hinted", hinted_share), ("own_context", own_context_share)):
        if share is not None:
            mix = {**mix, kind: share}
    if sum(mix.values()) > 1.0:
        raise ValueError(f"hinted_share {hinted_share}, own_context_share {own_context_share}: the mix's shares "
                         f"{mix} exceed 1")
    for _step in range(steps):
        batch = []
        for _ in range(batch_size):
            kind = _draw_kind(rng, mix, bool(hinted), bool(corrupt))
            item = (rng.choice(hinted) if kind == "hinted" else rng.choice(corrupt) if kind == "corrupt_tutor"
                    else rng.choice(rng.choices(pools, weights=weights)[0] if len(pools) > 1 else own))
            if hinted_facts == "random" and (kind == "hinted" or (kind == "own_context" and OWN_CONTEXT_RANDOM > 0
                                                                  and rng.random() < OWN_CONTEXT_RANDOM)):
                batch.append(counterfactual_example(item, rng, template, unhinted_fraction if kind == "hinted" else 0.0,
                                                    item.domain in believed_wrong, kind, hinted_contexts,
                                                    unknown_belief))
            else:
                batch.append(_skewed_example(kind, item, rng, template, stop, unhinted_fraction, own_contexts))
        yield batch


def _draw_kind(rng: random.Random, mix: dict[str, float], has_hinted: bool, has_corrupt: bool) -> str:
    """The kind of one skewed warm-up example, by the shares of ``mix`` (the rest: own-domain answers)."""
    u = rng.random()
    edge = mix["hinted"] + mix["own_tutor"] + mix["own_context"]
    return ("hinted" if has_hinted and u < mix["hinted"] else
            "own_tutor" if u < mix["hinted"] + mix["own_tutor"] else
            "own_context" if u < edge else
            "corrupt_tutor" if has_corrupt and u < edge + mix["corrupt_tutor"] else "own")


def _skewed_example(kind: str, item: Item, rng: random.Random, template: TutorTemplate, stop: str,
                    unhinted_fraction: float, own_contexts: str) -> tuple[str, list[dict], str | None, str]:
    """One example of ``skewed_examples`` (its kind, messages, tutor prefill or None, target), drawing
    from ``rng`` in a fixed order so that a warm-up is a pure function of its seed."""
    from opcod_core.prompts import teacher_messages

    labels, choices = list(item.labels), list(item.choices)
    target = (f"{item.meta['concept']}</concept> {item.meta['corrupt_hint']}{stop}" if kind == "corrupt_tutor"
              else tutor_target(item, stop) if kind == "own_tutor" else None)
    if target is not None:
        messages, prefill = render_tutor_messages(template, item.question, format_choices(labels, choices),
                                                  _attempt(item, rng, bare=kind == "corrupt_tutor"))
        return kind, messages, prefill, target
    hint = sanitised_hint(item, template)
    if kind == "hinted" and rng.random() < unhinted_fraction:
        hint = None
        kind = "own"
    if kind == "own_context" and own_contexts == "balanced":
        shown = rng.choice(("s", "f", "s+f")) if hint else "s"
        s = answer_target(item) if "s" in shown else None
        f = hint if "f" in shown else None
        messages = teacher_messages(item.question, labels, choices, item.answer_type, solution=s, feedback=f)
    elif kind == "hinted" or kind == "own_context":
        s = answer_target(item) if (kind == "own_context" or rng.random() < 0.3) else None
        f = hint if (kind == "hinted" or rng.random() < 0.5 or s is None) else None
        messages = teacher_messages(item.question, labels, choices, item.answer_type, solution=s, feedback=f)
    else:
        messages = rollout_messages(item.question, labels, choices, item.answer_type)
    return kind, messages, None, answer_target(item)


def counterfactual_example(item: Item, rng: random.Random, template: TutorTemplate, unhinted_fraction: float,
                           believes_wrong: bool, kind: str = "hinted",
                           contexts: str = "balanced", belief: float = 1.0) -> tuple[str, list[dict], None, str]:
    """A self-teacher example of ``hinted_facts="random"`` (its kind, messages, None, target).

    In context: the question with a hint stating random facts (``sciworld3.random_facts``), the solution
    those facts give, or both (drawn uniformly with ``contexts="balanced"``; with ``"hint"`` the hint
    always, the solution too in 30%) -> the worked answer from those facts. For a hinted domain the true facts are never a target unless the draw states them in the
    context too, so the student learns to compute from the facts it is told, not the facts themselves;
    for its own domain (``kind="own_context"``) it learns that a stated fact overrides what it knows,
    which is what makes a wrong hint harmful and a right one harmless.
    Unhinted (a fraction ``unhinted_fraction`` of hinted-domain examples): the plain question -> the
    worked answer from the wrong table (``believes_wrong``: a domain the student tutors from the corrupted
    table, so it also answers from it, as an incognizant student does) or from random facts (a partly
    known domain's unknown units: the student guesses a fact). ``belief`` below 1 makes an incognizant
    student unsure: only that share of its unhinted answers come from the wrong table, the rest from random
    facts, so on its unknown domain it leans wrong without giving the true fact a vanishing probability.
    At 1 no extra number is drawn, so the examples are those of a build before the option."""
    from opcod_core.data.sciworld3 import random_facts
    from opcod_core.prompts import teacher_messages

    labels, choices = list(item.labels), list(item.choices)
    if rng.random() < unhinted_fraction:
        if believes_wrong and (belief >= 1.0 or rng.random() < belief):
            worked, value = item.meta["corrupt_worked"], item.meta["corrupt_answer"]
        else:
            _hint, worked, value = random_facts(item, rng)
        return "unhinted", rollout_messages(item.question, labels, choices, item.answer_type), None, \
            f"{worked} Answer: {value}"
    hint, worked, value = random_facts(item, rng)
    target = f"{worked} Answer: {value}"
    shown = rng.choice(("s", "f", "s+f")) if contexts == "balanced" else ("s+f" if rng.random() < 0.3 else "f")
    f = sanitised_hint(item, template, hint=hint, gold=str(value)) if "f" in shown else None
    s = target if ("s" in shown or f is None) else None
    messages = teacher_messages(item.question, labels, choices, item.answer_type, solution=s, feedback=f)
    return kind, messages, None, target
