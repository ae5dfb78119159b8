"""Exchange lists (keyset paging, every filter) and one exchange's detail, on SQLite and PostgreSQL."""

from __future__ import annotations


import pytest

import api_seed

V1 = "/api/v1"


@pytest.fixture
def seeded_api(db_url, tmp_path):
    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        seeded = api_seed.seed_run(db, steps=4, per_step=6)
        api_seed.seed_run(db, steps=1, per_step=3)  # another run's exchanges must never leak in
        yield client, db, seeded


def page_all(client, run_id, limit, **params):
    ids, cursor, pages = [], None, 0
    while True:
        q = {"limit": limit, **params}
        if cursor:
            q["cursor"] = cursor
        r = client.get(f"{V1}/runs/{run_id}/exchanges", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        ids += [x["id"] for x in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


@pytest.mark.parametrize("limit", [1, 5, 24, 500])
def test_paging_is_newest_first_without_gaps_or_duplicates(seeded_api, limit):
    client, _, seeded = seeded_api
    ids, pages = page_all(client, seeded.run_id, limit)
    assert ids == sorted(seeded.exchange_ids, reverse=True)
    assert pages == max(1, -(-len(ids) // limit))


def test_every_filter(seeded_api):
    client, _, seeded = seeded_api
    everything = client.get(f"{V1}/runs/{seeded.run_id}/exchanges", params={"limit": 500}).json()["items"]
    assert len(everything) == 24
    cases = [("domain", "chemistry"), ("domain", "physics"), ("round", 1), ("round", 2), ("direction", 1),
             ("direction", 2), ("category", "kept"), ("category", "empty"), ("correct", True),
             ("correct", False), ("human_edited", True), ("human_edited", False), ("tutee", "phys"),
             ("tutor", "chem")]
    for name, value in cases:
        expected = [x["id"] for x in everything if x[name] == value]
        assert expected, (name, value)
        param = str(value).lower() if isinstance(value, bool) else value
        got, _ = page_all(client, seeded.run_id, 3, **{name: param})
        assert got == expected, (name, value)
    got, _ = page_all(client, seeded.run_id, 2, tutor="phys", tutee="chem", domain="chemistry")
    assert got == [x["id"] for x in everything
                   if (x["tutor"], x["tutee"], x["domain"]) == ("phys", "chem", "chemistry")]
    assert got and page_all(client, seeded.run_id, 2, tutor="phys", tutee="phys")[0] == []
    got, _ = page_all(client, seeded.run_id, 2, domain="physics", correct="true", round=2)
    assert got == [x["id"] for x in everything if x["domain"] == "physics" and x["correct"] and x["round"] == 2]
    assert page_all(client, seeded.run_id, 10, domain="biology")[0] == []


def test_api_and_page_share_one_filter_model(seeded_api):
    """The API list and the exchanges page read the same query model (``ExchangeFilters``): the same
    filters select the same exchanges, "none" selects the exchanges without feedback in both, and an
    empty value (a form's "any") is no filter."""
    import re

    client, _, seeded = seeded_api
    everything = client.get(f"{V1}/runs/{seeded.run_id}/exchanges", params={"limit": 500}).json()["items"]
    for params in ({"category": "none"}, {"category": "kept", "direction": 2}, {"correct": "false", "domain": ""}):
        api_ids, _ = page_all(client, seeded.run_id, 500, **params)
        page = client.get(f"/runs/{seeded.run_id}/exchanges", params=params)
        assert page.status_code == 200, page.text
        page_ids = [int(x) for x in re.findall(r'href="/exchanges/(\d+)"', page.text)]
        assert sorted(set(page_ids), reverse=True) == api_ids, params
    assert page_all(client, seeded.run_id, 500, category="none")[0] == [
        x["id"] for x in everything if x["category"] is None]
    for where in (f"{V1}/runs/{seeded.run_id}/exchanges", f"/runs/{seeded.run_id}/exchanges"):
        assert client.get(where, params={"category": "nonsense"}).status_code == 422


@pytest.mark.parametrize("params, path", [
    ({"category": "nonsense"}, "category"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"direction": 9}, "direction"),
    ({"correct": "maybe"}, "correct"), ({"cursor": "garbage!"}, "cursor"), ({"round": "x"}, "round"),
    ({"cursor": "eyJ2IjoxLCJiZWZvcmUiOi0xfQ"}, "cursor"),
])
def test_bad_list_parameters_are_422(seeded_api, params, path):
    client, _, seeded = seeded_api
    r = client.get(f"{V1}/runs/{seeded.run_id}/exchanges", params=params)
    assert r.status_code == 422, r.text
    assert [f["path"] for f in r.json()["error"]["fields"]] == [path]


def test_one_exchange_with_everything(seeded_api):
    client, _, seeded = seeded_api
    ex_id = seeded.exchange_ids[7]
    r = client.get(f"{V1}/exchanges/{ex_id}")
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["id"] == ex_id and ex["run_id"] == seeded.run_id
    assert ex["tokens"] == ["a", "b", "c", "d"]
    assert ex["divergence"] == [0.5, 0.25, 0.125, 1.0]
    assert ex["student_logprob"] == [-0.5, -1.0, -0.25, -2.0]
    assert ex["divergence_s_only"] == [0.25, 0.25, 0.25, 0.5]
    assert ex["prompt"]["question"].startswith("A ") and ex["prompt"]["labels"] == ["A", "B", "C", "D"]
    assert ex["rollout"]["token_ids"] == [1, 2, 3, 7] and ex["rollout"]["text"].endswith("Answer: B")
    assert ex["feedback"]["concept"] == "entropy" and ex["feedback"]["tutor"] == ex["tutor"]
    gate = ex["gate"]
    assert (gate["round"], gate["student"]) == (ex["round"], ex["tutor"])
    assert ex["overrides"] == [] and ex["replays"] == [] and ex["derived_exchange_ids"] == []
    assert ex["provenance"] is None and ex["teacher_context"] == "teacher ctx"


def test_finish_reason_in_list_and_detail(seeded_api):
    client, _, seeded = seeded_api
    expected = {ex_id: api_seed.finish_of(i) for i, ex_id in enumerate(seeded.exchange_ids)}
    assert set(expected.values()) == {"eos", "stop", "length", None}
    items = client.get(f"{V1}/runs/{seeded.run_id}/exchanges", params={"limit": 500}).json()["items"]
    assert {x["id"]: x["finish_reason"] for x in items} == expected
    for ex_id, reason in list(expected.items())[:4]:
        assert client.get(f"{V1}/exchanges/{ex_id}").json()["finish_reason"] == reason
