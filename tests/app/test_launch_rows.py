"""The launch form's student rows (issue 17) through TestClient, on SQLite and PostgreSQL migrated by Alembic: a trio
preset fills three rows and launches three students in position order with the preset's hidden settings
intact; rows are added and removed by plain posts and by htmx, keeping what was typed; errors name the row and
the field; two students with one name are refused at the form level; nothing is stored until the form is valid.

The form is posted as a browser would post it: every control the page rendered (``form_data``) with the
clicked button's name and value, never a hand-picked subset."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from app.models import Run
from opcod_core.config import preset

from api_seed import local_client, with_csrf

HX = {"HX-Request": "true"}


class _Form(HTMLParser):
    """The successful controls of ``#launch-form`` without a submitter: inputs (not buttons, checkboxes only
    when checked), the selected option of each select, textareas."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self.buttons: list[tuple[str, str]] = []
        self._select: str | None = None
        self._first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and (a.get("type") != "checkbox" or "checked" in a):
            self.data[name] = a.get("value") or ""
        elif tag == "button" and name:
            self.buttons.append((name, a.get("value") or ""))
        elif tag == "select":
            self._select, self._first = name, None
        elif tag == "option" and self._select:
            if self._first is None:
                self._first = a.get("value")
                self.data.setdefault(self._select, self._first)
            if "selected" in a:
                self.data[self._select] = a.get("value")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data


def parse(html: str) -> _Form:
    form = html[html.index('<form id="launch-form"'):]
    p = _Form()
    p.feed(form[:form.index("</form>")])
    return p


def form_data(html: str) -> dict[str, str]:
    data = parse(html).data
    data.pop("csrf_token", None)  # the client sends the session's token as a header
    return data


def rows(html: str) -> list[tuple[str, str, str]]:
    d = form_data(html)
    n = len(d["student_rows"].split(","))
    return [(d[f"students.{i}.name"], d[f"students.{i}.model"], d[f"students.{i}.strong_domain"]) for i in range(n)]


@pytest.fixture
def web(db_url, tmp_path):
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(database_url=db_url, data_dir=tmp_path / "data"))
    with local_client(app) as client:
        with_csrf(client)
        client.sessions = app.state.db
        yield client


def _runs(web) -> int:
    with web.sessions() as s:
        return s.query(Run).count()


