"""The run page's tutoring-flow matrix as presented (``app.web.presenters.flow_matrix``): display strings,
the greyed diagonal, never-paired cells, cells of a tutor whose feedback is all on other tutors' exchanges
or in the shadow, and links into the HTML exchanges page (not the API); the exchanges page's filter options
keep a value the run does not list. Pure functions on the flows service's output."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from app.services.exchanges import ExchangeFilters
from app.web.presenters import exchange_filter_choices, flow_matrix, rate_of, signed, trend


def _domain(domain: str, **numbers) -> dict:
    d = {"domain": domain, "exchanges": 0, "feedback": 0, "kept": 0, "kept_rate": None, "peer_feedback": 0,
         "peer_kept": 0, "shadow": 0, "human_edited": 0, "probes": 0, "opportunities": 0, "breaks": 0,
         "break_rate": None, "shadow_probes": 0, "rounds": [], "accuracy_change": None, "accuracy_rounds": [],
         "exchanges_url": "/api/v1/...", "kept_url": "/api/v1/...", "feedback_url": "/api/v1/..."}
    d.update(numbers)
    if d["feedback"]:
        d["kept_rate"] = d["kept"] / d["feedback"]
    if d["opportunities"]:
        d["break_rate"] = d["breaks"] / d["opportunities"]
    return d


def _matrix(students: list[str], cells: dict[tuple[str, str], list[dict]]) -> dict:
    """The service's shape: no diagonal cell unless given, every other pair present."""
    untaught = [_domain("chemistry"), _domain("physics")]
    rows = [{"tutor": t, "cells": [{"tutee": u, "domains": cells.get((t, u), untaught)}
                                   for u in students if u != t or (t, u) in cells]} for t in students]
    return {"run_id": 7, "students": students, "domains": ["chemistry", "physics"], "split": "test", "rows": rows,
            "unattributed_probes": 0}


@pytest.mark.parametrize("value, text, cls", [
    (None, "–", "none"), (0.25, "+0.25", "up"), (-0.1, "-0.10", "down"), (0.875, "+0.88", "up"),
    (0.0, "0.00", "flat"), (-0.004, "0.00", "flat"), (1 / 3 - 1 / 3, "0.00", "flat"), (-0.6875, "-0.69", "down")])
def test_signed_change(value, text, cls):
    assert signed(value) == text and trend(value) == cls


def test_rates_carry_their_counts():
    assert rate_of(1, 4, 0.25) == "25% (1/4)"
    assert rate_of(7, 12, 7 / 12) == "58% (7/12)"
    assert rate_of(0, 3, 0.0) == "0% (0/3)"
    assert rate_of(0, 0, None) == "–"


def test_cells_for_every_pair_with_a_grey_empty_diagonal():
    students = ["a", "b", "c"]
    taught = [_domain("chemistry", exchanges=10, feedback=8, kept=6, probes=5, opportunities=4, breaks=1,
                      rounds=[1, 2], accuracy_change=0.25, accuracy_rounds=[1, 2]),
              _domain("physics", exchanges=3)]
    m = flow_matrix(_matrix(students, {("a", "b"): taught}))
    assert [r["tutor"] for r in m["rows"]] == students
    assert all([c["tutee"] for c in r["cells"]] == students for r in m["rows"])
    diag = [c for r in m["rows"] for c in r["cells"] if c["self"]]
    assert len(diag) == 3 and all(not c["taught"] and c["domains"] == [] for c in diag)
    assert all(c["css"] == "flow-cell flow-self flow-empty" for c in diag)
    ab = m["rows"][0]["cells"][1]
    assert ab["taught"] and ab["css"] == "flow-cell"
    chem, phys = ab["domains"]
    assert (chem["feedback"], chem["kept_text"], chem["break_text"], chem["change_text"], chem["change_class"]) == \
        (8, "75% (6/8)", "25% (1/4)", "+0.25", "up")
    assert "rounds 1, 2" in chem["change_title"]
    assert (phys["kept_text"], phys["break_text"], phys["change_text"], phys["kept_url"]) == ("–", "–", "–", None)
    assert phys["feedback_url"] is None and chem["feedback_url"] is not None   # a link only to feedback given
    assert phys["url"] is not None   # exchanges without feedback are still listed
    never = m["rows"][2]["cells"][0]   # c never taught a
    assert (never["taught"], never["domains"], never["css"]) == (False, [], "flow-cell flow-empty")
    assert m["taught"]
    assert not flow_matrix(_matrix(students, {}))["taught"]


