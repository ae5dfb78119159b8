"""Baselines as modes of the same trainer, on the same data stream and step budget.

* ``grpo``: verifiable reward r = 1 if the rollout is correct else 0; group-normalised advantage
  A = (r - mean_group) / (std_group + 1e-4) over the n rollouts of a prompt (0 when all agree);
  on-policy, so the PPO ratio is 1 and the clip inactive: loss = -mean_i A_i * mean_t log p(y_i,t).
  No KL penalty (the paper's comparison does not specify one; documented departure).
* ``one_way``: classic on-policy distillation from the peer, which is frozen during the direction
  (only the tutee changes). Teacher = the peer's weights on the *student* context (no s, no f),
  so it needs the same tokenizer: checked at setup.
"""

from __future__ import annotations

import statistics

from opcod_core.student import DistillExample


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


def one_way_examples(rows) -> None:
    for r in rows:
        r.used = "peer"
        r.example = DistillExample(r.prompt_ids, r.token_ids, r.prompt_ids, None)


def check_same_tokenizer(a, b) -> None:
    if a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise ValueError("algorithm: 'one_way' needs both students to share a tokenizer "
                         f"({a.name} and {b.name} differ)")
