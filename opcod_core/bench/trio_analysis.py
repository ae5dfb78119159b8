"""The numbers of the trio benchmark (``opcod_core.bench.trio``), from its runs: trio against pairs, and what the
poisoned variant did. Pure functions of the results dict; the report (``trio_report``) only formats them.

* **Trio vs pairs**, per student, domain and pair that scored the student on that domain (each student is in
  two pairs; its own domain is scored in both, the others in one): final test accuracy of the trio and of
  the pair, mean ± 95% interval over seeds (``stats.interval``), and the per-seed difference trio − pair,
  paired by seed (same seed: same data order and rollout seeds), with its interval and a verdict read from
  it: ``trio better`` / ``trio worse`` when the interval lies above / below 0, else ``within noise``
  (one seed: no interval, said so).
* **Quarantine**, per poisoned run (seed, auto-quarantine on or off): the first automatic quarantine of the
  poisoned tutor at or after the poison step (``TrustEvent.step``: the global step from which it holds),
  the steps from the poison to it, whether that is within the stated bound, any quarantine of it before the
  poison, its lifts after, quarantines of other tutors (false alarms), the break probes of its feedback
  from the poison to the quarantine, and its poisoned feedback written / kept / used in a teacher context
  (and used after the quarantine: 0 by construction).
* **Others' accuracy**: for every student but the poisoned one and every domain, final accuracy in the clean
  trio, with auto-quarantine on and off, and the paired differences on − clean, off − clean and on − off.
  "Falls beyond noise" = the 95% interval of the paired difference lies entirely below 0.
* **Recent-window replay** (the protocol's amendment, ``replay_recent``): a run in which nobody was quarantined
  is, step for step, the run that a rule with ``trust.recent`` = W would have made up to its first
  quarantine (the quarantine is the only thing it would change). So that first quarantine (tutor, step,
  evidence) comes exactly from replaying ``TrustState``, the trainer's own rule, over the run's recorded
  probes, grouped by step in their recorded order (probes of step g are observed at g + 1, as the trainer
  does). The replay is checked first: without the window it must give the run's own final counts per
  (tutor, domain), else the row says so and has no result. A first quarantine before the poison, or of
  another tutor, is a false alarm (and ends what the replay can say). When the poisoned runs with auto-quarantine
  on used the same window (``--trust-recent`` = W), their real first quarantines are set against the replays of
  their twins without quarantine (``real_against_replay``): the replay's claim checked on real runs.
* **Claims** (pre-registered in docs/results/n-peers.md): (1) with auto-quarantine on the poisoned tutor
  is quarantined within the stated number of steps at every seed; (2) no other student's accuracy on any
  domain falls beyond noise (on − clean). Each is ``holds``, ``fails: ...`` or, with one seed for (2),
  ``1 seed: no interval``; (2) says ``holds vacuously`` when no poisoned run quarantined anyone (on = off).
"""

from __future__ import annotations

from opcod_core.bench.stats import TOL, interval
from opcod_core.bench.trio import POISON_OFF, POISON_ON, TRIO
from opcod_core.trust import DEFAULT_THRESHOLD, TrustState
from opcod_core.wilson import DEFAULT_Z


