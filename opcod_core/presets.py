"""The presets (DESIGN section 6): each a function returning a full run config as a nested dict.

Plain data with no imports from the project, so that ``opcod_core.config`` can build ``preset(name,
overrides)`` on it (overrides merged on top, the result validated as a ``RunConfig``). Each preset's
comment says why its numbers are what they are: measured choices (gate size, tau, learning rate), not
defaults to tune blindly.
"""

from __future__ import annotations

from typing import Any


# Small models need an example to produce the anchoring format; measured on SmolLM2-135M-Instruct
# (16 MMLU chemistry/physics questions, prefill "<concept>"): kept 0/16 with the default template,
# 3/16 with this one-shot template.
ONE_SHOT_TUTOR_USER = (
    "Example.\nProblem: What is the SI unit of force?\nAttempt: The unit is the joule. Answer: B\n"
    "Feedback: <concept>force</concept> Recall Newton's second law: force is mass times acceleration.\n\n"
    "Now give feedback in the same format.\nProblem: {question}\n{choices}\nAttempt: {rollout}\n"
    "Feedback (one term copied from the problem inside <concept></concept>, then one short hint that "
    "does not give the answer):")


def _tiny() -> dict[str, Any]:
    # Student A is warmed up on both domains (a generalist that can tutor), student B only on its
    # strong domain. Tiny students answer lettered questions at about chance (the value-to-letter
    # lookup is beyond ~1M-parameter models; measured on an Intel Xeon: 0.19-0.23 validation accuracy
    # after the warm-up, chance 0.25), so their cognizance gaps compare sampling noise and a gate at
    # tau = 0.2 could silence both students in both rounds (no feedback at all, on some CPUs). tau = 1
    # keeps the gate's logic and guarantees feedback by construction: with two domains, the best student
    # in either domain has a gap of at most 1, so at least one student tutors every round. Tests that need
    # a given decision drive it with run-level overrides (tests/conftest.py).
    return {
        "name": "tiny", "preset": "tiny", "seed": 0,
        "students": [
            {"name": "chem", "model": "tiny:llama", "strong_domain": "chemistry",
             "warmup_sft_steps": 300, "warmup_domains": ["chemistry", "physics"]},
            {"name": "phys", "model": "tiny:qwen2", "strong_domain": "physics",
             "warmup_sft_steps": 200, "warmup_domains": ["physics"]},
        ],
        "data": {"source": "builtin", "domains": ["chemistry", "physics"]},
        "schedule": {"rounds": 2, "steps_per_direction": 3},
        "rollout": {"batch_prompts": 4, "n": 4, "temperature": 1.0, "max_new_tokens": 24},
        "tutor": {"max_new_tokens": 24, "temperature": 1.0},
        "gating": {"tau": 1.0, "val_k": 2, "val_max_items": 16},
        "optim": {"lr": 2e-4},
        "eval": {"k": 2, "max_items": 16, "temperature": 1.0},
        "loss": {"chunk_size": 64},
        "break_rate": {"samples_per_step": 2},
    }


def _tiny_trio() -> dict[str, Any]:
    """Three tiny specialists, one per domain of the built-in data (chemistry, physics, biology): the smallest
    run with more than two peers (issue 17), for trying N-peer routing, the tutoring-flow matrix and trust on
    a CPU, and for tests. Each student is warmed up on its own domain only (200 steps, like tiny's phys) with
    its own build seed, so each is a separately cached model.

    Sized to take about as long as ``tiny``: 600 warm-up steps against tiny's 500, and R x K = 2 x 2 with one
    direction per student as tutee per round (12 updates, as tiny's 2 x 3 x 2). Measured with an empty cache on
    the 2-core machine, one after the other under the same load: 95 s (74 s of warm-up), tiny 75 s (58 s). The gate keeps tiny's
    reasoning for three domains: a student's cognizance gap is a sum of one term at most 1 per domain, and
    the best student in any domain has a term of 0 there, so its gap is at most 2; tau = 2 keeps the gate's
    logic and guarantees that at least one peer tutors every round (tiny students answer near chance, so
    their gaps compare sampling noise). The questions go to the cognizant peer with the best validation
    score on their domain (``routing.mode`` best, the default)."""
    def student(name: str, model: str, domain: str, build_seed: int) -> dict[str, Any]:
        return {"name": name, "model": model, "strong_domain": domain, "warmup_sft_steps": 200,
                "warmup_domains": [domain], "build_seed": build_seed}
    cfg = _tiny()
    cfg.update({
        "name": "tiny-trio", "preset": "tiny-trio",
        "students": [student("chem", "tiny:llama", "chemistry", 0), student("phys", "tiny:qwen2", "physics", 1),
                     student("bio", "tiny:llama", "biology", 2)],
        "data": {"source": "builtin", "domains": ["chemistry", "physics", "biology"]},
        "schedule": {"rounds": 2, "steps_per_direction": 2},
        "gating": {**cfg["gating"], "tau": 2.0},
    })
    return cfg


