"""Turn a run config into ready students: resolve model references, build tiny models offline,
run (and cache) the supervised warm-up, attach a generation backend.

Model references: ``tiny:llama`` / ``tiny:qwen2`` build a ~1M-parameter random model with a
byte-level BPE tokenizer trained offline on the built-in data; anything else goes to
``models.load_causal_lm`` (a hub id or a local directory). ``aliases`` lets the caller map names
such as the demo's ``smollm2-135m-instruct`` to a prepared local directory.

Warm-ups are cached under ``cache_dir/warm/<hash of every input>``: a second run with the same
student, data, template and seed reloads the warmed weights instead of training them again. A
student is warmed up in one of two ways: the ``warmup_*`` warm-up (``opcod_core.warmup``: tiny and
science-world students) or the supervised specialisation (``specialize`` section,
``opcod_core.specialize``: real models). Fields added to ``StudentConfig`` later
(``specialize``, ``chat_template_kwargs``) enter the key only when set, so the keys of configs that
do not use them, and the weights cached under them, stay valid.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

from opcod_core import models
from opcod_core.assets import resolve_local_model
from opcod_core.build_check import BuildCheckError, check_build, write_check
from opcod_core.anchoring import TutorTemplate
from opcod_core.config import RunConfig, StudentConfig
from opcod_core.data.types import SplitDataset
from opcod_core.generation.hf import HFBackend
from opcod_core.specialize import specialize
from opcod_core.student import StudentRuntime
from opcod_core.tiny_corpus import tiny_corpus
from opcod_core.warmup import ConvergeSchedule, partial_split, skewed_warm_up, warm_up

WARMUP_VERSION = 3  # 2: partly known domains in skewed_warm_up; 3: the code digest covers the item helpers


def tutor_template(config: RunConfig) -> TutorTemplate:
    t = config.tutor
    return TutorTemplate(system=t.system, user=t.user, prefill=t.prefill, stop=tuple(t.stop),
                         show_gold=t.show_gold)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


TINY_SIZE = {"hidden": 128, "layers": 2, "heads": 4, "intermediate": 256}


def _tiny(ref: str, seed: int, template: TutorTemplate):
    arch = ref.split(":", 1)[1] or "llama"
    tok = models.build_tiny_tokenizer(tiny_corpus(template), vocab_size=2048)
    model = models.build_tiny_model(tok, arch=arch, seed=seed, **TINY_SIZE)
    return model, tok


def load_base(st: StudentConfig, index: int, config: RunConfig, aliases: dict[str, str],
              cache_dir: Path | None = None, attempt: int = 0):
    ref = aliases.get(st.model, st.model)
    ref = resolve_local_model(ref, cache_dir) or ref
    if ref.startswith("tiny:"):
        return _tiny(ref, seed=student_seed(st, config, index, attempt), template=tutor_template(config))
    if ref.startswith("tinyword:"):  # word-level tokenizer over the data source's texts (opcod_core.wordtok)
        from opcod_core.wordtok import build_word_student
        return build_word_student(ref, student_seed(st, config, index, attempt), tutor_template(config),
                                  config.data.source)
    return models.load_causal_lm(ref, device="cpu", dtype=config.dtype)


def make_backend(config: RunConfig, model, tokenizer, device: str, seed: int = 0):
    """The student's generation backend. vLLM is imported only when asked for, so the core works
    without it; its engine starts from the weights ``model`` has now and is synced after updates."""
    if config.backend == "transformers":
        return HFBackend(model, tokenizer, device=device)
    from opcod_core.generation.vllm import VLLMBackend

    return VLLMBackend(model, tokenizer, config.vllm, device=device, dtype=config.dtype, seed=seed)


def _warmup_domains(st: StudentConfig, config: RunConfig) -> tuple[str, ...]:
    """The domains whose facts a student's warm-up teaches: its warm-up domains, else its strong one."""
    return tuple(st.warmup_domains or ((st.strong_domain,) if st.strong_domain else config.data.domains))


