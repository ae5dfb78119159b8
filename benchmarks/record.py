"""Where a benchmark's figures go: a line in its own table of docs/benchmarks.md.

Each benchmark has a section (``## <title>``) whose first table holds one line per invocation (the date,
the command, the machine, the figures). ``record`` inserts the line after that table's last row, so prose
written under a table stays where it is, and creates the section at the end of the file when it is new.
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "| date | command | machine | figures |\n|---|---|---|---|\n"
PREAMBLE = ("# Benchmarks\n\nEach line: the date, the command, the machine and the figures it printed. "
            "Ratios come from one invocation (both sides measured side by side).\n")


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores"


def table_line(command: str, figures: str) -> str:
    return f"| {datetime.now(timezone.utc):%Y-%m-%d} | `{command}` | {machine()} | {figures} |\n"


def record(title: str, command: str, figures: str, doc: Path = DOC) -> None:
    """Add one line to the table of section ``## title`` of ``doc``."""
    text = doc.read_text() if doc.exists() else PREAMBLE
    lines = text.splitlines(keepends=True)
    line = table_line(command, figures)
    heading = f"## {title}\n"
    if heading not in lines:
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        doc.write_text(text + sep + heading + "\n" + HEADER + line)
        return
    i = lines.index(heading) + 1
    while i < len(lines) and not lines[i].startswith("|"):
        if lines[i].startswith("## "):
            break
        i += 1
    if i >= len(lines) or not lines[i].startswith("|"):  # a section without a table yet
        lines[i:i] = [HEADER, line, "\n"] if i < len(lines) else ["\n", HEADER, line]
    else:
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        lines.insert(i, line)
    doc.write_text("".join(lines))