def _demo() -> dict[str, Any]:
    # Sized for a 2-core CPU (SmolLM2-135M generates ~40 tokens/s there): small evaluations and one
    # prompt x 4 rollouts per step, so the first exchanges appear about a minute after the worker
    # starts and the whole run takes minutes. At this size the model is near chance on MMLU science
    # and a poor tutor; the dashboard shows that as it is.
    # The gate: both students are near chance (~0.25), so no validation set the demo can afford
    # makes Δ mean something. Simulated for two students of equal accuracy 0.25 at k = 1: Δ's
    # standard deviation is 0.59 on 4 questions per domain, 0.36 on 16 and still 0.17 on 100 (25x
    # this gate's cost), where the gate opens for 62% of draws: a coin flip at any affordable size.
    # So we keep the cheap gate (4 questions at k = 1) and say what it is: every gate record shows
    # Δ with its standard error. What the gate decided is kept as decided, and
    # ``tutor_first`` runs first the direction whose tutor the gate let speak (when exactly one
    # may), so the first exchanges carry feedback instead of ~4 minutes of silence (on a fresh
    # machine the gate silenced smol-phys, direction 1's tutor). Evaluation cost is unchanged.
    return {
        "name": "demo", "preset": "demo", "seed": 0,
        "students": [
            {"name": "smol-chem", "model": "smollm2-135m-instruct", "strong_domain": "chemistry"},
            {"name": "smol-phys", "model": "smollm2-135m-instruct", "strong_domain": "physics"},
        ],
        "data": {"source": "mmlu", "domains": ["chemistry", "physics"], "max_items_per_domain": 200},
        "schedule": {"rounds": 2, "steps_per_direction": 6, "tutor_first": True},
        "rollout": {"batch_prompts": 1, "n": 4, "temperature": 1.0, "max_new_tokens": 64},
        "tutor": {"max_new_tokens": 48, "temperature": 0.7, "user": ONE_SHOT_TUTOR_USER},
        "gating": {"tau": 0.2, "val_k": 1, "val_max_items": 4},
        "optim": {"lr": 1e-5},
        "eval": {"k": 1, "max_items": 6, "max_new_tokens": 48},
        "loss": {"chunk_size": 64},
        "break_rate": {"samples_per_step": 1},
        # A checkpoint after an update writes the tutee's weights and AdamW state (1.6 GB, about 4 s against
        # a 17 s step: docs/benchmarks.md, Checkpoints); every 6th step (once per direction, plus every gate,
        # evaluation and pause) keeps the writes under 5% of the step time, and a killed worker redoes at
        # most 5 steps.
        "checkpoint_every": 6,
    }


# Specialisation of the paper preset (the paper fine-tunes each student into a domain specialist first but
# gives no hyper-parameters; these are typical full fine-tuning values for an 8B model, ours to choose).
PAPER_SPECIALIZE: dict[str, Any] = {"lr": 1e-5, "batch_size": 32, "micro_batch": 4, "epochs": 2,
                                    "max_length": 2048, "schedule": "cosine", "lr_warmup_steps": 10}