def _specialize_domains(st: StudentConfig) -> tuple[str, ...]:
    """The domains a specialisation learns: ``specialize.domains``, else the strong domain."""
    assert st.specialize is not None
    return tuple(st.specialize.domains or (st.strong_domain,))


def specialize_items(st: StudentConfig, data: SplitDataset) -> list:
    """Train items of a student's specialisation (its strong domain's train split by default)."""
    return [it for d in _specialize_domains(st) for it in data.get(d, "train")]


# Seed offset of a build's later attempts (``warmup_attempts``): far above every build seed's own range
# (1000 x build seed + position), so an attempt never reuses another specialist's or build seed's draws.
ATTEMPT_SEED_STRIDE = 100_000


def student_seed(st: StudentConfig, config: RunConfig, index: int, attempt: int = 0) -> int:
    """Seed of a student's initial weights and warm-up: ``build_seed``, else the run's seed and position;
    a later build attempt adds ``ATTEMPT_SEED_STRIDE`` per attempt (attempt 0 is the seed itself, so a
    build that passes at once is the build from before attempts existed). What the student knows (its
    known units) stays keyed by attempt 0's seed: an attempt redraws weights and batches, not knowledge."""
    base = st.build_seed if st.build_seed is not None else config.seed * 7 + index
    return base + ATTEMPT_SEED_STRIDE * attempt


def warmup_items(st: StudentConfig, config: RunConfig, index: int,
                 data: SplitDataset) -> tuple[list, list, list, list]:
    """(own, hinted, partly known, corrupt) train items of a student's warm-up: its warm-up domains are
    own; a hinted domain it partly knows (``warmup_partial``) gives a (known items, draw weight) pool (the
    weight is ``warmup_partial_weight``'s, else the share: the "share" of ``skewed_examples``) and keeps
    the rest hinted (``opcod_core.warmup.partial_split``); a corrupt domain's items are also taught in the
    tutor format from the wrong fact table (``warmup_corrupt_domains``). A domain both partly known and
    corrupt (the v3 weak domain): the known items are learned right, the rest are hinted and corrupt, with
    their facts wrong only on the units the student does not know."""
    own = [it for d in _warmup_domains(st, config) for it in data.get(d, "train")]
    hinted: list = []
    partly: list = []
    unknown_rest: dict[str, list] = {}      # a partly known corrupt domain's items outside its known units
    for d in st.warmup_hinted_domains or ():
        share = (st.warmup_partial or {}).get(d)
        if share is None:
            hinted += data.get(d, "train")
            continue
        known, rest, units = partial_split(data.get(d, "train"), share, f"{student_seed(st, config, index)}-{d}")
        partly.append((known, (st.warmup_partial_weight or {}).get(d, share)))
        if d in (st.warmup_corrupt_domains or ()):   # weak, not ignorant: wrong only where it knows nothing
            from opcod_core.data.sciworld3 import corrupt_where_unknown

            rest = unknown_rest[d] = [corrupt_where_unknown(it, units) if "corrupt_hint" in it.meta else it
                                      for it in rest]
        hinted += rest
    corrupt = [it for d in st.warmup_corrupt_domains or () for it in unknown_rest.get(d, data.get(d, "train"))]
    missing = [it.id for it in corrupt if "corrupt_hint" not in it.meta]
    if missing:
        raise ValueError(f"student {st.name}: warmup_corrupt_domains needs items with a corrupted hint "
                         f"(data source sciworld3); {len(missing)} items have none, e.g. {missing[0]!r}")
    return own, hinted, partly, corrupt


