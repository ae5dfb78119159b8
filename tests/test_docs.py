"""The documentation tells the truth about the code: the generated config reference is current, the
README mentions every setting, names only commands that exist, and its quick start is two commands."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _code_blocks(markdown: str) -> list[str]:
    """The contents of every fenced code block (```...```)."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)


def _section(markdown: str, title: str) -> str:
    """The text under a ``## title`` heading, up to the next heading of level 1 or 2."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^#{{1,2}} |\Z)", markdown, flags=re.S | re.M | re.I)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def _command_lines(block: str) -> list[str]:
    """Console commands of a code block: continuation lines joined, prompts and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _argv_of_opcod(line: str) -> list[str] | None:
    """The arguments after ``opcod`` when the line runs it (after any ``VAR=value`` prefixes)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    if words and words[0] in ("opcod", ".venv/bin/opcod"):
        return words[1:]
    return None


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_config_reference_is_current():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == module.render(), (
        "docs/config-reference.md is stale: run `.venv/bin/python scripts/config_reference.py`")


def test_config_reference_lists_every_field():
    from opcod_core.config import RunConfig

    text = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert "`rollout.n`" in text and "`students[i].model`" in text and "`gating.tau`" in text
    for name in RunConfig.model_fields:
        assert f"`{name}" in text, name


def test_readme_mentions_every_setting():
    from app.settings import Settings

    readme = _readme()
    names = {f"OPCOD_{name.upper()}" for name in Settings.model_fields}
    names |= set(re.findall(r"\bOPCOD_[A-Z][A-Z0-9_]*[A-Z0-9]\b", (ROOT / "app" / "settings.py").read_text()))
    missing = sorted(n for n in names if not re.search(rf"\b{n}\b", readme))
    assert missing == [], f"README does not mention {missing}"


def test_readme_opcod_commands_exist_and_parse():
    from opcod_core.cli import build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    seen = 0
    for block in _code_blocks(_readme()):
        for line in _command_lines(block):
            argv = _argv_of_opcod(line)
            if argv is None:
                continue
            seen += 1
            assert argv and argv[0] in commands, f"README runs `{line}`: no such command (have {sorted(commands)})"
            nested = _subcommands(commands[argv[0]])
            if nested:
                assert len(argv) > 1 and argv[1] in nested, f"README runs `{line}`: no such subcommand"
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:  # argparse exits on unknown options or bad values
                pytest.fail(f"README runs `{line}`, which `opcod` rejects (exit {exc.code})")
    assert seen >= 5, "README shows fewer opcod commands than expected: did the code-block parsing break?"


def test_quick_start_is_make_run_and_make_test():
    section = _section(_readme(), "Quick start")
    commands = []
    for block in _code_blocks(section):
        for line in _command_lines(block):
            commands.append(line.split("#", 1)[0].strip())
    assert commands == ["make run", "make test"]


def test_readme_relative_links_exist():
    readme = _readme()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    missing = [t for t in targets
               if not re.match(r"[a-z]+:|#|/", t) and not (ROOT / t.split("#", 1)[0]).exists()]
    assert missing == [], f"README links to missing files: {missing}"