def _paper() -> dict[str, Any]:
    # Two specialists from one base model: each Qwen3-8B copy is first fine-tuned on its strong domain's
    # train split (``specialize``, cached by content under the cache dir), so that each is stronger in
    # one domain, as in the paper. The other path: point each student's ``model`` at a specialist
    # checkpoint you trained elsewhere and drop the stage (``students[i].specialize: null``).
    # Qwen3's chat template thinks by default; the preset turns its switch off (``chat_template_kwargs``)
    # so that rollouts are short answers ending with "Answer: X" within max_new_tokens (our choice: the
    # paper does not say). Set ``enable_thinking: true`` to think; <think> blocks are then kept out of s,
    # of what the tutor reads and of answer extraction (``opcod_core.thinking``).
    def student(name: str, domain: str) -> dict[str, Any]:
        return {"name": name, "model": "Qwen/Qwen3-8B", "strong_domain": domain,
                "specialize": dict(PAPER_SPECIALIZE), "chat_template_kwargs": {"enable_thinking": False}}
    return {
        "name": "paper", "preset": "paper", "seed": 0,
        "students": [student("qwen3-chem", "chemistry"), student("qwen3-mat", "materials")],
        "data": {"source": "sciknoweval", "path": "data/sciknoweval/L3.jsonl", "level": "L3",
                 "domains": ["chemistry", "materials"]},
        "schedule": {"rounds": 2, "steps_per_direction": 50},
        "rollout": {"batch_prompts": 32, "n": 8, "temperature": 1.0, "max_new_tokens": 2048},
        "tutor": {"max_new_tokens": 256},
        "gating": {"tau": 0.2, "val_k": 8},
        "optim": {"lr": 1e-6},
        "eval": {"k": 16},
        "backend": "vllm", "device": "cuda", "dtype": "bfloat16",
        "checkpoint_every": 10,
    }


def _sciworld() -> dict[str, Any]:
    # The CPU-scale fidelity world (opcod_core.data.sciworld, docs/results/fidelity-v2.md): two ~1.4M-param
    # word-level students trained from scratch with domain skew: the facts of their own domain and hint
    # use for the other; chem also learns 90% of the physics relations (twice the warm-up steps, so that
    # it sees chemistry as often as phys sees physics), so one peer is cognizant in both domains and
    # the other is not. Learning rate chosen on the validation split (opcod bench fidelity --select-lr).
    def student(name: str, arch: str, strong: str, weak: str, share: float, steps: int) -> dict[str, Any]:
        return {"name": name, "model": f"tinyword:{arch}", "strong_domain": strong, "warmup_sft_steps": steps,
                "warmup_domains": [strong], "warmup_hinted_domains": [weak], "warmup_lr": 3e-3,
                "warmup_unhinted_fraction": 0.05, "warmup_partial": {weak: share} if share else None}
    return {
        "name": "sciworld", "preset": "sciworld", "seed": 0,
        "students": [student("chem", "llama", "chemistry", "physics", 0.9, 1600),
                     student("phys", "qwen2", "physics", "chemistry", 0.0, 800)],
        "data": {"source": "sciworld", "domains": ["chemistry", "physics"]},
        "schedule": {"rounds": 2, "steps_per_direction": 12},
        "rollout": {"batch_prompts": 4, "n": 8, "temperature": 1.0, "max_new_tokens": 36},
        "tutor": {"max_new_tokens": 32, "temperature": 0.5},
        "gating": {"tau": 0.2, "val_k": 2, "val_max_items": 32},
        "optim": {"lr": 1e-4},
        "eval": {"k": 4, "max_items": 48, "temperature": 1.0},
        "loss": {"chunk_size": 64},
        "break_rate": {"samples_per_step": 2},
        "checkpoint_every": 100_000, "keep_checkpoints": 1,
    }


