"""DESIGN section 3's dependency rules and the README's, checked by walking every import statement (ast),
by importing the web app in a fresh interpreter (transitive reach), and by looking for import circles."""

import ast
import subprocess
import sys
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


def test_routes_reach_the_database_only_through_services():
    """``app.api`` and ``app.web`` read and write through ``app.services``: no ORM, engine or app factory."""
    banned = ("app.models", "app.db", "app.main", "app.worker")
    bad = [(str(p.relative_to(ROOT)), m) for pkg in ("app/api", "app/web") for p, m in imports_of(pkg)
           if m in banned or m.startswith(tuple(f"{b}." for b in banned))]
    assert bad == []


def test_the_web_app_loads_no_model_code():
    """Transitive reach: building the app (every route, template global and service) imports no torch,
    transformers, vLLM, Ray or trainer module."""
    code = ("import sys; from app.main import create_app; from app.settings import Settings; "
            "create_app(Settings(database_url='sqlite://')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'vllm', 'ray') "
            "or m in ('opcod_core.trainer', 'opcod_core.student')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def module_graph(packages=("app", "opcod_core")) -> dict[str, set[str]]:
    """Project module -> project modules it imports (anywhere in the file). ``from pkg import name`` is an
    edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    files = {}
    for pkg in packages:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def owner(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                targets |= set(subs) if len(subs) == len(node.names) else {base, *subs}
        graph[mod] = {o for t in targets if (o := owner(t)) and o != mod}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    circles.append(sorted(comp))
    return circles


def test_circle_finder_sees_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert import_circles(module_graph()) == []
