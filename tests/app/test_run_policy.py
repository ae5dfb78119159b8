"""What a run config submitted to the server may reach (app.services.run_policy): data and model paths only
under the read roots, hub ids by setting, no Ray cluster chosen by the submitter, loader errors that never
quote a file. Each refused config was stored (and run by a worker) before."""

from __future__ import annotations

import json
import os

import pytest

import api_seed
from app.models import Run
from app.services.run_policy import RunPolicy, is_local, with_worker_ray
from opcod_core.config import preset

V1 = "/api/v1"
SECRET_LINE = "OPCOD_TEST_SECRET=do-not-echo"


def _app(db_url, tmp_path, **settings):
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings(data_dir=tmp_path / "data", database_url=db_url, **settings), sse_poll_s=0.01)


def _csv_run(path) -> dict:
    return {"preset": "tiny", "overrides": {"data": {"source": "csv", "path": str(path)}}}


def _refused(client, body, field) -> str:
    r = client.post(f"{V1}/runs", json=body)
    assert r.status_code == 422, r.text
    fields = r.json()["error"]["fields"]
    assert [f["path"] for f in fields] == [field], fields
    return fields[0]["message"]


@pytest.fixture
def served(db_url, tmp_path):
    app = _app(db_url, tmp_path, allowed_hub_ids=["HuggingFaceTB/*"])
    with api_seed.local_client(app) as client:
        client.app_ = app
        yield client


def test_data_paths_only_under_the_read_roots(served, tmp_path):
    client = served
    outside = tmp_path / "private.csv"
    outside.write_text(SECRET_LINE + "\n")
    datasets = tmp_path / "data" / "datasets"
    datasets.mkdir(parents=True)
    link = datasets / "link.csv"
    os.symlink(outside, link)
    for path in ("/etc/passwd", str(outside), str(link), str(datasets / ".." / "secret_key"), "~/.bashrc",
                 "../../etc/passwd"):
        message = _refused(client, _csv_run(path), "data.path")
        assert "outside the directories" in message and SECRET_LINE not in message
    refused_hf = {"preset": "tiny", "overrides": {"data": {"source": "hf", "hf_name": "/etc"}}}
    _refused(client, refused_hf, "data.hf_name")
    with client.app_.state.db() as s:
        assert s.query(Run).count() == 0
    inside = datasets / "mine.csv"
    inside.write_text("question,answer,domain\n")
    assert client.post(f"{V1}/runs", json=_csv_run(inside)).status_code == 201


def test_models_builtin_under_roots_or_allowed_hub_ids(served, tmp_path):
    client = served

    def with_model(model):
        body = preset("tiny").to_dict()
        body["students"][0]["model"] = model
        return body

    for model in ("/etc", str(tmp_path), "../models/x", "./x", "~/models"):
        assert "outside the directories" in _refused(client, with_model(model), "students.0.model")
    assert "not allowed on this server" in _refused(client, with_model("evil-org/backdoored"), "students.0.model")
    assert "not a hub model id" in _refused(client, with_model("a/b/c"), "students.0.model")
    for model in ("tiny:qwen2", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        assert client.post(f"{V1}/runs", json=with_model(model)).status_code == 201, model
    cached = tmp_path / "data" / "cache" / "my-model"
    cached.mkdir(parents=True)
    assert client.post(f"{V1}/runs", json=with_model(str(cached))).status_code == 201


def test_no_hub_ids_when_the_setting_is_empty(db_url, tmp_path):
    app = _app(db_url, tmp_path, allowed_hub_ids=[])
    with api_seed.local_client(app) as client:
        body = preset("tiny").to_dict()
        body["students"][1]["model"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
        _refused(client, body, "students.1.model")


def test_ray_address_is_the_workers_setting(served):
    client = served
    body = {"preset": "tiny", "overrides": {"executor": "ray", "ray": {"address": "ray://203.0.113.9:10001"}}}
    assert "OPCOD_RAY_ADDRESS" in _refused(client, body, "ray.address")
    cfg = preset("tiny", {"executor": "ray", "ray": {"address": "ray://203.0.113.9:10001"}})
    assert with_worker_ray(cfg, None).ray.address is None
    assert with_worker_ray(cfg, "auto").ray.address == "auto"
    assert with_worker_ray(preset("tiny"), None) == preset("tiny")


def test_dashboard_launch_form_applies_the_policy(served):
    client = api_seed.with_csrf(served)
    base = preset("tiny").to_dict()
    base["data"] = {"source": "csv", "path": "/etc/passwd", "domains": ["chemistry", "physics"]}
    r = client.post("/runs/new", data={"preset": "tiny", "use_advanced": "1", "config_text": json.dumps(base)})
    assert r.status_code == 422 and "outside the directories" in r.text and "root:" not in r.text
    with client.app_.state.db() as s:
        assert s.query(Run).count() == 0


def test_is_local():
    assert all(is_local(v) for v in ("/x", "./x", "../x", "~/x", ".", "C:\\x"))
    assert not any(is_local(v) for v in ("org/name", "gpt2", "HuggingFaceTB/SmolLM2-135M"))


def test_policy_roots_are_resolved(tmp_path):
    from app.settings import Settings

    policy = RunPolicy.from_settings(Settings(data_dir=tmp_path / "d" / ".." / "data", read_roots=[tmp_path / "extra"]))
    assert (tmp_path / "data" / "datasets").resolve() in policy.roots
    assert (tmp_path / "extra").resolve() in policy.roots


def test_budget_caps_what_one_run_may_cost(served):
    client = served
    huge = {"schedule": {"rounds": 1000, "steps_per_direction": 100000},
            "rollout": {"batch_prompts": 4096, "n": 256, "max_new_tokens": 32768}, "eval": {"k": 256}}
    message = _refused(client, {"preset": "tiny", "overrides": huge}, "rollout")
    assert "OPCOD_BUDGET_STEP_TOKENS" in message and "4096 x 256" in message
    assert "OPCOD_BUDGET_TOTAL_STEPS" in _refused(
        client, {"preset": "tiny", "overrides": {"schedule": {"rounds": 100, "steps_per_direction": 100}}}, "schedule")
    assert "OPCOD_BUDGET_EVAL_SAMPLES" in _refused(client, {"preset": "tiny", "overrides": {"eval": {"k": 65}}},
                                                   "eval.k")
    _refused(client, {"preset": "tiny", "overrides": {"gating": {"val_k": 100}}}, "gating.val_k")
    with client.app_.state.db() as s:
        assert s.query(Run).count() == 0
    # every shipped preset fits the default budget
    for name in ("tiny", "tiny-trio", "demo", "sciworld", "sciworld3", "sciworld3-trio"):
        assert client.post(f"{V1}/runs", json={"preset": name}).status_code == 201, name


def test_forks_are_held_to_the_policy(served):
    client = served
    seeded = api_seed.seed_run(client.app_.state.db, steps=1, per_step=1)
    for overrides, field in (({"ray": {"address": "auto"}}, "overrides.ray.address"),
                             ({"rollout": {"n": 256, "batch_prompts": 4096}}, "overrides.rollout"),
                             ({"data": {"source": "csv", "path": "/etc/passwd"}}, "overrides.data.path")):
        r = client.post(f"{V1}/runs/{seeded.run_id}/fork", json={"overrides": overrides})
        assert r.status_code == 422 and [f["path"] for f in r.json()["error"]["fields"]] == [field], r.text