# --- science world, version 3 (opcod_core.data.sciworld3; the fidelity benchmark's three specialists) ----
# Knowledge is a ladder over the three domains (WORLD3_ROLES): every specialist knows its own domain; chem
# also knows 90% of the knowledge units of physics and of electricity, phys 90% of electricity's and part
# of chemistry's (its weak domain), elec part of chemistry's and of physics' (its weak domains). On the
# units of a weak domain it does not know, a specialist's warm-up teaches it to write feedback from the
# world's corrupted fact table (an incognizant tutor whose wrong feedback anchoring keeps), while its own
# answers there are guesses (WORLD3_WEAK_BELIEF). In each pair (A, B) of WORLD3_PAIRS the first student is
# cognizant of B and the second incognizant of A; phys is cognizant in one pair and incognizant in another,
# so cognizance is not tied to one identity, and each of the two roles is played by two different students.
#
# Why weak and not unknown (the fidelity protocol's amendment, docs/results/fidelity-protocol.md): with
# nothing known and the wrong table believed, a tutee is confidently wrong on its weak domain, the JSD to
# its self-teacher saturates at log 2 there, and no method moves it within the paper's schedule (phys on
# chemistry 0.02 in every run of docs/results/divergence-v3.md and belief-v3.md), while a partly known
# domain did move (chem on physics 0.958 -> 0.97-0.99). The paper's students are weaker, not ignorant.
#
# Why a ladder and not the cycle it replaced (chem -> phys -> elec -> chem, each specialist partly knowing
# the next domain): in a cycle every domain is someone's partly known domain, and chemistry (formula counts)
# is the domain every student learns last. Partly known by elec it stayed at 0.27-0.57 over ten recipes
# (docs/results/fidelity-v3-recipe.md, rows 7c-8e) where the gate needs about 0.75 (Delta <= tau = 0.2
# against chem's 0.94), so the third pair had no cognizant tutor. In the ladder nobody but its specialist
# has to reach the gate on chemistry.
WORLD3_DOMAINS = ("chemistry", "physics", "electricity")      # the specialists' order (and build-seed index)
WORLD3_NAMES = {"chemistry": "chem", "physics": "phys", "electricity": "elec"}
# strong domain -> (partly known domains, weak domains)
WORLD3_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "chemistry": (("physics", "electricity"), ()),
    "physics": (("electricity",), ("chemistry",)),
    "electricity": ((), ("chemistry", "physics")),
}
WORLD3_PAIRS = (("chemistry", "physics"), ("chemistry", "electricity"), ("physics", "electricity"))
WORLD3_PARTIAL_SHARE = 0.9
# Share of a weak domain's knowledge units the student knows. A chemistry item needs two elements (known
# with chance about 0.6^2), a physics item one relation; an unknown relation is guessed right half the time
# (random_facts draws the right or the wrong operation), an unknown valence one time in seven. So both sit
# well under the gate's bar (Delta > tau = 0.2 against a specialist near 1) and leave room to learn.
WORLD3_WEAK_SHARE = {"chemistry": 0.6, "physics": 0.3, "electricity": 0.3}
# On a weak domain's unknown units, the share of the student's own answers from the wrong table
# (StudentConfig.warmup_unknown_belief): 0, it guesses (random facts), so the JSD to a teacher that knows
# better is not saturated there; its feedback on those units stays wrong.
WORLD3_WEAK_BELIEF = 0.0
# Intended plain validation accuracy after the warm-up, checked by the build (opcod_core.build_check):
# a specialist, a cognizant non-specialist and an incognizant student.
WORLD3_EXPECT = {"strong": (0.6, 1.0), "partial": (0.45, 1.0), "weak": (0.1, 0.7)}
# Recipe 10f (docs/results/fidelity-v3-recipe.md): own-domain self-teacher contexts' share of the warm-up
# and the converge schedule's decay steps; the self-teacher with a correct s may trail plain accuracy on
# the own domain by at most the tolerance (avg@4 on 90-106 validation items: a paired difference's noise is
# about 0.02; the defect it catches was 0.17).
WORLD3_OWN_CONTEXT_SHARE = 0.18
WORLD3_DECAY_STEPS = 2000
# Build attempts per specialist (StudentConfig.warmup_attempts; recipe row 11d): a v3 warm-up whose loss has
# not converged by its 4,000-step limit missed its split or sat at its edge in every build measured (chem
# seed 1, phys seed 1, elec seed 0 under rows 10f and 11), so such an attempt is given up at the limit and
# the build starts again from fresh weights; the report counts the attempts.
WORLD3_ATTEMPTS = 3
WORLD3_SELF_TEACHER_TOLERANCE = 0.05


