"""Launching a run of three students from the launch form in a real browser (issue 17): add a student row,
fill it, launch, and the run page lists the three students in order; a trio preset fills three rows and a row
is removed; without JavaScript the same buttons work as plain form posts; Enter in a field launches (the
form's default button), it does not add or remove a row. The server has no worker: runs stay queued."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from app.models import Run


def _students_of(live_server, run_id: int) -> list[tuple[int, str, str | None]]:
    with live_server.sessions() as s:
        run = s.get(Run, run_id)
        return [(st.position, st.name, st.strong_domain) for st in sorted(run.students, key=lambda x: x.position)]


def _launched(page) -> int:
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_add_a_student_row_fill_it_and_launch_three_students(page, live_server):
    page.goto(live_server.url + "/runs/new")
    expect(page.get_by_label("Preset")).to_have_value("tiny")
    expect(page.locator("fieldset.student-row")).to_have_count(2)
    page.get_by_label("Run name").fill("trio from the form")
    page.get_by_label("Domains").fill("chemistry, physics, biology")
    page.evaluate("window.__marker = 'no reload'")
    page.get_by_role("button", name="Add a student").click()
    expect(page.locator("fieldset.student-row")).to_have_count(3)
    assert page.evaluate("window.__marker") == "no reload"   # htmx swapped the form in place
    expect(page.get_by_label("Run name")).to_have_value("trio from the form")   # typed values survive the swap
    expect(page.get_by_label("Domains")).to_have_value("chemistry, physics, biology")
    expect(page.get_by_label("Student 3 model")).to_have_value("tiny:qwen2")
    page.get_by_label("Student 3 name").fill("bio")
    page.get_by_label("Student 3 strong domain").fill("biology")
    page.get_by_role("button", name="Launch run").click()
    rid = _launched(page)
    expect(page.locator("h1")).to_contain_text("trio from the form")
    status = page.locator("#run-status")
    expect(status).to_contain_text("queued")
    expect(status).to_contain_text("chem ⇄ phys ⇄ bio on chemistry / physics / biology")
    expect(page.locator("#ov-student option")).to_have_text(["chem", "phys", "bio"])
    assert _students_of(live_server, rid) == [(0, "chem", "chemistry"), (1, "phys", "physics"), (2, "bio", "biology")]
    assert page.js_errors == []


def test_a_trio_preset_fills_three_rows_and_a_row_error_names_the_row(page, live_server):
    page.goto(live_server.url + "/runs/new")
    page.get_by_label("Preset").select_option("tiny-trio")
    expect(page.locator("fieldset.student-row")).to_have_count(3)
    expect(page.get_by_label("Student 3 name")).to_have_value("bio")
    page.get_by_label("Student 3 name").fill("no spaces allowed")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#e-f-students-2-name")).to_contain_text("pattern")
    expect(page.get_by_label("Student 3 name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-errors")).to_contain_text("Student 3 name (students.2.name)")
    page.get_by_role("button", name="Remove student 2").click()
    expect(page.locator("fieldset.student-row")).to_have_count(2)
    expect(page.get_by_label("Student 2 name")).to_have_value("no spaces allowed")   # row 3 moved up as typed
    expect(page.get_by_role("button", name=re.compile("Remove student"))).to_have_count(0)   # two: the fewest
    page.get_by_label("Student 2 name").fill("bio")
    page.get_by_label("Run name").fill("chem and bio")
    page.get_by_label("Run name").press("Enter")   # the default button launches
    rid = _launched(page)
    expect(page.locator("#run-status")).to_contain_text("chem ⇄ bio")
    assert _students_of(live_server, rid) == [(0, "chem", "chemistry"), (1, "bio", "biology")]
    assert page.js_errors == []


def test_rows_and_launch_work_without_javascript(browser, live_server):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server.url + "/runs/new")
        page.get_by_label("Preset").select_option("tiny-trio")
        page.get_by_role("button", name="Load preset").click()   # shown only without JavaScript
        expect(page.locator("fieldset.student-row")).to_have_count(3)
        page.get_by_label("Domains").fill("chemistry, physics, biology, geology")
        page.get_by_role("button", name="Add a student").click()
        expect(page.locator("fieldset.student-row")).to_have_count(4)
        expect(page.get_by_label("Domains")).to_have_value("chemistry, physics, biology, geology")
        page.get_by_label("Student 4 name").fill("geo")
        page.get_by_label("Student 4 strong domain").fill("geology")
        page.get_by_label("Run name").fill("four without js")
        page.get_by_role("button", name="Launch run").click()
        rid = _launched(page)
        assert [name for _, name, _ in _students_of(live_server, rid)] == ["chem", "phys", "bio", "geo"]
    finally:
        context.close()