def test_a_student_that_tutors_itself_keeps_its_numbers_greyed():
    m = flow_matrix(_matrix(["a", "b"], {("a", "a"): [_domain("chemistry", exchanges=2, feedback=2, kept=1)]}))
    cell = m["rows"][0]["cells"][0]
    assert cell["self"] and cell["taught"] and cell["css"] == "flow-cell flow-self"
    assert cell["domains"][0]["kept_text"] == "50% (1/2)"


def test_peer_and_shadow_feedback_show_a_cell_without_exchanges():
    """Routing mode ``all``: b's feedback is all on a's exchanges (no exchange of its own to list); c wrote
    only in the shadow while quarantined. Both cells show, without links; the shadow line appears only with
    shadow feedback or probes."""
    peer = _domain("chemistry", feedback=4, kept=3, peer_feedback=4, peer_kept=3, probes=2, opportunities=2, breaks=1,
                   rounds=[1])
    shadow = _domain("chemistry", shadow=3, shadow_probes=2)
    mixed = _domain("chemistry", exchanges=5, feedback=6, kept=4, peer_feedback=2, peer_kept=2, shadow=1)
    m = flow_matrix(_matrix(["a", "b", "c"], {("b", "a"): [peer, _domain("physics")],
                                              ("c", "a"): [shadow, _domain("physics")],
                                              ("a", "b"): [mixed, _domain("physics")]}))
    cells = {(r["tutor"], c["tutee"]): c for r in m["rows"] for c in r["cells"]}
    b = cells[("b", "a")]
    assert b["taught"] and b["css"] == "flow-cell"
    chem, phys = b["domains"]
    assert chem["shown"] and (chem["url"], chem["kept_url"]) == (None, None)   # nothing of b's to list
    assert chem["feedback_url"] is not None          # but its feedback on the exchanges other tutors lead
    assert (chem["feedback"], chem["kept_text"], chem["break_text"], chem["shadow_text"]) == (4, "75% (3/4)",
                                                                                            "50% (1/2)", None)
    assert "4 of it (3 kept) on exchanges another tutor leads" in chem["feedback_title"]
    assert not phys["shown"]
    c = cells[("c", "a")]
    assert c["taught"] and c["domains"][0]["shadow_text"] == "3 · 2 probed"
    assert "quarantined" in c["domains"][0]["shadow_title"] and c["domains"][0]["kept_text"] == "–"
    a = cells[("a", "b")]["domains"][0]
    assert a["url"] is not None and a["kept_url"] is not None   # 2 of its own exchanges' feedback kept
    assert (a["kept_text"], a["shadow_text"]) == ("67% (4/6)", "1 · 0 probed")
    only_peer_kept = flow_matrix(_matrix(["a", "b"], {("a", "b"): [
        _domain("chemistry", exchanges=2, feedback=3, kept=1, peer_feedback=1, peer_kept=1)]}))
    assert only_peer_kept["rows"][0]["cells"][1]["domains"][0]["kept_url"] is None   # the list would be empty


def test_links_open_the_html_exchanges_page_with_the_cell_filters():
    name = '<b>x</b> & "y"'
    m = flow_matrix(_matrix(["chem", name], {("chem", name): [_domain("chemistry", exchanges=4, feedback=3, kept=2),
                                                               _domain("physics")]}))
    entry = m["rows"][0]["cells"][1]["domains"][0]
    given = {"feedback_from": "chem", "tutee": name, "domain": "chemistry", "human_edited": "false"}
    own = {"tutor": "chem", "tutee": name, "domain": "chemistry"}
    for url, want in ((entry["url"], own), (entry["kept_url"], {**own, "category": "kept", "human_edited": "false"}),
                      (entry["feedback_url"], given)):
        parts = urlsplit(url)
        assert parts.path == "/runs/7/exchanges"   # the web page, not /api/v1
        assert dict(parse_qsl(parts.query)) == want
        assert "<" not in url and '"' not in url and " " not in url


def test_filter_choices_keep_a_value_the_run_does_not_list():
    run = {"domains": ["chemistry", "physics"], "students": ["chem", "phys", "bio"]}
    assert exchange_filter_choices(run, ExchangeFilters()) == {
        "domain": ["chemistry", "physics"], "tutor": ["chem", "phys", "bio"], "tutee": ["chem", "phys", "bio"],
        "feedback_from": ["chem", "phys", "bio"], "direction": [1, 2, 3]}   # one direction per student as tutee
    got = exchange_filter_choices(run, ExchangeFilters(tutor="ghost", tutee="phys", domain="biology", direction=5,
                                                       feedback_from="spook"))
    assert got == {"domain": ["chemistry", "physics", "biology"], "tutor": ["chem", "phys", "bio", "ghost"],
                   "tutee": ["chem", "phys", "bio"], "feedback_from": ["chem", "phys", "bio", "spook"],
                   "direction": [1, 2, 3, 5]}