def world3_specialist(strong: str, build_seed: int = 0) -> dict[str, Any]:
    """The version-3 specialist of ``strong`` (its partly known and weak domains: ``WORLD3_ROLES``).

    Recipe 10f of docs/results/fidelity-v3-recipe.md (7c with more own-domain self-teacher contexts and a
    longer decay): hinted examples state random facts and always show the hint (s with it in 30%); 18% of
    examples are own-domain self-teacher contexts (s, hint, s + hint evenly); the constant rate lasts until
    the loss EMA falls below 0.05 (at most 4,000 steps: build seed 1's chem was still on the plateau at
    2,500), then 2,000 decay steps. A weak domain is partly known (``WORLD3_WEAK_SHARE`` of its units,
    learned like the own domain); on its other units the student is taught the tutor format from the wrong
    fact table (``warmup_corrupt_domains``) and guesses its own answers (``WORLD3_WEAK_BELIEF``). Recipe 7c (10% own
    contexts, 1,000 decay steps) made a chemistry specialist whose self-teacher with a correct s was worse
    than it on chemistry (0.70 against 0.87 plain), so its chemistry collapsed in co-distillation; the build
    now checks that (``warmup_self_teacher_tolerance``)."""
    i = WORLD3_DOMAINS.index(strong)
    partial, weak = WORLD3_ROLES[strong]
    expect = {strong: WORLD3_EXPECT["strong"], **{d: WORLD3_EXPECT["partial"] for d in partial},
              **{d: WORLD3_EXPECT["weak"] for d in weak}}
    weak_extra = {"warmup_unknown_belief": WORLD3_WEAK_BELIEF} if weak else {}
    return {"name": WORLD3_NAMES[strong], "model": "tinyword:llama", "strong_domain": strong,
            "warmup_sft_steps": 4000, "warmup_lr": 3e-3, "warmup_schedule": "converge",
            "warmup_converge_loss": 0.05, "warmup_decay_steps": WORLD3_DECAY_STEPS, "warmup_hinted_contexts": "hint",
            "warmup_own_contexts": "balanced", "warmup_own_context_share": WORLD3_OWN_CONTEXT_SHARE,
            "warmup_self_teacher_tolerance": WORLD3_SELF_TEACHER_TOLERANCE, "warmup_domains": [strong],
            "warmup_hinted_domains": [*partial, *weak],
            "warmup_partial": {**{d: WORLD3_PARTIAL_SHARE for d in partial},
                               **{d: WORLD3_WEAK_SHARE[d] for d in weak}} or None,
            "warmup_corrupt_domains": list(weak) or None, "warmup_hinted_facts": "random",
            "warmup_unhinted_fraction": 0.1, "warmup_expect": expect,
            "build_seed": 1000 * build_seed + i, "warmup_attempts": WORLD3_ATTEMPTS, **weak_extra}


def world3_pair(a: str = "chemistry", b: str = "physics", build_seed: int = 0) -> dict[str, Any]:
    """A run of two version-3 specialists on domains (a, b), at the paper's schedule (R x K = 2 x 50,
    n = 8, JSD beta 0.5, tau = 0.2) with test avg@16 on the whole (widened) test split."""
    return {
        "name": f"sciworld3-{WORLD3_NAMES[a]}-{WORLD3_NAMES[b]}", "preset": "sciworld3", "seed": 0,
        "students": [world3_specialist(a, build_seed), world3_specialist(b, build_seed)],
        "data": {"source": "sciworld3", "domains": [a, b], "fractions": [0.6, 0.15, 0.25]},
        "schedule": {"rounds": 2, "steps_per_direction": 50},
        # the longest worked answer (a 3 x 3 formula, counts restated) is 43 tokens with "Answer: N" and EOS
        "rollout": {"batch_prompts": 4, "n": 8, "temperature": 1.0, "max_new_tokens": 48},
        "tutor": {"max_new_tokens": 32, "temperature": 0.5},
        "gating": {"tau": 0.2, "val_k": 8, "val_max_items": 100_000},
        "optim": {"lr": 1e-4},
        "eval": {"k": 16, "max_items": 100_000, "temperature": 1.0},
        "loss": {"chunk_size": 64},
        "break_rate": {"samples_per_step": 2},
        "checkpoint_every": 100_000, "keep_checkpoints": 1,
    }


def world3_trio(build_seed: int = 0) -> dict[str, Any]:
    """The three version-3 specialists (chem, phys, elec) together on the world's three domains, at the pairs'
    schedule and settings (``world3_pair``: R x K = 2 x 50, n = 8, tau = 0.2, test avg@16), with one direction
    per student as tutee in each round. The same cached specialists as the pairs (build seeds per domain).

    What the pairs test one at a time, the trio has at once (``WORLD3_ROLES``): on chemistry both other peers
    are incognizant (weak: where they do not know, their warm-up taught them to write feedback from the
    corrupted fact table), on physics chem is cognizant (90% of its knowledge units) and elec incognizant, on electricity chem and phys are both
    cognizant. So the gate and the routing must pick among candidates of every kind, and the tutoring-flow
    matrix shows every tutor-tutee pair."""
    cfg = world3_pair("chemistry", "physics", build_seed)
    cfg.update({"name": "sciworld3-trio", "preset": "sciworld3-trio",
                "students": [world3_specialist(d, build_seed) for d in WORLD3_DOMAINS],
                "data": {**cfg["data"], "domains": list(WORLD3_DOMAINS)}})
    return cfg


def _sciworld3() -> dict[str, Any]:
    return world3_pair("chemistry", "physics")


PRESETS = {"tiny": _tiny, "tiny-trio": _tiny_trio, "demo": _demo, "paper": _paper, "sciworld": _sciworld,
           "sciworld3": _sciworld3, "sciworld3-trio": world3_trio}
