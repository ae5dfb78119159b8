"""``RunPolicy``: what a run config submitted to the server may reach on the server's machine.

Why: a config names files and services that the worker then opens with the server's rights. Unchecked,
``data.path: /etc/passwd`` made the CSV loader echo the file's first line into the run's error, any
directory could be loaded as a model (``students[].model``) or a dataset (``data.hf_name``), and
``ray.address`` made the worker a driver of any Ray cluster, which exchanges pickled objects with it (code
execution in the worker). The CLI (``opcod train``) keeps full freedom; this is the server's policy, applied
to every config the API or the dashboard stores (new runs and forks):

- **Local paths** (``data.path``, a local ``data.hf_name``, a local ``students[].model``) must resolve,
  symlinks followed, inside one of the read roots: ``<data_dir>/datasets``, the model cache and
  ``settings.read_roots``. A value is local when it looks like a path (absolute, ``./``, ``../``, ``~``) or
  names something that exists relative to the server's working directory.
- **Hub ids** (``org/name``) must match one of ``settings.allowed_hub_ids`` (shell patterns; the default
  ``*`` allows any, an empty list none). Built-in models (``tiny:``, ``tinyword:``, the packaged names) are
  always allowed.
- **``ray.address``** is refused: the cluster a worker joins is the worker's setting
  (``OPCOD_RAY_ADDRESS``, applied by ``with_worker_ray``), never the submitter's.
- **Budget** (``Budget``): tokens generated per step, optimizer steps in all, samples per question of the
  evaluation and the gate, each capped by a setting. A run that asked for R=1000, K=100000, B=4096, n=256
  and 32k tokens was accepted before; one such run occupies a worker for ever or kills it.

Errors name the config field and never quote a file's content.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from app.errors import Invalid
from opcod_core.config import RunConfig

BUILTIN_MODEL_PREFIXES = ("tiny:", "tinyword:")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class Budget:
    """What one submitted run may cost (``settings.budget_*``): tokens generated per training step, optimizer
    steps in all, samples per question of the evaluation and the gate."""

    step_tokens: int = 1 << 20
    total_steps: int = 10_000
    eval_samples: int = 64

    def check(self, cfg: RunConfig, prefix: str = "") -> None:
        ro = cfg.rollout
        step = ro.batch_prompts * ro.n * (ro.max_new_tokens + cfg.tutor.max_new_tokens)
        if step > self.step_tokens:
            raise Invalid.field(f"{prefix}rollout", f"a step generates batch_prompts x n x (max_new_tokens + tutor "
                                f"max_new_tokens) = {ro.batch_prompts} x {ro.n} x ({ro.max_new_tokens} + "
                                f"{cfg.tutor.max_new_tokens}) = {step:,} tokens, over this server's budget of "
                                f"{self.step_tokens:,} (OPCOD_BUDGET_STEP_TOKENS)")
        steps = cfg.schedule.rounds * len(cfg.students) * cfg.schedule.steps_per_direction
        if steps > self.total_steps:
            raise Invalid.field(f"{prefix}schedule", f"rounds x students x steps_per_direction = {steps:,} optimizer steps, "
                                f"over this server's budget of {self.total_steps:,} (OPCOD_BUDGET_TOTAL_STEPS)")
        for field, k in (("eval.k", cfg.eval.k), ("gating.val_k", cfg.gating.val_k)):
            if k > self.eval_samples:
                raise Invalid.field(f"{prefix}{field}", f"{k} samples per question, over this server's budget of "
                                    f"{self.eval_samples} (OPCOD_BUDGET_EVAL_SAMPLES)")


@dataclass(frozen=True)
class RunPolicy:
    roots: tuple[Path, ...]
    hub_ids: tuple[str, ...] = ("*",)
    builtin_models: tuple[str, ...] = ()
    budget: Budget = Budget()

    @classmethod
    def from_settings(cls, settings) -> "RunPolicy":
        from opcod_core.assets import LOCAL_MODELS

        roots = (settings.datasets_dir, settings.model_cache_dir, *settings.read_roots)
        budget = Budget(settings.budget_step_tokens, settings.budget_total_steps, settings.budget_eval_samples)
        return cls(roots=tuple(Path(r).expanduser().resolve() for r in roots),
                   hub_ids=tuple(settings.allowed_hub_ids), builtin_models=tuple(LOCAL_MODELS), budget=budget)

    def check(self, cfg: RunConfig, prefix: str = "") -> None:
        """Raises ``Invalid`` naming the first field that reaches outside what the server allows or costs
        more than its budget."""
        self.budget.check(cfg, prefix)
        if cfg.ray.address:
            raise Invalid.field(f"{prefix}ray.address", "a run cannot choose the Ray cluster; the worker joins the "
                                                        "one its settings name (OPCOD_RAY_ADDRESS)")
        if cfg.data.path:
            self._check_path(f"{prefix}data.path", cfg.data.path)
        if cfg.data.hf_name:
            self._check_ref(f"{prefix}data.hf_name", cfg.data.hf_name, "dataset")
        for i, st in enumerate(cfg.students):
            if st.model.startswith(BUILTIN_MODEL_PREFIXES) or st.model in self.builtin_models:
                continue
            self._check_ref(f"{prefix}students.{i}.model", st.model, "model")

    def _check_ref(self, field: str, value: str, what: str) -> None:
        if is_local(value):
            self._check_path(field, value)
        elif not HUB_ID.match(value) or ".." in value:
            raise Invalid.field(field, f"not a hub {what} id (org/name) nor a path")
        elif not any(fnmatch.fnmatchcase(value, pattern) for pattern in self.hub_ids):
            raise Invalid.field(field, f"hub {what} {value!r} is not allowed on this server (OPCOD_ALLOWED_HUB_IDS)")

    def _check_path(self, field: str, value: str) -> None:
        try:
            resolved = Path(value).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            raise Invalid.field(field, "not a usable path") from None
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots):
            raise Invalid.field(field, "outside the directories this server reads from (put the files under "
                                       f"{self.roots[0]}, or add a directory to OPCOD_READ_ROOTS)")


def is_local(value: str) -> bool:
    """Whether a model or dataset reference names a local path rather than a hub id."""
    if value.startswith(("/", "./", "../", "~", ".\\")) or "\\" in value or value in (".", ".."):
        return True
    try:
        return Path(value).exists()
    except (OSError, ValueError):
        return True


def with_worker_ray(cfg: RunConfig, address: str | None) -> RunConfig:
    """``cfg`` with the Ray cluster the worker's settings name (a stored config's own address is ignored)."""
    if cfg.ray.address == address:
        return cfg
    return cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": address})})
