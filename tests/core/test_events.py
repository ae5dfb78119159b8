"""The event schema (opcod_core.events): one model per event type, strict about what it accepts."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from opcod_core.events import (EVENT_TYPES, PEER_FIELDS, BreakEvent, CheckpointEvent, ExchangeEvent, StepEvent,
                               TrustEvent, parse_event)
from opcod_core.observer import CollectingObserver, JSONLObserver

POS = {"round": 1, "direction": 2, "step": 0, "global_step": 3, "tutee": "phys", "tutor": "chem"}


def exchange(**over) -> ExchangeEvent:
    return ExchangeEvent(**{**POS, "key": "r1-d2-s0-p0-k1", "domain": "chemistry", "prompt_id": "c7",
                            "question": "How many atoms?", "gold": "3", "rollout_text": "3", "token_ids": [5, 6],
                            "correct": True, **over})


def test_parse_reads_each_type_back():
    events = [exchange(), StepEvent(**POS, loss=0.5, metrics={"loss/jsd": 0.5}),
              CheckpointEvent(tag="task-000001-e0000003", path="/x", next_task=1, after=["eval", 0], events_before=3)]
    for e in events:
        assert parse_event(json.loads(json.dumps(e.to_dict()))) == e
    assert set(EVENT_TYPES) == {"run_start", "resume", "gate", "exchange", "step", "eval", "break", "trust",
                                "checkpoint", "override", "replay", "finish"}


def test_an_exchange_line_names_every_field_and_its_answer_type():
    d = exchange().to_dict()
    assert d["type"] == "exchange" and set(d) == set(ExchangeEvent.model_fields) - PEER_FIELDS
    assert exchange().answer_type == "numeric" and exchange(labels=["A", "B"], choices=["x", "y"]).answer_type == "mcq"


def test_bad_events_are_refused_naming_the_field():
    with pytest.raises(ValidationError, match="correct"):
        ExchangeEvent(**{**exchange().to_dict(), "correct": "maybe"})
    with pytest.raises(ValidationError, match="surprise"):
        exchange(surprise=1)
    with pytest.raises(ValidationError, match="feedback_source"):
        exchange(feedback_source="robot")
    with pytest.raises(ValidationError):
        parse_event({"type": "teleport"})
    with pytest.raises(ValidationError, match="frozen"):
        exchange().correct = False  # frozen: a sink cannot change what another one sees


def test_both_observers_see_the_same_event(tmp_path):
    collected, log = CollectingObserver(), JSONLObserver(tmp_path / "events.jsonl")
    for e in (exchange(), StepEvent(**POS, loss=float("nan"), metrics={})):
        collected.on_event(e)
        log.on_event(e)
    log.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["exchange", "step"]
    assert collected.dicts("exchange") == [json.loads(lines[0])]
    assert parse_event(json.loads(lines[1])).loss != parse_event(json.loads(lines[1])).loss  # NaN stays NaN


def test_peer_fields_are_written_only_when_set():
    """A two-peer event has the line it always had; the N-peer fields appear once set and read back."""
    plain = exchange()
    assert not PEER_FIELDS & set(plain.to_dict()) and parse_event(plain.to_dict()) == plain
    fb = {"tutor": "bio", "quarantined": True, "raw": "<concept>atoms</concept> x", "used": None}
    routed = exchange(tutors=["chem"], quarantined=["bio"], feedbacks=[fb], route_reason="best: 'chem'")
    d = routed.to_dict()
    assert d["tutors"] == ["chem"] and d["quarantined"] == ["bio"] and d["feedbacks"] == [fb]
    assert parse_event(json.loads(json.dumps(d))) == routed
    step = StepEvent(**POS, loss=0.5, metrics={}, tutors=["chem", "bio"])
    assert step.to_dict()["tutors"] == ["chem", "bio"] and "tutors" not in StepEvent(**POS, loss=0.5, metrics={}).to_dict()
    probe = dict(exchange_key="k", domain="chemistry", tutor_cognizant=False, difficulty="easy", correct_with_f=False,
                 correct_without_f=True, eligible=True, broken=True)
    assert "shadow" not in BreakEvent(**POS, **probe).to_dict()
    assert BreakEvent(**POS, **probe, shadow=True).to_dict()["shadow"] is True


def test_trust_event_round_trips_and_is_strict():
    e = TrustEvent(tutor="chem", action="quarantine", source="auto", step=7, round=1, reason="auto: ...",
                   domain="physics")
    assert list(e.to_dict())[:2] == ["type", "tutor"] and parse_event(json.loads(json.dumps(e.to_dict()))) == e
    with pytest.raises(ValidationError, match="action"):
        TrustEvent(tutor="chem", action="ban", source="auto", step=7, round=1, reason="")
