"""DESIGN section 3's dependency rules, checked by walking every import statement (ast)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports_of(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    yield path, a.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


def env_reads(package: str):
    yield from _env_uses(ROOT / package)


def _env_uses(directory: Path):
    """Every use of os.environ / os.getenv except a plain assignment ``os.environ[key] = value``
    (the core may configure a third-party library that only reads the environment, e.g. vLLM's
    in-process engine switch; it never takes its own settings from there)."""
    for path in sorted(directory.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        writes = {id(t.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Subscript) and isinstance(t.ctx, ast.Store)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "getenvb"):
                if isinstance(node.value, ast.Name) and node.value.id == "os" and id(node) not in writes:
                    yield path, node.attr


def top(name: str) -> str:
    return name.split(".")[0]


def test_core_never_imports_web_or_database():
    banned = {"app", "sqlalchemy", "fastapi", "jinja2", "starlette", "alembic", "jinja2_fragments", "uvicorn"}
    bad = [(str(p.relative_to(ROOT)), m) for p, m in imports_of("opcod_core") if top(m) in banned]
    assert bad == []


def test_env_rule_tells_reads_from_writes(tmp_path):
    (tmp_path / "w.py").write_text("import os\nos.environ['A'] = '0'\n")
    (tmp_path / "r.py").write_text("import os\nx = os.environ['A']\ny = os.getenv('B')\nz = os.environ.get('C')\n")
    found = [(p.name, a) for p, a in _env_uses(tmp_path)]
    assert sorted(found) == [("r.py", "environ"), ("r.py", "environ"), ("r.py", "getenv")]


def test_core_never_reads_environment_variables():
    assert [(str(p.relative_to(ROOT)), a) for p, a in env_reads("opcod_core")] == []


def test_web_and_api_never_import_models_or_trainer():
    banned_top = {"torch", "transformers", "vllm", "ray"}
    bad = []
    for pkg in ("app/web", "app/api"):
        if not (ROOT / pkg).exists():
            continue
        for p, m in imports_of(pkg):
            if top(m) in banned_top or m.startswith("opcod_core.trainer") or m.startswith("opcod_core.student"):
                bad.append((str(p.relative_to(ROOT)), m))
    assert bad == []


def test_only_the_worker_calls_the_trainer():
    if not (ROOT / "app").exists():
        return
    bad = [(str(p.relative_to(ROOT)), m) for p, m in imports_of("app")
           if m.startswith("opcod_core.trainer") and "app/worker" not in str(p)]
    assert bad == []
