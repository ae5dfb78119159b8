"""Baselines as modes of the same trainer, on the same data stream and step budget.

* ``grpo``: verifiable reward r = 1 if the rollout is correct else 0; group-normalised advantage
  A = (r - mean_group) / (std_group + 1e-4) over the n rollouts of a prompt (0 when all agree);
  on-policy, so the PPO ratio is 1 and the clip inactive: loss = -mean_i A_i * mean_t log p(y_i,t).
  No KL penalty by default (the paper's comparison does not specify one; documented departure);
  ``loss.kl_anchor`` adds KL(π_θ ‖ π_init) to the initial policy, as for distillation.
* ``one_way``: classic on-policy distillation from a frozen teacher: a copy of the peer's *initial*
  weights (taken at the start of the run, after the warm-up), never updated for the whole run, on
  the *student* context (no s, no f). The peer itself is still trained in its own direction (it is a
  tutee there, taught by the other's frozen copy), but what teaches is always the frozen copy, so
  neither teacher drifts. It needs the same tokenizer: checked at setup. ``one_way_domains: strong``:
  the frozen peer teaches only on prompts of its strong domain; rollouts of other prompts have no
  teacher and are skipped (counted in ``train/skipped``).
"""

from __future__ import annotations

import statistics

from opcod_core.student_types import DistillExample


def grpo_advantages(rows) -> list[float]:
    groups: dict[int, list[float]] = {}
    for r in rows:
        groups.setdefault(r.p, []).append(1.0 if r.correct else 0.0)
    out = []
    for r in rows:
        g = groups[r.p]
        mean = sum(g) / len(g)
        std = statistics.pstdev(g) if len(g) > 1 else 0.0
        out.append(0.0 if std == 0 else ((1.0 if r.correct else 0.0) - mean) / (std + 1e-4))
    return out


def one_way_examples(rows, only_domain: str | None = None) -> None:
    """Teacher = the frozen peer on the student context; with ``only_domain``, only on that domain."""
    for r in rows:
        taught = only_domain is None or r.item.domain == only_domain
        r.used = "peer" if taught else "none"
        r.example = DistillExample(r.prompt_ids, r.token_ids, r.prompt_ids if taught else None, None)


def check_same_tokenizer(a, b) -> None:
    if a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise ValueError("algorithm: 'one_way' needs both students to share a tokenizer "
                         f"({a.name} and {b.name} differ)")
