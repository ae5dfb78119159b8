"""The fixed task list of a run (exact resume: a checkpoint records how many tasks are done).

Initial evaluation, then per round: the gate, the 2K steps (both directions; the slot that runs first is
``Trainer.direction_of``'s) and the evaluation. Tasks are named tuples, so a task in an event or a
checkpoint is the same JSON list as before (["eval", 0], ["step", 1, 1, 0])."""

from __future__ import annotations

from typing import Literal, NamedTuple, Union

from opcod_core.vocabulary import task_count


class RoundTask(NamedTuple):
    """An evaluation (round 0: before training) or a gate decision of a round."""

    kind: Literal["eval", "gate"]
    round: int


class StepTask(NamedTuple):
    """Step ``k`` (0-based) of the direction in ``slot`` (1 or 2) of round ``round``."""

    kind: Literal["step"]
    round: int
    slot: int
    k: int


Task = Union[RoundTask, StepTask]


def task_list(rounds: int, steps_per_direction: int) -> list[Task]:
    tasks: list[Task] = [RoundTask("eval", 0)]
    for r in range(1, rounds + 1):
        tasks.append(RoundTask("gate", r))
        tasks += [StepTask("step", r, slot, k) for slot in (1, 2) for k in range(steps_per_direction)]
        tasks.append(RoundTask("eval", r))
    assert len(tasks) == task_count(rounds, steps_per_direction)
    return tasks