def warmup_data(st: StudentConfig, config: RunConfig, data: SplitDataset) -> SplitDataset:
    """The run's dataset, plus any domain the student's warm-up reads that the run does not train on (a
    specialist of a three-domain world in a two-domain run). Sources split per domain (sciworld), so a
    domain loaded alone has the same split as in a run that trains on it."""
    from opcod_core.data import load_dataset
    from opcod_core.data.spec import DataSpec

    needed = [d for d in warmup_domains_all(st, config) if d not in data.splits]
    if not needed:
        return data
    c = config.data
    extra = load_dataset(DataSpec(source=c.source, path=c.path, domains=tuple(needed), level=c.level,
                                  mmlu_groups=c.mmlu_groups, hf_name=c.hf_name, hf_config=c.hf_config,
                                  hf_split=c.hf_split, fractions=tuple(c.fractions), split_seed=c.split_seed,
                                  max_items_per_domain=c.max_items_per_domain))
    return SplitDataset(splits={**data.splits, **extra.splits})


def warmup_domains_all(st: StudentConfig, config: RunConfig) -> tuple[str, ...]:
    """Every domain a student's warm-up reads (own, hinted, corrupt, specialisation)."""
    domains = list(_warmup_domains(st, config)) + list(st.warmup_hinted_domains or ())
    if st.specialize is not None:
        domains += list(_specialize_domains(st))
    return tuple(dict.fromkeys(domains))


