"""``opcod bench readme``: puts each report's generated result paragraph into the README between its markers.

Why: issue 13 asks that the README's result paragraph be updated from the report, not written by hand.
The README holds one block per kind of report,

    <!-- result:fidelity-pairs:BEGIN -->
    ...
    <!-- result:fidelity-pairs:END -->

(and the same for ``fidelity-trio``). The command replaces exactly the text between the two markers with
``opcod_core.bench.summary``'s paragraph of the report JSON of that kind, and leaves every other byte of the
README as it was. ``--check`` writes nothing and fails when a block differs from what its report gives (a
re-run benchmark whose README was not updated), so CI or a person can tell.

Every input is checked before anything is written: a missing or unreadable JSON, a JSON that is not a
benchmark report, two reports of one kind, a missing report Markdown next to the JSON (the paragraph links
to it), and markers that are missing, duplicated, out of order or nested. Each error names the file and
the marker, and the README is left unchanged.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from opcod_core.bench.summary import SUMMARIES, kind_of

MARKER_PREFIX = "<!-- result:"


class SyncError(Exception):
    """A report or README the command cannot use; the message names the file and the marker."""


def markers(kind: str) -> tuple[str, str]:
    return f"{MARKER_PREFIX}{kind}:BEGIN -->", f"{MARKER_PREFIX}{kind}:END -->"


def load_report(path: Path) -> tuple[str, dict]:
    """The report's kind and results; a SyncError naming the file when it is no benchmark report."""
    if not path.is_file():
        raise SyncError(f"{path}: no such report JSON")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SyncError(f"{path}: not a JSON file ({exc})") from None
    kind = kind_of(results)
    if kind is None:
        raise SyncError(f"{path}: not a benchmark report (expected the results JSON of `opcod bench fidelity`, "
                        f"kind {' or '.join(SUMMARIES)})")
    return kind, results


def paragraph(report: Path, readme: Path) -> tuple[str, str]:
    """(kind, paragraph) of one report JSON, its link relative to the README's folder."""
    kind, results = load_report(report)
    md = report.with_suffix(".md")
    if not md.is_file():
        raise SyncError(f"{md}: no report next to {report} (the paragraph links to it)")
    link = Path(os.path.relpath(md.resolve(), readme.resolve().parent)).as_posix()
    try:
        return kind, SUMMARIES[kind](results, link)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SyncError(f"{report}: not a complete {kind} report (no {exc!r} where the summary reads it)") from None


def _block(text: str, kind: str, readme: Path) -> tuple[int, int]:
    """Start and end offsets of the text between ``kind``'s markers (module docstring for the errors)."""
    begin, end = markers(kind)
    for marker in (begin, end):
        n = text.count(marker)
        if n == 0:
            raise SyncError(f"{readme}: marker {marker} not found")
        if n > 1:
            raise SyncError(f"{readme}: marker {marker} appears {n} times (expected once)")
    start, stop = text.index(begin) + len(begin), text.index(end)
    if stop < start:
        raise SyncError(f"{readme}: marker {end} comes before {begin}")
    if MARKER_PREFIX in text[start:stop]:
        raise SyncError(f"{readme}: another result marker lies between {begin} and {end}")
    return start, stop


def render(text: str, blocks: dict[str, str], readme: Path) -> str:
    """``text`` with each kind's block replaced by its paragraph; everything outside the blocks unchanged."""
    spans = sorted((*_block(text, kind, readme), kind) for kind in blocks)
    out, pos = [], 0
    for start, stop, kind in spans:
        if start < pos:
            raise SyncError(f"{readme}: the blocks of {kind} and another kind overlap")
        out += [text[pos:start], "\n" + blocks[kind] + "\n"]
        pos = stop
    return "".join(out + [text[pos:]])


def sync(reports: list[Path], readme: Path, check: bool = False) -> list[str]:
    """Writes the reports' paragraphs into ``readme`` (with ``check``: writes nothing). Returns the markers
    whose block differed from the paragraph. Raises SyncError, before any write, on any bad input."""
    if not readme.is_file():
        raise SyncError(f"{readme}: no such README")
    blocks: dict[str, str] = {}
    sources: dict[str, Path] = {}
    for report in reports:
        kind, text = paragraph(report, readme)
        if kind in blocks:
            raise SyncError(f"{report}: a second {kind} report (after {sources[kind]}); the README has one "
                            f"{markers(kind)[0]} block")
        blocks[kind], sources[kind] = text, report
    old = readme.read_bytes().decode("utf-8")
    new = render(old, blocks, readme)
    stale = [markers(kind)[0] for kind in blocks
             if render(old, {kind: blocks[kind]}, readme) != old]
    if not check and new != old:
        readme.write_bytes(new.encode("utf-8"))
    return stale


def run(reports: list[str], readme: str, check: bool) -> int:
    """The command: 0 when done (or, with ``check``, current), 1 when ``check`` finds a stale block, 2 on error."""
    path = Path(readme)
    try:
        stale = sync([Path(r) for r in reports], path, check)
    except SyncError as exc:
        print(f"opcod bench readme: {exc}", file=sys.stderr)
        return 2
    if check and stale:
        for marker in stale:
            print(f"{path}: the block after {marker} differs from its report; run `opcod bench readme` "
                  "without --check to update it", file=sys.stderr)
        return 1
    print(f"{path}: " + ("current" if check or not stale else "updated " + ", ".join(stale)))
    return 0
