"""The fixed task list of a run and its numbering (exact resume: a checkpoint records how many tasks are done).

Initial evaluation, then per round: the gate, N x K steps (one direction per student as tutee, N the number
of students; the direction that runs in each slot is ``Trainer.direction_of``'s, decided right after the
gate by ``opcod_core.routing.round_tutees``) and the evaluation. Tasks are named tuples, so a task in an
event or a checkpoint is the same JSON list as before (["eval", 0], ["step", 1, 1, 0]).

Numbering (N = 2 gives the two-peer numbers): direction d is the one whose tutee is student d (1-based,
in ``config.students`` order); the global step of step k (0-based) of the direction in slot s (1-based)
of round r is (r - 1)·N·K + (s - 1)·K + k."""

from __future__ import annotations

from typing import Literal, NamedTuple, Union

from opcod_core.vocabulary import task_count


class RoundTask(NamedTuple):
    """An evaluation (round 0: before training) or a gate decision of a round."""

    kind: Literal["eval", "gate"]
    round: int


class StepTask(NamedTuple):
    """Step ``k`` (0-based) of the direction in ``slot`` (1 to N) of round ``round``."""

    kind: Literal["step"]
    round: int
    slot: int
    k: int


Task = Union[RoundTask, StepTask]


def task_list(rounds: int, steps_per_direction: int, peers: int = 2) -> list[Task]:
    tasks: list[Task] = [RoundTask("eval", 0)]
    for r in range(1, rounds + 1):
        tasks.append(RoundTask("gate", r))
        tasks += [StepTask("step", r, slot, k) for slot in range(1, peers + 1) for k in range(steps_per_direction)]
        tasks.append(RoundTask("eval", r))
    assert len(tasks) == task_count(rounds, steps_per_direction, peers)
    return tasks


def global_step(r: int, slot: int, k: int, steps_per_direction: int, peers: int = 2) -> int:
    """Position of step k of the ``slot``-th direction to run in round r (module docstring)."""
    K = steps_per_direction
    return (r - 1) * peers * K + (slot - 1) * K + k


def total_steps(rounds: int, steps_per_direction: int, peers: int = 2) -> int:
    """Optimizer steps of a run: each of the ``peers`` students is tutee for K steps per round."""
    return peers * rounds * steps_per_direction
