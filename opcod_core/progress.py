"""Terminal progress for headless runs (rich): warm-up and training bars with round, direction,
step, ETA and the latest loss, and the final table of initial vs final accuracy with the Pareto
verdict. Purely presentation: it listens to the same events as every other observer."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from opcod_core.observer import MultiObserver


class ProgressReporter:
    def __init__(self, config, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), console=self.console,
                                 disable=not enabled)
        self.tasks: dict[str, int] = {}
        self.loss: float | None = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def _task(self, label: str, total: int) -> int:
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total, info="")
        return self.tasks[label]

    def on_progress(self, p: dict) -> None:
        if p["phase"] == "train":
            tid = self._task("train", p["total"])
            task = p["task"]
            where = f"round {task[1]} dir {task[2]} step {task[3] + 1}" if task[0] == "step" else f"{task[0]} {task[1]}"
            info = where + (f" loss {self.loss:.4f}" if self.loss is not None else "")
            self.progress.update(tid, completed=p["done"], info=info)
        else:
            tid = self._task(p["phase"], p["n"])
            self.progress.update(tid, completed=p["i"], info=f"loss {p['loss']:.3f}")

    def on_event(self, event) -> None:
        if event.type == "step":
            self.loss = event.loss

    def wrap(self, observer):
        return MultiObserver(observer, self)


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    domains = summary["domains"]
    table = Table(title="OPCoD result (test avg@k)")
    table.add_column("student")
    for d in domains:
        table.add_column(f"{d} initial → final", justify="right")
    table.add_column("Pareto improved")
    for name, s in summary["students"].items():
        cells = [f"{s['initial'][d]:.3f} → {s['final'][d]:.3f} ({s['final'][d] - s['initial'][d]:+.3f})"
                 for d in domains]
        table.add_row(name, *cells, "yes" if s["pareto_improved"] else "no")
    console.print(table)
