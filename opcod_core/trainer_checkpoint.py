"""The trainer's checkpoints: what a checkpoint stores besides the students' weights, and how a trainer
comes back from one (exact resume: ``opcod_core.trainer``'s module docstring lists the state).

A mixin of ``opcod_core.trainer.Trainer`` (subclasses such as the web worker's override
``save_checkpoint`` and call it), kept apart so that the trainer module stays the round/step loop.
"""

from __future__ import annotations

from opcod_core import checkpoint
from opcod_core import events as ev


class CheckpointMixin:
    """``_state``/``save_checkpoint``/``restore`` over the attributes ``Trainer.__init__`` defines."""

    def _state(self) -> dict:
        return {"next_task": self.next_task, "gates": self.gates, "round_scores": self.round_scores,
                "round_uncertainty": self.round_uncertainty, "orders": self.orders, "tau": self.tau,
                "mode": self.mode, "forced": self.forced, "evals": self.evals,
                "pending_human": self.pending_human, "trust": self.trust.to_dict(),
                "events_written": self.events_written}

    def save_checkpoint(self, permanent: bool = False) -> None:
        task = self.tasks[self.next_task - 1] if self.next_task else ("start",)
        # Unique per save (a pause can checkpoint the same task twice): a checkpoint directory is never
        # replaced in place, so a kill at any moment leaves the previous one intact.
        tag = f"task-{self.next_task:06d}-e{self.events_written:07d}"
        path = checkpoint.save_checkpoint(self.out_dir, tag, self.students, self._state(),
                                          keep=self.config.keep_checkpoints, permanent=permanent,
                                          previous=self.last_checkpoint)
        self.last_checkpoint = path
        self.emit(ev.CheckpointEvent(tag=tag, path=str(path), next_task=self.next_task, after=list(task),
                                     events_before=self.events_written, permanent=permanent))

    def restore(self) -> bool:
        path = checkpoint.latest_checkpoint(self.out_dir)
        if path is None:
            return False
        st = checkpoint.load_state(path)
        for name, rt in self.students.items():
            rt.load(path / name)
        self.last_checkpoint = path
        self.next_task = st["next_task"]
        self.gates, self.round_scores = st["gates"], st["round_scores"]
        self.round_uncertainty, self.orders = st.get("round_uncertainty"), st.get("orders", {})
        self.tau, self.mode, self.forced = st["tau"], st["mode"], st["forced"]
        self.evals, self.pending_human = st["evals"], st["pending_human"]
        self._trust_state = st.get("trust")
        # events_written counts the checkpoint event itself (it was emitted right after saving)
        self.events_written = st["events_written"] + 1
        return True

    def _position_of(self, task_index: int) -> tuple[int, int]:
        """(round, global step of the next step) at task ``task_index``: steps are numbered in task order."""
        task = self.tasks[min(task_index, len(self.tasks) - 1)]
        return task.round, sum(t.kind == "step" for t in self.tasks[:task_index])
