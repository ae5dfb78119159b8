"""How the trainer reports progress: an observer protocol, a null observer and a JSONL observer.

The core never knows who listens. The headless CLI writes ``events.jsonl`` (the public contract of
``opcod train --out DIR``); the web worker writes the same events into the database. Every callback
receives a typed event (``opcod_core.events``), so one schema serves both sinks.

Exact resume: ``on_checkpoint`` events carry ``events_before`` (how many events preceded the
checkpoint); a resumed JSONL observer truncates the log to that count so nothing is duplicated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from opcod_core.events import Event


class Observer(Protocol):
    def on_event(self, event: Event) -> None:
        """Every event: run_start, gate, exchange, step, eval, break, checkpoint, override, replay, finish."""
        ...


class NullObserver:
    def on_event(self, event: Event) -> None:  # noqa: D102 - nothing to do
        return None


class MultiObserver:
    def __init__(self, *observers: Observer) -> None:
        self.observers = [o for o in observers if o is not None]

    def on_event(self, event: Event) -> None:
        for o in self.observers:
            o.on_event(event)


class CollectingObserver:
    """Keeps every event in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    def dicts(self, kind: str | None = None) -> list[dict]:
        """The events (of one type) as the JSON objects ``events.jsonl`` holds (tables, notebooks)."""
        return [e.to_dict() for e in self.events if kind is None or e.type == kind]


class JSONLObserver:
    """Appends one JSON object per line and flushes after each, so a crash loses at most one line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = sum(1 for _ in self.path.open()) if self.path.exists() else 0
        self._fh = self.path.open("a", encoding="utf-8")

    def truncate_to(self, n_events: int) -> None:
        """Drop events written after the checkpoint we resume from."""
        self._fh.close()
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[:n_events]
        self.path.write_text("".join(lines), encoding="utf-8")
        self.count = len(lines)
        self._fh = self.path.open("a", encoding="utf-8")

    def on_event(self, event: Event) -> None:
        self._fh.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        self._fh.flush()
        self.count += 1

    def close(self) -> None:
        self._fh.close()