def finals(runs: list[dict], label: str, which: str = "final") -> dict[int, dict[str, dict[str, float]]]:
    """seed -> student -> domain -> accuracy (``which``: final or initial) of the runs labelled ``label``."""
    return {r["seed"]: {n: s[which] for n, s in r["summary"]["students"].items()}
            for r in runs if r["method"] == label}


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """a − b over the seeds both have: differences, interval and verdict words (``up``/``down``/``noise``)."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    iv = interval(diffs) if diffs else None
    if iv is None:
        word = "no common seed"
    elif iv.half is None:
        word = "1 seed: no interval"
    elif abs(iv.mean) < TOL and iv.half < TOL:
        word = "identical"
    else:
        word = "up" if iv.low > TOL else "down" if iv.high < -TOL else "noise"
    return {"seeds": seeds, "differences": diffs, "interval": iv.to_dict() if iv else None, "word": word}


def _iv(values: list[float]) -> dict | None:
    return interval(values).to_dict() if values else None


def trio_vs_pairs(results: dict) -> list[dict]:
    """One row per (student, domain, pair scoring it) (module docstring)."""
    runs = results["runs"]
    trio, trio_init = finals(runs, TRIO), finals(runs, TRIO, "initial")
    rows = []
    for name in results["students"]:
        for label in results["pair_configs"]:
            pair, pair_init = finals(runs, label), finals(runs, label, "initial")
            scored = next((per[name] for per in pair.values() if name in per), None)
            if scored is None:
                continue
            partner = next(n for per in pair.values() for n in per if n != name)
            for d in scored:
                t = {s: v[name][d] for s, v in trio.items()}
                p = {s: v[name][d] for s, v in pair.items()}
                diff = paired(t, p)
                verdict = {"up": "trio better", "down": "trio worse", "noise": "within noise"}.get(diff["word"],
                                                                                                   diff["word"])
                rows.append({"student": name, "domain": d, "role": results["roles"][name].get(d), "pair": label,
                             "partner": partner, "trio_initial": _iv([v[name][d] for v in trio_init.values()]),
                             "pair_initial": _iv([v[name][d] for v in pair_init.values()]),
                             "trio": _iv(list(t.values())), "pair_final": _iv(list(p.values())),
                             "difference": diff, "verdict": verdict})
    return rows


def quarantine(run: dict, tutor: str, start: int, within: int) -> dict:
    """What happened to the poisoned ``tutor`` in one poisoned run (module docstring)."""
    trust = run.get("trust") or []
    mine = [e for e in trust if e["tutor"] == tutor]
    q = next((e for e in mine if e["action"] == "quarantine" and e["step"] >= start and e["source"] == "auto"), None)
    step = q["step"] if q else None
    probes = [b for b in run["breaks"] if b["tutor"] == tutor and b.get("step", -1) >= start
              and (step is None or b["step"] < step)]
    poison = (run.get("poison") or {}).get(tutor, {"written": 0, "kept": 0, "used": 0, "first_step": None,
                                                   "last_used_step": None})
    used_after = poison["last_used_step"] is not None and step is not None and poison["last_used_step"] >= step
    return {"seed": run["seed"], "variant": run["method"], "quarantine_step": step,
            "steps_to_quarantine": None if step is None else step - start,
            "within": step is not None and step - start <= within,
            "before_poison": [e["step"] for e in mine if e["action"] == "quarantine" and e["step"] < start],
            "lifts_after": [e["step"] for e in mine if e["action"] == "lift" and step is not None and e["step"] > step],
            "other_quarantines": [f"{e['tutor']}@{e['step']}" for e in trust
                                  if e["tutor"] != tutor and e["action"] == "quarantine"],
            "probes": {"samples": len(probes), "eligible": sum(bool(b["correct_without_f"]) for b in probes),
                       "broken": sum(bool(b["broken"]) for b in probes)},
            "poisoned": poison, "used_after_quarantine": used_after}


def others_accuracy(results: dict) -> list[dict]:
    """Per student (the poisoned one flagged) and domain: clean, on, off finals and paired differences."""
    runs, tutor = results["runs"], results["poison"]["tutor"]
    by = {label: finals(runs, label) for label in (TRIO, POISON_ON, POISON_OFF)}
    rows = []
    for name in results["students"]:
        for d in results["domains"]:
            acc = {label: {s: v[name][d] for s, v in per.items()} for label, per in by.items()}
            rows.append({"student": name, "domain": d, "poisoned_tutor": name == tutor,
                         "clean": _iv(list(acc[TRIO].values())), "on": _iv(list(acc[POISON_ON].values())),
                         "off": _iv(list(acc[POISON_OFF].values())),
                         "on_minus_clean": paired(acc[POISON_ON], acc[TRIO]),
                         "off_minus_clean": paired(acc[POISON_OFF], acc[TRIO]),
                         "on_minus_off": paired(acc[POISON_ON], acc[POISON_OFF])})
    return rows


def replay(run: dict, recent: int, threshold: float, z: float) -> dict:
    """The first quarantine the recent-window rule would have made in ``run`` (module docstring)."""
    steps: dict[int, list[dict]] = {}
    for b in run["breaks"]:
        steps.setdefault(b["step"], []).append(b)
    plain = TrustState(threshold=threshold, z=z, auto_quarantine=False)
    for g in sorted(steps):
        plain, _ = plain.observe_samples(steps[g], step=g + 1)
    recorded = {(r["tutor"], r["domain"]): (r["opportunities"], r["breaks"]) for r in run["summary"]["trust"]["rows"]}
    replayed = {(r.tutor, r.domain): (r.opportunities, r.breaks) for r in plain.rows()}
    out = {"seed": run["seed"], "variant": run["method"], "reproduces": replayed == recorded, "first": None}
    if not out["reproduces"] or run.get("trust"):
        return {**out, "why": "the recorded probes do not give the run's counts" if not out["reproduces"]
                else "the run quarantined someone: it is not the run without quarantines"}
    state = TrustState(threshold=threshold, z=z, auto_quarantine=True, recent=recent)
    for g in sorted(steps):
        state, changes = state.observe_samples(steps[g], step=g + 1)
        q = next((c for c in changes if c.action == "quarantine"), None)
        if q is not None:
            w = state.recent_window(q.tutor, q.domain)
            out["first"] = {"tutor": q.tutor, "step": q.step, "domain": q.domain, "reason": q.reason,
                            "recent": {"opportunities": w.opportunities, "breaks": w.breaks}}
            break
    return out


def replay_recent(results: dict, recent: int) -> dict:
    """The replay of every run of the trio's variants (clean ones included: a quarantine there is a false
    alarm), and claim 1 under the window rule: the poisoned tutor first, within the bound, at every seed."""
    p = results.get("poison") or {}
    z = (results.get("config") or {}).get("trust", {}).get("z", DEFAULT_Z)
    threshold = p.get("threshold", DEFAULT_THRESHOLD)
    order = (TRIO, POISON_ON, POISON_OFF)
    rows = [replay(r, recent, threshold, z) for r in sorted((r for r in results["runs"] if r["method"] in order),
                                                            key=lambda r: (order.index(r["method"]), r["seed"]))]
    tutor, start, within = p.get("tutor"), p.get("from_step"), p.get("within")
    for row in rows:
        f, poisoned = row["first"], row["variant"] != TRIO
        row["false_alarm"] = f is not None and (not poisoned or f["tutor"] != tutor or f["step"] <= start)
        row["steps_after_poison"] = (f["step"] - start if f and poisoned and not row["false_alarm"] else None)
        row["within"] = row["steps_after_poison"] is not None and row["steps_after_poison"] <= within
    off = [r for r in rows if r["variant"] == POISON_OFF]
    missed = [f"seed {r['seed']}: " + ("false alarm" if r["false_alarm"] else "not replayable" if not r["reproduces"]
                                       else "never" if r["first"] is None else f"after {r['steps_after_poison']} steps")
              for r in off if not r["within"]]
    alarms = [f"{r['variant']} seed {r['seed']}" for r in rows if r["false_alarm"]]
    verdict = ("not run" if not off else "holds" if not missed else "fails: " + "; ".join(missed))
    return {"recent": recent, "threshold": threshold, "z": z, "rows": rows, "verdict": verdict,
            "false_alarms": alarms, "real": real_against_replay(results, rows, recent)}


def real_against_replay(results: dict, rows: list[dict], recent: int) -> list[dict]:
    """When the poisoned runs with auto-quarantine on used this same window (``--trust-recent`` = ``recent``), the
    real run is what the replay of its twin without quarantine predicts: per seed, the on run's first automatic
    quarantine (tutor @ step, or None) against the replay's first quarantine of the off run, and whether they are
    the same. A seed whose off run does not replay (its probes do not give its counts) is left out. Empty when the
    on runs used another rule (then there is nothing real to check the replay against)."""
    p = results.get("poison") or {}
    if p.get("recent") != recent:
        return []
    replayed = {r["seed"]: r["first"] for r in rows if r["variant"] == POISON_OFF and r["reproduces"]}
    out = []
    for run in sorted((r for r in results["runs"] if r["method"] == POISON_ON), key=lambda r: r["seed"]):
        if run["seed"] not in replayed:
            continue
        q = next((e for e in run.get("trust") or [] if e["action"] == "quarantine" and e["source"] == "auto"), None)
        f = replayed[run["seed"]]
        real = f"{q['tutor']}@{q['step']}" if q else None
        predicted = f"{f['tutor']}@{f['step']}" if f else None
        out.append({"seed": run["seed"], "real": real, "replayed": predicted, "equal": real == predicted})
    return out


def claims(quarantines: list[dict], others: list[dict], within: int) -> dict:
    """The two pre-registered claims' verdicts (module docstring)."""
    on = [q for q in quarantines if q["variant"] == POISON_ON]
    missed = [f"seed {q['seed']}: " + ("never quarantined" if q["quarantine_step"] is None else
                                       f"after {q['steps_to_quarantine']} steps")
              for q in on if not q["within"]]
    caught = "holds" if on and not missed else ("fails: " + "; ".join(missed) if on else "not run")
    rows = [r for r in others if not r["poisoned_tutor"]]
    falls = [f"{r['student']} on {r['domain']}" for r in rows if r["on_minus_clean"]["word"] == "down"]
    if falls:
        noise = "fails: falls beyond noise for " + ", ".join(falls)
    elif any(r["on_minus_clean"]["word"] == "1 seed: no interval" for r in rows):
        noise = "1 seed: no interval"
    else:
        noise = "holds" if rows else "not run"
    if noise == "holds" and on and all(q["quarantine_step"] is None for q in on):
        noise += (" vacuously: nobody was quarantined, so the runs with quarantine on are the runs without it, and "
                  "this says the poison's own damage is within this test's noise")
    return {"quarantined_within": {"bound": within, "verdict": caught},
            "others_within_noise": {"verdict": noise}}


def analyse(results: dict) -> dict:
    """Everything the report shows, from the results dict (re-run by ``--report-only``); the recent-window
    replay when ``results["replay_recent"]`` names a window."""
    out: dict = {"trio_vs_pairs": trio_vs_pairs(results)}
    p = results.get("poison")
    if p:
        qs = [quarantine(r, p["tutor"], p["from_step"], p["within"]) for r in results["runs"]
              if r["method"] in (POISON_ON, POISON_OFF)]
        others = others_accuracy(results)
        out.update(quarantine=qs, others=others, claims=claims(qs, others, p["within"]))
        if results.get("replay_recent"):
            out["replay"] = replay_recent(results, results["replay_recent"])
    return out