def test_a_trio_preset_fills_three_rows_and_launches_three_students_in_order(web):
    page = web.get("/runs/new?preset=tiny-trio")
    assert rows(page.text) == [("chem", "tiny:llama", "chemistry"), ("phys", "tiny:qwen2", "physics"),
                               ("bio", "tiny:llama", "biology")]
    assert web.get("/runs/new?preset=tiny-trio", headers={**HX, "HX-Target": "launch-form"}).text.lstrip() \
        .startswith('<form id="launch-form"')   # what the preset select's change swaps in
    data = form_data(page.text)
    assert data["data.domains"] == "chemistry, physics, biology" and data["student_rows"] == "0,1,2"
    r = web.post("/runs/new", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text[:2000]
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    with web.sessions() as s:
        run = s.get(Run, rid)
        assert [(st.position, st.name, st.strong_domain) for st in sorted(run.students, key=lambda x: x.position)] \
            == [(0, "chem", "chemistry"), (1, "phys", "physics"), (2, "bio", "biology")]
        assert run.config == preset("tiny-trio").to_dict()   # nothing the form does not show was lost
    detail = web.get(f"/api/v1/runs/{rid}").json()
    assert [s["name"] for s in detail["students"]] == ["chem", "phys", "bio"]
    assert "chem ⇄ phys ⇄ bio" in web.get(f"/runs/{rid}").text


@pytest.mark.parametrize("htmx", [False, True])
def test_rows_are_added_and_removed_keeping_what_was_typed(web, htmx):
    headers = HX if htmx else {}
    data = form_data(web.get("/runs/new?preset=tiny").text)
    data.update({"name": "typed run", "students.1.name": "typed-phys", "schedule.rounds": "1",
                 "data.domains": "chemistry, physics, biology"})
    r = web.post("/runs/new", data={**data, "row_action": "add"}, headers=headers)
    assert r.status_code == 200
    assert r.text.lstrip().startswith('<form id="launch-form"') == htmx
    assert rows(r.text) == [("chem", "tiny:llama", "chemistry"), ("typed-phys", "tiny:qwen2", "physics"),
                            ("", "tiny:qwen2", "")]   # a new row: the last row's model, the rest to fill
    after = form_data(r.text)
    assert after["student_rows"] == "0,1,new" and after["name"] == "typed run" and after["schedule.rounds"] == "1"
    assert ("row_action", "remove:2") in parse(r.text).buttons and "Student 3 name" in r.text
    after.update({"students.2.name": "bio", "students.2.model": "tiny:llama", "students.2.strong_domain": "biology"})
    # remove the first row: the others move up with their own values and preset settings
    r = web.post("/runs/new", data={**after, "row_action": "remove:0"}, headers=headers)
    assert r.status_code == 200
    assert rows(r.text) == [("typed-phys", "tiny:qwen2", "physics"), ("bio", "tiny:llama", "biology")]
    after = form_data(r.text)
    assert after["student_rows"] == "1,new"
    assert ("row_action", "remove:0") not in parse(r.text).buttons   # two rows: the fewest a run has
    assert _runs(web) == 0   # row buttons never launch
    r = web.post("/runs/new", data=after, headers=headers, follow_redirects=False)
    assert r.status_code == (204 if htmx else 303), r.text[:2000]
    with web.sessions() as s:
        run = s.query(Run).one()
        phys, bio = run.config["students"]
        assert (phys["name"], phys["warmup_domains"], phys["warmup_sft_steps"]) == ("typed-phys", ["physics"], 200)
        assert (bio["name"], bio["warmup_domains"], bio["warmup_sft_steps"]) == ("bio", None, 0)   # defaults
        assert run.config["data"]["domains"] == ["chemistry", "physics", "biology"]


def test_rows_stay_between_two_and_eight(web):
    data = form_data(web.get("/runs/new?preset=tiny").text)
    r = web.post("/runs/new", data={**data, "row_action": "remove:1"})
    assert r.status_code == 422 and "at least 2 students" in r.text and len(rows(r.text)) == 2
    for n in range(3, 9):
        r = web.post("/runs/new", data={**data, "row_action": "add"})
        assert r.status_code == 200 and len(rows(r.text)) == n
        data = form_data(r.text)
    assert ("row_action", "add") not in parse(r.text).buttons and "Eight students" in r.text
    r = web.post("/runs/new", data={**data, "row_action": "add"})
    assert r.status_code == 422 and "at most 8 students" in r.text and len(rows(r.text)) == 8
    for bad in ("remove:8", "remove:x", "explode"):
        r = web.post("/runs/new", data={**data, "row_action": bad})
        assert r.status_code == 422 and 'id="form-errors"' in r.text and len(rows(r.text)) == 8, bad
    assert _runs(web) == 0


def test_errors_name_the_row_and_the_field(web):
    data = form_data(web.get("/runs/new?preset=tiny-trio").text)
    data.update({"students.2.name": "bad name!", "students.1.strong_domain": "geology", "schedule.rounds": "0"})
    r = web.post("/runs/new", data=data)
    assert r.status_code == 422
    assert re.search(r'id="e-f-students-2-name">[^<]*pattern', r.text)
    assert 'id="f-students-2-name" name="students.2.name" value="bad name!"' in r.text   # kept as typed
    assert re.search(r'id="f-students-2-name"[^>]*aria-invalid="true"', r.text)
    summary = re.search(r'<div class="form-errors".*?</div>', r.text, re.S).group(0)
    assert '<a href="#f-students-2-name">Student 3 name</a> (<code>students.2.name</code>)' in summary
    assert "<code>schedule.rounds</code>" in summary
    assert rows(r.text)[1] == ("phys", "tiny:qwen2", "geology")
    # a service's refusal of one row's field is shown at that field
    data = form_data(web.get("/runs/new?preset=tiny-trio").text)
    r = web.post("/runs/new", data={**data, "students.2.model": "/etc"})
    assert r.status_code == 422 and re.search(r'id="e-f-students-2-model">[^<]*outside the directories', r.text)
    assert _runs(web) == 0


def test_duplicate_names_are_refused_at_the_form_level(web):
    data = form_data(web.get("/runs/new?preset=tiny-trio").text)
    r = web.post("/runs/new", data={**data, "students.2.name": "chem"})
    assert r.status_code == 422
    errors = re.search(r'<div class="form-errors".*?</div>', r.text, re.S).group(0)
    assert "different names" in errors and "chem" in errors
    assert 'class="field-error" id="e-f-students-' not in r.text   # not pinned on one of the two rows
    assert rows(r.text)[2] == ("chem", "tiny:llama", "biology")
    assert _runs(web) == 0


def test_a_tampered_row_list_is_refused_and_the_preset_loads_without_javascript(web):
    data = form_data(web.get("/runs/new?preset=tiny").text)
    for bad in ("0,7", "0,1,2,3,4,5,6,7,new", "0"):
        r = web.post("/runs/new", data={**data, "student_rows": bad})
        assert r.status_code == 422 and 'id="form-errors"' in r.text, bad
    assert _runs(web) == 0
    # the preset select's change needs JavaScript; without it, the noscript button loads the chosen preset
    assert ("load_preset", "1") in parse(web.get("/runs/new").text).buttons
    r = web.post("/runs/new", data={**data, "preset": "tiny-trio", "load_preset": "1"})
    assert r.status_code == 200 and len(rows(r.text)) == 3 and _runs(web) == 0