def _items_digest(data: SplitDataset, domains) -> str:
    """Content hash of the train items a warm-up reads, so a change of the generator (questions, hints,
    worked answers) can never reload students warmed up on the old items."""
    h = hashlib.sha256()
    for d in sorted(domains):
        for it in data.get(d, "train"):
            h.update(json.dumps(it.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _warmup_code_digest() -> str:
    """Hash of the warm-up procedure's source: editing it must not reload students warmed up by the old
    code (WARMUP_VERSION alone relied on people remembering to bump it). That is opcod_core/warmup.py, the
    attempts and pools of this module (``warmup_items``, ``_warm_checked``, ``student_seed``) and the
    science world's module, whose helpers (``corrupt_where_unknown``, ``random_facts``) rewrite items at
    warm-up time, after the items digest has read them."""
    import inspect

    from opcod_core import warmup
    from opcod_core.data import sciworld3

    h = hashlib.sha256(Path(warmup.__file__).read_bytes())
    for fn in (warmup_items, _warm_checked, student_seed):
        h.update(inspect.getsource(fn).encode())
    h.update(Path(sciworld3.__file__).read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _specialize_code_digest() -> str:
    """Hash of the specialisation's source (opcod_core/specialize.py), for the keys of specialisations."""
    from opcod_core import specialize as module

    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:16]


# StudentConfig fields added after warm-up keys were first computed, with their defaults: left out of the
# key while at the default, so a config that does not use them keeps its key (and its cached warm-up).
KEY_NEUTRAL_DEFAULTS: dict[str, object] = {"specialize": None, "chat_template_kwargs": {},
                                           "warmup_corrupt_domains": None, "warmup_schedule": "constant",
                                           "warmup_own_contexts": "with_solution", "build_seed": None,
                                           "warmup_batch_size": 16, "warmup_hinted_facts": "given",
                                           "warmup_converge_loss": 0.15, "warmup_decay_steps": 1000,
                                           "warmup_hinted_contexts": "balanced", "warmup_hinted_share": None,
                                           "warmup_partial_weight": None, "warmup_own_context_share": None,
                                           "warmup_unknown_belief": 1.0, "warmup_attempts": 1}
# Not inputs of the warm-up: a check of its result (changing a tolerance must not rebuild the student).
KEY_EXCLUDED = ("warmup_expect", "warmup_self_teacher_tolerance")


def student_fingerprint(st: StudentConfig) -> dict:
    """The student's config as the warm-up key sees it (``KEY_NEUTRAL_DEFAULTS`` left out at default)."""
    dump = st.model_dump(mode="json")
    for name in KEY_EXCLUDED:
        dump.pop(name, None)
    for name, default in KEY_NEUTRAL_DEFAULTS.items():
        if dump.get(name) == default:
            dump.pop(name)
    return dump


def warmup_key(st: StudentConfig, config: RunConfig, index: int, data: SplitDataset | None = None) -> str:
    """Hash of every input of a student's warm-up. With ``build_seed`` the student's position, the run's
    seed and the run's domain pair are left out (the items it reads are in the key by content), so a
    specialist is one cached student in every pair that names it."""
    domains = set(warmup_domains_all(st, config))
    extra: dict = {}
    if st.specialize is not None:
        extra["specialize_code"] = _specialize_code_digest()
    data_cfg = config.data.model_dump(mode="json")
    where: dict = {"index": index, "seed": config.seed}
    if st.build_seed is not None:
        data_cfg.pop("domains")
        where = {}
    blob = json.dumps({"v": WARMUP_VERSION, "code": _warmup_code_digest(), **where,
                       "student": student_fingerprint(st),
                       "items": _items_digest(data, domains) if data is not None else None,
                       "data": data_cfg,
                       "tutor": [config.tutor.system, config.tutor.user, config.tutor.prefill,
                                 list(config.tutor.stop)], "dtype": config.dtype, **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_student(index: int, config: RunConfig, data: SplitDataset, cache_dir: Path | None = None,
                  aliases: dict[str, str] | None = None,
                  progress: Callable[[str, int, int, float], None] | None = None) -> StudentRuntime:
    """Student ``index`` of the config, warmed up (or reloaded from the warm-up cache) and with its
    generation backend: the same in this process (local executor) and inside a Ray actor."""
    aliases = aliases or {}
    st = config.students[index]
    data = warmup_data(st, config, data)
    device = resolve_device(config.device)
    warms = st.warmup_sft_steps > 0 or st.specialize is not None
    cached = None
    if warms and cache_dir is not None:
        cached = Path(cache_dir) / "warm" / warmup_key(st, config, index, data) / st.name
    if cached is not None and (cached / "config.json").exists():
        model, tok = models.load_causal_lm(str(cached), device="cpu", dtype=config.dtype)
        needs_warmup = False
    else:
        model, tok = load_base(st, index, config, aliases, cache_dir)
        needs_warmup = warms
    rt = _runtime(st, index, config, model, tok, device)
    if needs_warmup:
        rt, info, measured, self_teacher = _warm_checked(rt, st, config, index, data, aliases, cache_dir, progress)
        if cached is not None:
            models.save_model(rt.model, rt.tokenizer, cached)
            if measured is not None:
                write_check(cached, st, measured, info, self_teacher)
    rt.mark_initial()   # the run starts here: initial weights for weight_l2, the KL anchor, one_way, the EMA
    return rt


def _runtime(st: StudentConfig, index: int, config: RunConfig, model, tok, device: str) -> StudentRuntime:
    return StudentRuntime(st.name, model, tok, make_backend(config, model, tok, device, seed=config.seed * 7 + index),
                          config.optim, device=device, chat_template_kwargs=st.chat_template_kwargs,
                          ema_rate=config.teacher.ema_rate,
                          total_updates=config.schedule.rounds * config.schedule.steps_per_direction)


def _warm_checked(rt: StudentRuntime, st: StudentConfig, config: RunConfig, index: int, data: SplitDataset,
                  aliases: dict[str, str], cache_dir: Path | None, progress):
    """Warms the student up and checks its knowledge split (``check_build``), over up to ``warmup_attempts``
    attempts: an attempt whose converge-schedule loss has not converged by its step limit is given up there,
    and one that misses the check is discarded; the next starts from fresh weights and batches
    (``student_seed``'s attempt offset), the same known units. The last attempt is checked like a
    single-attempt build and fails loudly. Returns (runtime, what the warm-up did, measured, self-teacher);
    the record names the attempt that passed and what each discarded one did, so a report states how often
    a recipe needs a restart."""
    attempts = st.warmup_attempts
    discarded: list[dict] = []
    for attempt in range(attempts):
        last = attempt == attempts - 1
        if attempt:
            model, tok = load_base(st, index, config, aliases, cache_dir, attempt=attempt)
            rt = _runtime(st, index, config, model, tok, rt.device)
        info = _warm(rt, st, config, index, data, student_seed(st, config, index, attempt), progress,
                     give_up=not last, attempt=attempt)
        if attempts > 1:
            info["attempt"] = attempt
        if info.get("gave_up"):
            discarded.append(info)
            continue
        rt.reset_optimizer()
        # fails loudly, before anything is cached, when the intended knowledge split is missed
        try:
            checks = st.warmup_expect or st.warmup_self_teacher_tolerance is not None
            measured, self_teacher = check_build(rt, st, config, data) if checks else (None, None)
        except BuildCheckError as exc:
            if not last:
                discarded.append({**info, "measured": exc.measured})
                continue
            exc.warmup = {**info, **({"discarded": discarded} if discarded else {})}
            raise
        return rt, {**info, **({"discarded": discarded} if discarded else {})}, measured, self_teacher
    raise AssertionError("unreachable: the last attempt returns or raises")


def _warm(rt: StudentRuntime, st: StudentConfig, config: RunConfig, index: int, data: SplitDataset, seed: int,
          progress, give_up: bool = False, attempt: int = 0) -> dict:
    """Runs the student's warm-up or specialisation; returns what the build check records of it (steps
    run and, with the converge schedule, the step at which the decay began, or ``gave_up`` when the loss
    had not converged by the limit and ``give_up`` let the attempt end there)."""
    if st.specialize is not None:
        cb = (lambda i, n, loss, _name=st.name: progress(f"specialise {_name}", i, n, loss)) if progress else None
        specialize(rt, specialize_items(st, data), st.specialize, seed=seed, progress=cb)
        return {}
    items, hinted, partly, corrupt = warmup_items(st, config, index, data)
    label = f"warm-up {st.name}" + (f" (attempt {attempt + 1}/{st.warmup_attempts})" if st.warmup_attempts > 1 else "")
    cb = (lambda i, n, loss, _label=label: progress(_label, i, n, loss)) if progress else None
    if not st.warmup_hinted_domains:
        curve = warm_up(rt, items, st.warmup_sft_steps, st.warmup_lr, tutor_template(config), seed=seed,
                        batch_size=st.warmup_batch_size, progress=cb)
        return {"steps": len(curve)}
    # domain skew: facts of own domains, hint use for the others
    schedule = (ConvergeSchedule(st.warmup_lr, st.warmup_sft_steps, st.warmup_decay_steps, st.warmup_converge_loss,
                                 give_up=give_up)
                if st.warmup_schedule == "converge" else st.warmup_schedule)
    curve = skewed_warm_up(rt, items, hinted, st.warmup_sft_steps, st.warmup_lr, tutor_template(config),
                           seed=seed, unhinted_fraction=st.warmup_unhinted_fraction,
                           batch_size=st.warmup_batch_size, progress=cb, partly_known=partly, corrupt=corrupt,
                           schedule=schedule, own_contexts=st.warmup_own_contexts, hinted_facts=st.warmup_hinted_facts,
                           hinted_contexts=st.warmup_hinted_contexts, hinted_share=st.warmup_hinted_share,
                           own_context_share=st.warmup_own_context_share, unknown_belief=st.warmup_unknown_belief)
    info = {"steps": len(curve), "final_loss": sum(curve[-50:]) / max(len(curve[-50:]), 1)}
    info["loss_curve"] = loss_curve(curve)
    if isinstance(schedule, ConvergeSchedule):
        info["decay_start"] = schedule.decay_start
        if schedule.gave_up:
            info["gave_up"] = True
    return info


# Window of the recorded warm-up loss curve (mean training loss per window of steps): enough to see a
# plateau and the transition that ends it (ConvergeSchedule) in a build row, not every step's loss.
LOSS_CURVE_WINDOW = 250


def loss_curve(curve: list[float], window: int = LOSS_CURVE_WINDOW) -> list[float]:
    """The mean of ``curve`` over consecutive windows of ``window`` steps (the last one may be shorter)."""
    return [round(sum(part) / len(part), 4) for part in (curve[i:i + window] for i in range(0, len(curve), window))]
