"""The OPCoD trainer: rounds, directions, steps, evaluation, checkpoints and controls.

The maths (DESIGN section 2). Students π¹..πᴺ (the paper: N = 2; here 2 to 8); domains d (the paper:
A, B; here 2 to 8). For round r = 1..R:

* Gate: avg@k accuracy sⁱ_d of each student on the validation split of each domain;
  s*_d = maxᵢ sⁱ_d; cognizance gap Δᵢ = Σ_d (s*_d − sⁱ_d) / s*_d; student i may tutor iff Δᵢ ≤ τ.
* Direction 1 (π¹ tutee) for K steps, then direction 2 (π² tutee), ..., direction N: one direction per
  student as tutee, in a fixed order (``opcod_core.tasks``). With two students the tutor of a direction
  is the other one; with N each question is routed to the cognizant peer with the best validation
  score on its domain (or round robin, or all of them: ``opcod_core.step_routing`` has every rule).
  Only the tutee's weights change.
* One step (``opcod_core.step``): on-policy rollouts y ~ π_T(·|x); correct sibling s; anchored
  feedback f from the tutor; self-teacher context c = (x, s, f) under stop-gradient;
  L = mean over rollouts with a teacher context of (1/|y|) Σ_t D(π_T(·|x, y<t) ‖ sg π_T(·|c, y<t)),
  D = generalized JSD_β (default β = 0.5), forward KL or reverse KL (``opcod_core.losses``).
* Evaluation: test-split avg@k before training, after every round (the last is the final score).
  A student Pareto-improves when no domain falls below its initial score and one rises.

Choices the paper leaves open, made here (and configurable where it matters):
* Data order: one stream over the union of every domain's train split, shuffled per epoch with
  ``Random(f"{seed}-data-{epoch}")``; step g takes prompts [g·B, (g+1)·B) of the stream, whatever the
  direction, so the tutees see different prompts.
* The correct sibling s: uniform over the tutee's *other* correct rollouts of the same prompt.
* The loss averages over rollouts that have a teacher context (skipped ones are counted in
  ``train/skipped``, not in the denominator); tokens of a rollout are averaged first (1/|y|).
* Optimizer: AdamW per student (state kept across rounds), gradient clipping at ``max_grad_norm``;
  learning rate, batch size and token limits are config values (the paper does not give them).
* Gate evaluation uses ``gating.val_k`` samples on at most ``gating.val_max_items`` validation
  questions per domain (the first ones of the seeded split). Each gate record also carries the
  standard error of every score and of Δ (a paired bootstrap over the questions with a fixed seed,
  ``opcod_core.gating``), so a reader sees when a decision is a coin flip; decisions still compare Δ
  with τ.
* Common random numbers for evaluation: every test evaluation (initial and after each round) of a
  student uses the same sampling seed (``Random(f"{seed}-eval-{student index}")``), and so does every
  gate evaluation (``f"{seed}-gate-{student index}"``): unchanged weights give identical scores, and
  a change between rounds is not a fresh draw of sampling noise.
* Direction order: directions 1, 2, ..., N in every round (the paper's order), unless
  ``schedule.tutor_first`` is set: then the directions whose tutee has a peer this round's gate lets
  tutor run first (``routing.round_tutees``; two students: when exactly one may tutor, the direction in
  which it tutors runs first). The ``direction`` of steps and exchanges still names who is tutee
  (d = student d). The order is decided once, right after the gate, and checkpointed; an override
  later in the round does not reorder it. Off by default; the demo preset uses it so that its first
  minutes show tutoring whichever student its (noisy) gate silences.
* Tutor trust: every tutor's break rate per domain with a Wilson interval, and (``trust.auto_quarantine``
  or a person) the quarantine of tutors that break too often: ``opcod_core.trust_run``.
* Benchmark faults (``faults``, off by default, never part of a real run): from a given global step one
  tutor's feedback is replaced by well-formed but wrong feedback before anchoring (``opcod_core.faults``),
  so a benchmark can measure how fast tutor trust quarantines it.
* Break rate = P(wrong with f | right without f) with its counts (``opcod_core.breakrate``); the
  "without f" teacher is the real teacher context minus f (in context mode f: the bare question).
* Context mode f: no correct sibling is drawn, since the teacher never sees one (``opcod_core.step``).
* Human run-level overrides (force/mute a tutor, change τ or the gating mode) recompute this
  round's gate decisions from the scores already measured, from the next step on. The step uses the
  live gating mode, so switching to or from ``manual`` starts or stops the approval queue at that step.
* Human-edited feedback (an exchange override) becomes an extra training exchange for that tutee
  at its next step, with the stored rollout and s and the edited f, marked ``source: human``.
* Optimizer options (``optim``): AdamW ``betas`` and ``eps``, a linear learning-rate warm-up over the
  first ``warmup_steps`` updates of each student and a ``constant`` or ``cosine`` schedule (down to
  ``min_lr_ratio``·lr after rounds × K updates), a pure function of the student's update count
  (``opcod_core.optim``); the lr of each update is the ``train/lr`` metric. Defaults: constant lr,
  no warm-up, PyTorch's AdamW betas and eps, i.e. unchanged behaviour. The supervised warm-up keeps its
  own optimizer and learning rate.
* ``train/weight_l2`` = ||θ − θ_init||₂ of the tutee after its update, θ_init = the weights at the start
  of the run (after the warm-up), a frozen CPU snapshot per student (``opcod_core.reference``).
* Deviation when on, ``teacher.ema_rate`` (off by default): the self-teacher's logits come from an EMA of
  the tutee's weights, θ_ema ← (1 − rate)·θ_ema + rate·θ after each update, θ_ema = θ_init at the
  start (SDPO's regularised teacher; TRL's EMA teacher), instead of the live weights. It is used
  wherever the self-teacher is scored (the loss, the s-only heatmap, replays); the break-rate sample
  decodes with the generation engine, i.e. the live weights, and so does not follow it.
* Deviation when on, ``loss.kl_anchor`` = c > 0 (off by default): the objective becomes
  L + c · mean over trained rollouts of (1/|y|) Σ_t KL(π_θ(·|x, y<t) ‖ π_init(·|x, y<t)), full vocabulary,
  on the student context, π_init = the frozen θ_init. Direction: KL(π_θ ‖ π_init), the one RLHF and
  GRPO's KL penalty use: it is evaluated at the tokens the current policy samples, is mode-seeking
  (it penalises mass that π_θ moves where π_init has little, which is how drift to degenerate text
  starts) and does not force π_θ to cover every mode of π_init. Reported as ``loss/kl_anchor`` (the mean
  KL before the coefficient); the step's ``loss`` stays the distillation loss. The GRPO baseline adds
  the same term when it is set.
* ``grpo`` and ``one_way`` baselines: see ``opcod_core.baselines``. In ``one_way`` the teacher is the
  peer's *initial* weights, frozen for the whole run (``one_way_domains: strong`` restricts it to the
  peer's strong domain).
* Thinking models: a student's ``chat_template_kwargs`` go to every prompt it renders (the ``paper``
  preset turns Qwen3's thinking off: ``enable_thinking: false``). ``<think>...</think>`` blocks are
  text the reader never sees: they are removed from the sibling s put in the teacher context, from
  the attempt the tutor reads, and from what the answer checker reads (an answer only inside
  ``<think>`` never counts), by ``opcod_core.thinking.strip_think``. The rollout's token ids keep them:
  the reasoning tokens are part of the policy and of the loss.
* Specialists: the paper fine-tunes each student into a domain specialist before OPCoD. A student's
  ``specialize`` section does that here (supervised, on its strong domain's train split, the answer
  format with the dataset's worked solution where it has one; ``opcod_core.specialize``), with our
  hyper-parameters (the paper gives none); or ``model`` points at specialist checkpoints made elsewhere.
* End of sequence: a rollout that ended by sampling EOS keeps that token as its last position
  (``generation.base``), so the decision to stop is in every loss (student vs self-teacher, the
  one-way teacher, GRPO's log-probabilities), as TRL does for completions and as the warm-up
  already trains it; ``text`` (what the tutor, s and the answer check read) never holds it.
  ``rollout.score_eos: false`` drops that position again, only to reproduce reports made before.
  Rollouts cut at ``max_new_tokens`` or by a stop string have no EOS and nothing is added.
* Step metrics on the rollouts themselves: shares of finish reasons (``rollout/finish_eos``,
  ``_stop``, ``_length``, summing to 1), ``rollout/parse_failure`` (share with no parsable answer)
  and ``rollout/mean_length`` (scored tokens, EOS included when scored): the signs of a policy
  that stops drifting or loses the answer format.

Exact resume: the run is a fixed list of tasks (initial eval; per round: gate, the N·K steps, eval).
A checkpoint stores the next task index and the few pieces of state that are not a pure function of
(seed, position) — weights, optimizer states and update counts (the lr schedule), initial weights
and EMA teachers, gate records and their standard errors, the round's direction order, evaluations,
pending human exchanges, tutor trust —
so an interrupted run resumed from its last checkpoint replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from opcod_core import baselines
from opcod_core import events as ev
from opcod_core.apply_controls import apply_controls
from opcod_core.build import tutor_template
from opcod_core.executors import build_students, close_students
from opcod_core.config import RunConfig
from opcod_core.controls import Controls, NullControls
from opcod_core.data import load_dataset
from opcod_core.data.spec import DataSpec
from opcod_core.data.types import Item, SplitDataset
from opcod_core.evaluation import EvalScore, evaluate_domains
from opcod_core.faults import poisoner
from opcod_core.gating import GapUncertainty, GateRecord, decide_gates, gap_uncertainty
from opcod_core.human_feedback import human_event
from opcod_core.observer import NullObserver, Observer
from opcod_core.routing import direction_numbers, round_tutees
from opcod_core.step import StepContext, exchange_event, sample_rollouts
from opcod_core.step_metrics import step_metrics
from opcod_core.step_routing import default_tutor, step_tutor, step_tutors
from opcod_core.algorithms import ALGORITHMS
from opcod_core import tasks
from opcod_core.trainer_checkpoint import CheckpointMixin
from opcod_core.trust_run import initial_trust, observe_step, restore_trust, trust_summary
from opcod_core.vocabulary import pareto_improved


@dataclass
class RunResult:
    status: str               # finished | paused | cancelled
    summary: dict | None


def data_spec(config: RunConfig) -> DataSpec:
    d = config.data
    return DataSpec(source=d.source, path=d.path, domains=tuple(d.domains), level=d.level,
                    mmlu_groups=d.mmlu_groups, hf_name=d.hf_name, hf_config=d.hf_config, hf_split=d.hf_split,
                    fractions=tuple(d.fractions), split_seed=d.split_seed,
                    max_items_per_domain=d.max_items_per_domain)


class Trainer(CheckpointMixin):
    def __init__(self, config: RunConfig, out_dir: str | Path, observer: Observer | None = None,
                 controls: Controls | None = None, cache_dir: str | Path | None = None,
                 aliases: dict[str, str] | None = None, data: SplitDataset | None = None,
                 progress: Callable[[dict], None] | None = None, students: dict | None = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.observer = observer or NullObserver()
        self.controls = controls or NullControls()
        self.progress = progress
        self.template = tutor_template(config)
        self.data = data or load_dataset(data_spec(config))
        for d in config.data.domains:
            if d not in self.data.domains:
                raise ValueError(f"data.domains: '{d}' not in the dataset (has {self.data.domains})")
        self.owns_students = not students  # placed here, so released by close()
        self.students = students or build_students(
            config, self.data, Path(cache_dir) if cache_dir else None, aliases,
            progress=(lambda label, i, n, loss: progress({"phase": label, "i": i, "n": n, "loss": loss}))
            if progress else None)
        self.names = [s.name for s in config.students]
        if config.algorithm == "one_way":
            baselines.check_same_tokenizer(*self.students.values())
        self.train_stream = sorted((it for d in config.data.domains for it in self.data.get(d, "train")),
                                   key=lambda it: it.id)
        self.items_by_id = {it.id: it for it in self.train_stream}
        self.poison = poisoner(config, self.train_stream)     # a benchmark fault (opcod_core.faults), else None
        self.tasks = self._task_list()
        # mutable run state (what a checkpoint stores)
        self.next_task = 0
        self.gates: dict[str, dict] = {}
        self.round_scores: dict[str, dict[str, float]] = {}
        self.round_uncertainty: dict | None = None     # GapUncertainty.to_dict() of this round's gate
        self.orders: dict[str, list[int]] = {}          # round -> directions in the order they run
        self.tau = config.gating.tau
        self.mode = config.gating.mode
        self.forced: dict[str, str] = {}
        self.evals: dict[str, dict[str, dict[str, float]]] = {}   # round -> student -> domain -> acc
        self.pending_human: dict[str, list[dict]] = {n: [] for n in self.names}
        self.trust = initial_trust(config)              # tutor break counts and quarantines (trust_run)
        self._trust_state: dict | None = None           # the checkpoint's, re-applied after the resume event
        self.events_written = 0
        self.last_checkpoint: Path | None = None   # written or resumed from by this trainer (hard links)

    # --- the fixed task list ---------------------------------------------------------------------
    def _task_list(self) -> list[tuple]:
        sc = self.config.schedule
        return tasks.task_list(sc.rounds, sc.steps_per_direction, len(self.config.students))

    def global_step(self, r: int, slot: int, k: int) -> int:
        """Position of step k of the ``slot``-th direction (1 to N) to run in round r (``opcod_core.tasks``)."""
        return tasks.global_step(r, slot, k, self.config.schedule.steps_per_direction, len(self.names))

    def direction_of(self, r: int, slot: int) -> int:
        """The direction (d: student d is tutee) that runs ``slot``-th in round r."""
        return self.orders.get(str(r), list(range(1, len(self.names) + 1)))[slot - 1]

    # --- events ----------------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        self.events_written += 1
        self.observer.on_event(event)

    # --- data ----------------------------------------------------------------------------------------
    def batch_for(self, g: int) -> list[Item]:
        B, N = self.config.rollout.batch_prompts, len(self.train_stream)
        out = []
        for pos in range(g * B, (g + 1) * B):
            epoch, idx = divmod(pos, N)
            order = list(range(N))
            random.Random(f"{self.config.seed}-data-{epoch}").shuffle(order)
            out.append(self.train_stream[order[idx]])
        return out

    def eval_items(self, domain: str, split: str) -> list[Item]:
        items = self.data.get(domain, split)
        cap = self.config.gating.val_max_items if split == "validation" else self.config.eval.max_items
        return items[:cap] if cap else items

    # --- tasks --------------------------------------------------------------------------------------
    def _evaluate_scores(self, split: str, k: int, seed_tag: str) -> dict[str, dict[str, EvalScore]]:
        """Every student on every domain. ``seed_tag`` names the evaluation, not the round: the same
        tag gives the same sampling seed (common random numbers, module docstring)."""
        cfg = self.config
        max_new = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
        scores: dict[str, dict[str, EvalScore]] = {}
        for si, name in enumerate(self.names):
            seed = random.Random(f"{cfg.seed}-{seed_tag}-{si}").randrange(2**31)
            scores[name] = evaluate_domains(self.students[name],
                                            {d: self.eval_items(d, split) for d in cfg.data.domains},
                                            k, cfg.eval.temperature, max_new, seed)
        return scores

    def _evaluate_all(self, split: str, k: int, seed_tag: str) -> dict[str, dict[str, float]]:
        return {name: {d: r.accuracy for d, r in res.items()}
                for name, res in self._evaluate_scores(split, k, seed_tag).items()}

    def task_eval(self, r: int) -> None:
        scores = self._evaluate_all("test", self.config.eval.k, "eval")
        self.evals[str(r)] = scores
        for name, per in scores.items():
            for d, acc in per.items():
                self.emit(ev.EvalEvent(round=r, student=name, split="test", domain=d, k=self.config.eval.k,
                                       accuracy=acc, n_items=len(self.eval_items(d, "test"))))

    def task_gate(self, r: int) -> None:
        res = self._evaluate_scores("validation", self.config.gating.val_k, "gate")
        self.round_scores = {name: {d: s.accuracy for d, s in per.items()} for name, per in res.items()}
        self.round_uncertainty = gap_uncertainty({name: {d: list(s.per_item) for d, s in per.items()}
                                                  for name, per in res.items()}, seed=self.config.seed).to_dict()
        self._decide(r)
        self.orders[str(r)] = self._direction_order()

    def _direction_order(self) -> list[int]:
        """Directions in fixed order, or with ``schedule.tutor_first`` those whose tutee has a peer that may
        tutor first (``routing.round_tutees``; two students: [2, 1] when only student 1 may tutor)."""
        may_tutor = {n for n in self.names if self.gates[n]["decision"] == "tutor"}
        return direction_numbers(self.names, round_tutees(self.names, may_tutor, self.config.schedule.tutor_first))

    def _decide(self, r: int, source_note: str | None = None) -> None:
        strong = {s.name: s.strong_domain for s in self.config.students}
        unc = GapUncertainty.from_dict(self.round_uncertainty) if self.round_uncertainty else None
        records = decide_gates(r, self.round_scores, self.tau, self.mode, strong, forced=self.forced or None,
                               uncertainty=unc)
        self.gates = {}
        for name in self.names:
            rec = records[name]
            self.gates[name] = rec.to_dict()
            self.emit(ev.GateEvent(**rec.to_dict(), split="validation", k=self.config.gating.val_k,
                                   n_items=dict(unc.n_items) if unc else None, note=source_note))

    def gate_record(self, name: str) -> GateRecord | None:
        d = self.gates.get(name)
        if d is None:
            return None
        return GateRecord(**d)

    # --- controls ---------------------------------------------------------------------------------------
    def _apply_controls(self, r: int, slot: int, k: int) -> str:
        return apply_controls(self, r, slot, k)

    # --- one step -------------------------------------------------------------------------------------
    def step_context(self, r: int, slot: int, k: int) -> StepContext:
        """The step's context: its tutee (direction d: student d), the default tutor (``step_routing``),
        every peer with its gate record, this round's validation scores and the quarantined tutors."""
        d = self.direction_of(r, slot)
        tutee_name = self.names[d - 1]
        tutor_name = default_tutor(self.names, tutee_name)
        g = self.global_step(r, slot, k)
        return StepContext(self.config, r, d, k, g, self.students[tutee_name], self.students[tutor_name],
                           self.gate_record(tutor_name), self.batch_for(g), self.controls, self.template,
                           gating_mode=self.mode, peers={n: self.students[n] for n in self.names},
                           gates={n: self.gate_record(n) for n in self.names}, scores=self.round_scores,
                           quarantined=self.trust.quarantined(), poison=self.poison)

    def task_step(self, r: int, slot: int, k: int) -> None:
        cfg = self.config
        ctx = self.step_context(r, slot, k)
        t0 = time.perf_counter()
        sync0 = ctx.tutee.sync_seconds()
        rows, t_rollout, n_tokens = sample_rollouts(ctx)
        up = ALGORITHMS[cfg.algorithm](self, ctx, rows)
        out, human, breaks, t_feedback, t_train = up.out, up.human, up.breaks, up.t_feedback, up.t_train
        main = step_tutor(ctx, rows)
        if main != ctx.tutor.name:   # N peers: the step names the tutor it used most (step_routing)
            ctx = replace(ctx, tutor=self.students[main], tutor_gate=self.gate_record(main))
        for row, res in zip(rows, out.results[:len(rows)], strict=True):
            tc = ctx.tutee.decode(row.example.teacher_prefix) if row.example and row.example.teacher_prefix else None
            self.emit(exchange_event(ctx, row, res, tc))
        for (ex, example), res in zip(human, out.results[len(rows):], strict=True):
            self.emit(human_event(ctx, ex, example, res))
        for b in breaks:
            self.emit(b)
        metrics = step_metrics(ctx, rows, out, breaks, t_rollout, t_feedback, t_train, time.perf_counter() - t0,
                                n_tokens)
        sync1 = ctx.tutee.sync_seconds()
        if sync1 is not None and sync0 is not None:
            metrics["time/weight_sync"] = sync1 - sync0   # the previous update's sync, paid before this rollout
        self.emit(ev.StepEvent(**ctx.position, loss=out.loss, metrics=metrics, tutors=step_tutors(ctx, rows)))
        observe_step(self, breaks, r, ctx.global_step)

    def _one_way_domain(self, tutor_name: str) -> str | None:
        """The only domain the frozen peer teaches on (``one_way_domains: strong``), else None (all)."""
        if self.config.one_way_domains != "strong":
            return None
        return next(s.strong_domain for s in self.config.students if s.name == tutor_name)

    # --- the loop ----------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunResult:
        if resume and self.restore():
            self.emit(ev.ResumeEvent(next_task=self.next_task))
            restore_trust(self, self._trust_state, *self._position_of(self.next_task))
        else:
            sc = self.config.schedule
            self.emit(ev.RunStartEvent(config=self.config.to_dict(), students=self.names,
                                       domains=list(self.config.data.domains), tasks=len(self.tasks),
                                       steps=tasks.total_steps(sc.rounds, sc.steps_per_direction, len(self.names))))
        while self.next_task < len(self.tasks):
            task = self.tasks[self.next_task]
            if task.kind == "step":
                action = self._apply_controls(task.round, task.slot, task.k)
                if action in ("pause", "cancel"):
                    self.save_checkpoint()
                    self.emit(ev.FinishEvent(status="paused" if action == "pause" else "cancelled"))
                    return RunResult("paused" if action == "pause" else "cancelled", None)
                self.task_step(task.round, task.slot, task.k)
            elif task.kind == "gate":
                self.task_gate(task.round)
            else:
                self.task_eval(task.round)
            self.next_task += 1
            if self.progress:
                self.progress({"phase": "train", "task": task, "done": self.next_task, "total": len(self.tasks)})
            is_step = task.kind == "step"
            g = self.global_step(task.round, task.slot, task.k) + 1 if is_step else None
            if not is_step or g % self.config.checkpoint_every == 0:
                self.save_checkpoint(permanent=task.kind == "eval")
        summary = self.summary()
        self.emit(ev.FinishEvent(status="finished", summary=summary))
        return RunResult("finished", summary)

    def close(self) -> None:
        """Release what the students hold outside this process (engines, actors) and the Ray it attached to."""
        close_students(self.students, self.config, placed_here=self.owns_students)

    def summary(self) -> dict:
        """The run's result: per student initial vs final accuracy (left out when there was no initial
        evaluation, e.g. ``bench.fidelity.ValidationTrainer``'s final-only one), and every evaluation."""
        final_round = str(self.config.schedule.rounds)
        out: dict = {}
        if "0" in self.evals and final_round in self.evals:
            students = {}
            for name in self.names:
                init, fin = self.evals["0"][name], self.evals[final_round][name]
                students[name] = {"initial": init, "final": fin, "pareto_improved": pareto_improved(init, fin),
                                  "change": {d: fin[d] - init[d] for d in init}}
            out["students"] = students
        out.update({"domains": list(self.config.data.domains), "rounds": self.config.schedule.rounds,
                    "algorithm": self.config.algorithm, "gating": self.config.gating.mode, "evals": self.evals})
        if len(self.names) > 2 or "trust" in self.config.to_dict():   # keeps a two-peer summary as it was
            out["trust"] = trust_summary(self.trust)
        return out
