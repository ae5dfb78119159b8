"""The domain vocabulary: one definition per word, used by the schema, the core and the web side."""

import subprocess
import sys

from opcod_core.vocabulary import pareto_improved, task_count


def test_pareto_rule_needs_one_gain_and_no_loss():
    assert pareto_improved({"a": 0.5, "b": 0.2}, {"a": 0.5, "b": 0.3})
    assert not pareto_improved({"a": 0.5, "b": 0.2}, {"a": 0.5, "b": 0.2})          # nothing gained
    assert not pareto_improved({"a": 0.5, "b": 0.2}, {"a": 0.49, "b": 0.9})         # one domain lost
    assert pareto_improved({"a": 0.5, "b": 0.2}, {"a": 0.49, "b": 0.9}, tol=0.02)   # within the tolerance
    assert not pareto_improved({"a": 0.5}, {"a": 0.51}, tol=0.02)                   # a gain must beat it too


def test_task_count_matches_the_trainer_task_list():
    from opcod_core.config import preset
    from opcod_core.trainer import Trainer

    for rounds, k in ((1, 1), (2, 3), (3, 50)):
        cfg = preset("tiny", {"schedule": {"rounds": rounds, "steps_per_direction": k}})
        trainer = Trainer.__new__(Trainer)
        trainer.config = cfg
        assert len(trainer._task_list()) == task_count(rounds, k)
        three = cfg.replace({"students": [*cfg.to_dict()["students"], {"name": "bio", "model": "tiny:llama"}]})
        trainer.config = three
        assert len(trainer._task_list()) == task_count(rounds, k, peers=3) == 1 + rounds * (3 * k + 2)


def test_vocabulary_imports_nothing_heavy():
    code = "import sys, opcod_core.vocabulary; print(sorted(m for m in ('torch', 'sqlalchemy', 'fastapi') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
