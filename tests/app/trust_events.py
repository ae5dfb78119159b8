"""Synthetic trainer events of a three-student run with tutor trust (issue 17), for the store, API, export and
browser tests: exchanges with every tutor's feedback (routing mode ``all``) and quarantined tutors writing in
the shadow, two-peer-shaped exchanges (no N-peer fields), break probes on used and on shadow feedback, and
trust changes (an automatic quarantine and lift, a person's quarantine and lift with their overrides), and
feedback records a benchmark fault poisoned.

The events follow the trainer's rules (``opcod_core.step_routing``, ``opcod_core.breakrate``): a tutor is
routed while not quarantined and writes in the shadow while it is; the teacher's f is the routed tutors'
used feedback joined by newlines; the exchange's tutor is the first routed tutor, else the first quarantined.
"""

from __future__ import annotations

from opcod_core import events as ev

STUDENTS = ("chem", "phys", "bio")
DOMAINS = ("chemistry", "physics")
STEPS = 6
XSS = "<script>window.__xss=1</script>"
AUTO_REASON = f"auto: tutor 'bio' breaks too often on 'physics' {XSS}"
HUMAN_REASON = "reads <b>badly</b>"
POISON_FROM = 4       # the first student's routed feedback from this step on is marked poisoned (opcod_core.faults)


def held(g: int, bio: str = "bio", phys: str = "phys") -> set[str]:
    """The tutors quarantined at global step ``g`` (what the trust events below say)."""
    return ({bio} if 2 <= g < 5 else set()) | ({phys} if g == 3 else set())


def _feedback(tutor: str, g: int, k: int, quarantined: bool, poisoned: bool = False) -> dict:
    kept = (g + k + len(tutor)) % 4 != 0
    text = f"{tutor} hint {g}-{k}"
    return {"tutor": tutor, "quarantined": quarantined, "raw": f"<concept>entropy</concept> {text}",
            "concept": "entropy", "category": "kept" if kept else "no_match", "sanitised": text,
            "redactions": [], "used": text if kept and not quarantined else None, "source": "model", "approval": None,
            **({"poisoned": True} if poisoned else {})}


def _exchange(pos: dict, key: str, domain: str, correct: bool, peer: dict | None, top: dict | None) -> ev.ExchangeEvent:
    used = None
    if peer is not None:
        texts = [f["used"] for f in peer["feedbacks"] if not f["quarantined"] and f["used"]]
        used = "\n".join(texts) or None
    elif top is not None and top["category"] == "kept":
        used = top["sanitised"]
    ctx = "s+f" if used else "s"
    return ev.ExchangeEvent(
        **pos, key=key, domain=domain, prompt_id=f"{domain}-{key}", question=f"A {domain} question on entropy?",
        choices=["one", "two"], labels=["A", "B"], gold="B", rollout_text="Answer: B", token_ids=[1, 2],
        answer="B" if correct else "A", correct=correct, s_index=1, s_text="Answer: B",
        feedback_raw=top["raw"] if top else None, concept=top["concept"] if top else None,
        category=top["category"] if top else None, feedback_sanitised=top["sanitised"] if top else None,
        feedback_used=used, feedback_source="model" if top else None, context_used=ctx, teacher_context=f"ctx {key}",
        tokens=["a", "b"], divergence=[0.5, 0.25], student_logprob=[-0.5, -1.0], divergence_s_only=[0.25, 0.25],
        loss=0.375, **(peer or {}))


def _probe(pos: dict, key: str, domain: str, tutor: str, v: int, shadow: bool) -> ev.BreakEvent:
    right_without = v % 3 != 0
    broken = right_without and v % 2 == 0
    return ev.BreakEvent(**{**pos, "tutor": tutor}, exchange_key=key, domain=domain, tutor_cognizant=True,
                         difficulty="easy", context="s+f", baseline="s", correct_with_f=right_without and not broken,
                         correct_without_f=right_without, eligible=right_without, broken=broken,
                         shadow=True if shadow else None)


def _trust(tutor: str, action: str, source: str, step: int, reason: str, domain: str | None = None,
           override_id: str | None = None) -> ev.TrustEvent:
    return ev.TrustEvent(tutor=tutor, action=action, source=source, step=step, round=1 if step < 3 else 2,
                         reason=reason, domain=domain, override_id=override_id)


def trust_events(students: tuple[str, ...] = STUDENTS, quarantine_id: str = "900001",
                 lift_id: str = "900002") -> list[ev.Event]:
    """Six steps (two rounds of three directions): per step two routed exchanges with every tutor's feedback,
    one two-peer-shaped exchange and one whose question had no tutor; probes on every used and shadow kept
    feedback of a correct rollout; trust changes held as ``held`` says (with the students' names)."""
    chem, phys, bio = students
    out: list[ev.Event] = []
    for g in range(STEPS):
        tutee = students[g % 3]
        others = [s for s in students if s != tutee]
        quarantine = held(g, bio=bio, phys=phys)
        pos = {"round": 1 if g < 3 else 2, "direction": g % 3 + 1, "step": 0, "global_step": g,
               "tutee": tutee, "tutor": others[0]}
        if g == 3:
            out += [ev.OverrideEvent(id=quarantine_id, kind="quarantine", student=phys, value=HUMAN_REASON,
                                     applied_at_step=3, round=2),
                    _trust(phys, "quarantine", "human", 3, f"human: {HUMAN_REASON}", override_id=quarantine_id)]
        if g == 4:
            out += [ev.OverrideEvent(id=lift_id, kind="lift", student=phys, applied_at_step=4, round=2),
                    _trust(phys, "lift", "human", 4, "human: lifted by a person (was human: ...)", override_id=lift_id)]
        for k in range(4):
            key = f"r{pos['round']}-d{pos['direction']}-s0-p{k}-y0"
            domain = DOMAINS[(g + k) % 2]
            correct = (g + k) % 5 != 1
            if k in (0, 3):
                routed = [t for t in others if t not in quarantine]
                shadow = [t for t in others if t in quarantine]
                records = [_feedback(t, g, k, False, poisoned=t == chem and g >= POISON_FROM) for t in routed] + [
                    _feedback(t, g, k, True) for t in shadow]
                peer = {"tutors": routed, "quarantined": shadow, "feedbacks": records,
                        "route_reason": f"mode all: {', '.join(routed) or 'nobody'} (quarantined: {shadow})"}
                top = records[0]
                x = _exchange({**pos, "tutor": top["tutor"]}, key, domain, correct, peer, top)
                out.append(x)
                if correct:
                    for i, f in enumerate(records):
                        if f["category"] == "kept":
                            out.append(_probe(pos, key, domain, f["tutor"], g + k + i, f["quarantined"]))
            elif k == 1:   # as a two-peer run stores it: no N-peer field
                top = _feedback(others[0], g, k, False)
                out.append(_exchange(pos, key, domain, correct, None, top))
            else:          # nobody may tutor this question
                peer = {"tutors": [], "quarantined": [], "feedbacks": [], "route_reason": "no cognizant peer"}
                out.append(_exchange(pos, key, domain, correct, peer, None))
        out.append(ev.StepEvent(**pos, loss=0.25, metrics={}, tutors=[t for t in others if t not in quarantine]))
        if g == 1:
            out.append(_trust(bio, "quarantine", "auto", 2, AUTO_REASON, domain="physics"))
        if g == 4:
            out.append(_trust(bio, "lift", "auto", 5, "auto: tutor 'bio' at or below the threshold on every domain"))
    return out
