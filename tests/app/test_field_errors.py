"""One helper (app.errors.field_errors) turns every validation error into field messages."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Form, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, ValidationError, field_validator

from app.errors import field_errors, install_error_handlers


class Inner(BaseModel):
    n: int = Field(ge=1)


class Outer(BaseModel):
    inner: Inner
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "bad":
            raise ValueError("not that name")
        return v


def test_pydantic_errors_become_dotted_paths_and_plain_messages():
    with pytest.raises(ValidationError) as info:
        Outer(inner={"n": 0}, name="bad")
    got = field_errors(info.value, prefix=("config",))
    assert [f["path"] for f in got] == ["config.inner.n", "config.name"]
    assert got[1]["message"] == "not that name"   # no "Value error, " prefix


def test_request_errors_drop_fastapi_locations_in_the_api_and_in_forms():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/q")
    def q(query: Annotated[Inner, Query()]):
        return {}

    @app.post("/f")
    def f(form: Annotated[Inner, Form()]):
        return {}

    client = TestClient(app)
    for r in (client.get("/q", params={"n": 0}), client.post("/f", data={"n": "x"})):
        assert r.status_code == 422
        assert [x["path"] for x in r.json()["error"]["fields"]] == ["n"]
