"""The dashboard as a researcher uses it, in a real browser (Chromium via Playwright)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from app.models import Event, Exchange, Feedback, Override, Rollout, Step


def test_launch_form_shows_inline_error_then_creates_a_run(page, live_server):
    page.goto(live_server.url + "/runs/new")
    expect(page.get_by_label("Preset")).to_have_value("tiny")
    rounds = page.get_by_label("Rounds R")
    rounds.fill("0")
    page.get_by_role("button", name="Launch run").click()
    error = page.locator("#e-f-schedule-rounds")
    expect(error).to_contain_text("greater than or equal to 1")
    expect(page.get_by_label("Rounds R")).to_have_attribute("aria-invalid", "true")
    assert page.url.endswith("/runs/new")  # still the form, nothing created
    page.get_by_label("Rounds R").fill("1")
    page.get_by_label("Run name").fill("from the browser")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    expect(page.locator("h1")).to_contain_text("from the browser")
    expect(page.locator("#run-status")).to_contain_text("queued")
    assert page.js_errors == []


def test_launch_form_switches_preset_and_flags_bad_advanced_config(page, live_server):
    page.goto(live_server.url + "/runs/new")
    page.get_by_label("Preset").select_option("demo")
    expect(page.get_by_label("Student 1 name")).to_have_value("smol-chem")
    page.locator("summary", has_text="Advanced").click()
    page.get_by_label("Launch with this config instead of the fields above").check()
    page.get_by_label("Full run config").fill("rollout: {n: 0}\nstudents: []\n")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#e-f-config-text")).to_contain_text("students")
    assert page.js_errors == []


def test_run_page_renders_charts_and_exchange_feed(page, live_server):
    rid = live_server.ids["plain"]["run"]
    page.goto(f"{live_server.url}/runs/{rid}")
    expect(page.locator("#feed tbody tr")).to_have_count(12)
    expect(page.locator(".pareto svg")).to_have_count(2)
    expect(page.locator(".pareto .pareto-region")).to_have_count(2)
    expect(page.locator("#gates svg circle")).to_have_count(2)
    # uPlot draws a canvas per chart once the chart JSON arrives
    expect(page.locator('.chart[data-chart="loss"] canvas')).to_have_count(1)
    expect(page.locator('.chart[data-chart="anchoring"] canvas')).to_have_count(1)
    expect(page.locator('.chart[data-chart="throughput"] canvas')).to_have_count(1)
    expect(page.locator("#run-status")).to_contain_text("running")
    assert page.js_errors == []


def test_run_page_updates_live_over_sse(page, live_server):
    """A worker writes a step and an exchange; the page shows them without a reload."""
    ids = live_server.ids["live"]
    rid = ids["run"]
    page.goto(f"{live_server.url}/runs/{rid}")
    expect(page.locator("#feed tbody tr")).to_have_count(4)
    expect(page.locator("body")).to_have_attribute("data-charts-steps", "2")
    page.evaluate("window.__marker = 1")  # survives only if the page is never reloaded
    with live_server.sessions() as s:
        src = s.get(Exchange, ids["exchanges"][0])
        ro = s.get(Rollout, src.rollout_id)
        step = Step(run_id=rid, round=1, direction=1, step=2, global_step=2, tutee="phys", tutor="chem", loss=0.1,
                    metrics={"anchoring/kept_rate": 0.9, "throughput/rollout_tokens_per_s": 150.0})
        s.add(step)
        s.flush()
        new_ro = Rollout(run_id=rid, step_id=step.id, student="phys", prompt_id=ro.prompt_id, prompt_index=0,
                         rollout_index=0, text="A brand new live rollout", token_ids=[1, 2], answer="B", correct=True)
        s.add(new_ro)
        s.flush()
        ex = Exchange(run_id=rid, key="live-new", step_id=step.id, rollout_id=new_ro.id, round=1, direction=1,
                      global_step=2, tutee="phys", tutor="chem", domain="chemistry", correct=True, category=None,
                      context_used="none", skipped=True, tokens=["A", " brand"], divergence=[0.0, 0.0],
                      divergence_s_only=[0.0, 0.0], loss=0.0)
        s.add(ex)
        s.flush()
        s.add(Event(run_id=rid, type="exchange", ref_id=ex.id, payload={"key": "live-new"}))
        s.add(Event(run_id=rid, type="step", ref_id=step.id, payload={"global_step": 2}))
        s.commit()
        new_id = ex.id
    expect(page.locator(f"#feed #ex-{new_id}")).to_be_visible(timeout=10_000)
    expect(page.locator("#feed tbody tr").first).to_contain_text("A brand new live rollout")
    expect(page.locator("body")).to_have_attribute("data-charts-steps", "3", timeout=10_000)
    expect(page.locator("#run-status")).to_contain_text("150.0")
    assert page.evaluate("window.__marker") == 1
    assert page.js_errors == []


def test_exchange_heatmap_shows_exact_value_on_hover_and_keyboard_focus(page, live_server):
    ids = live_server.ids["plain"]
    page.goto(f"{live_server.url}/exchanges/{ids['kept']}")
    heat = page.locator("#heat-div")
    readout = heat.locator(".heat-readout")
    toks = heat.locator(".tok")
    assert toks.count() > 3
    expected = toks.nth(2).get_attribute("data-v")
    toks.nth(2).hover()
    expect(readout).to_contain_text(f"token 2")
    expect(readout).to_contain_text(expected)
    # keyboard: tab into the heatmap (one tab stop), then arrow keys move between tokens
    toks.nth(0).focus()
    expect(readout).to_contain_text("token 0")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(readout).to_contain_text("token 3")
    expect(readout).to_contain_text(toks.nth(3).get_attribute("data-v"))
    assert page.evaluate("document.activeElement.getAttribute('data-i')") == "3"
    # the feedback-effect heatmap exists for an s+f exchange, with signed values
    eff = page.locator("#heat-eff .tok").nth(1)
    eff.hover()
    expect(page.locator("#heat-eff .heat-readout")).to_contain_text("effect")
    # concept highlighted in the question
    expect(page.locator("#question-text mark.concept")).to_have_text(re.compile("hydrogen", re.I))
    assert page.js_errors == []


def test_xss_payloads_render_as_text_and_never_execute(page, live_server):
    ids = live_server.ids["xss"]
    page.goto(f"{live_server.url}/exchanges/{ids['kept']}")
    expect(page.locator("#rollout-text")).to_contain_text("<script>window.__xss=1</script>")
    expect(page.locator("#rollout-text")).to_contain_text('<img src=x onerror="window.__xss=2">')
    expect(page.locator("#feedback-raw")).to_contain_text("<script>window.__xss=1</script>")
    expect(page.locator("#feedback-sanitised")).to_contain_text('onerror="window.__xss=2"')
    expect(page.locator("#question-text")).to_contain_text("<script>window.__xss=1</script>")
    assert page.locator("#rollout-text img, #feedback-raw img, #question-text img, main script").count() == 0
    page.locator("#heat-div .tok").first.hover()
    page.wait_for_timeout(300)  # let any injected handler fire, if one existed
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.goto(f"{live_server.url}/runs/{ids['run']}/exchanges")
    expect(page.locator("#rows")).to_contain_text("<script>window.__xss=1</script>")
    assert page.locator("#rows img, #rows script").count() == 0
    page.goto(f"{live_server.url}/runs/{ids['run']}/approvals")
    expect(page.locator(".approval-feedback")).to_contain_text("onerror")
    page.goto(f"{live_server.url}/runs/{ids['run']}")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.js_errors == []


def test_override_form_edits_feedback_and_page_shows_pending_override(page, live_server):
    ids = live_server.ids["plain"]
    page.goto(f"{live_server.url}/exchanges/{ids['kept']}")
    page.get_by_label("edit", exact=True).check()
    page.get_by_label("Feedback text (for edit)").fill("")
    page.get_by_role("button", name="Submit override").click()
    expect(page.locator("#override-panel .field-error")).to_contain_text("non-empty")
    page.get_by_label("Feedback text (for edit)").fill("Recall which gas zinc displaces from acids.")
    page.get_by_role("button", name="Submit override").click()
    expect(page.locator(".pending-override")).to_contain_text("Recall which gas zinc displaces from acids.")
    expect(page.locator(".pending-override")).to_contain_text("edit")
    with live_server.sessions() as s:
        ov = s.query(Override).filter_by(exchange_id=ids["kept"], kind="edit").one()
        assert ov.payload == {"text": "Recall which gas zinc displaces from acids."} and ov.status == "pending"
    page.reload()
    expect(page.locator(".pending-override")).to_contain_text("Recall which gas")
    assert page.js_errors == []


def test_replay_form_polls_until_done_and_shows_before_after(page, live_server):
    ids = live_server.ids["plain"]
    page.goto(f"{live_server.url}/exchanges/{ids['kept']}")
    # the seeded finished replay shows its heatmaps and the answer distribution
    done = page.locator(f"#replay-{ids['replay']}")
    expect(done.locator(".heatmap")).to_have_count(3)
    expect(done.locator("table.dist")).to_contain_text("80.0%")
    page.get_by_label("Feedback to replay with").fill("Think about electrons.")
    page.get_by_role("button", name="Run replay").click()
    pending = page.locator(".replay").first
    expect(pending).to_contain_text("queued")
    rid = int(pending.get_attribute("id").split("-")[1])
    from app.models import Replay

    with live_server.sessions() as s:  # play the worker: finish the replay
        rp = s.get(Replay, rid)
        base = s.get(Replay, ids["replay"])
        rp.status, rp.result = "done", base.result
        s.commit()
    expect(page.locator(f"#replay-{rid}")).to_contain_text("done", timeout=10_000)
    expect(page.locator(f"#replay-{rid} .heatmap")).to_have_count(3)
    assert page.js_errors == []


def test_manual_approval_queue_approve_and_edit(page, live_server):
    ids = live_server.ids["manual"]
    page.goto(f"{live_server.url}/runs/{ids['run']}/approvals")
    item = page.locator(f"#approval-{ids['approval']}")
    expect(item).to_contain_text("Think about the gas.")
    item.get_by_label("Edited feedback").fill("Which gas forms bubbles?")
    item.get_by_role("button", name="Save edit").click()
    expect(page.locator("#queue")).to_contain_text("Nothing is waiting")
    expect(page.locator("#queue")).to_contain_text("edited")
    expect(page.locator("#queue")).to_contain_text("Which gas forms bubbles?")
    assert page.js_errors == []


def test_run_controls_and_run_override(page, live_server):
    ids = live_server.ids["manual"]
    page.goto(f"{live_server.url}/runs/{ids['run']}")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#run-status")).to_contain_text("pause requested")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.get_by_label("What to change").select_option("set_tau")
    page.get_by_label("New τ (set τ)").fill("abc")
    page.get_by_role("button", name="Request override").click()
    expect(page.locator("#overrides .field-error")).to_contain_text("number")
    page.get_by_label("New τ (set τ)").fill("0.35")
    page.get_by_role("button", name="Request override").click()
    expect(page.locator("#overrides table")).to_contain_text("0.35")
    expect(page.locator("#overrides table")).to_contain_text("pending")
    assert page.js_errors == []


def test_compare_page_draws_shared_axes(page, live_server):
    a, b = live_server.ids["plain"]["run"], live_server.ids["live"]["run"]
    page.goto(f"{live_server.url}/compare?runs={a},{b}")
    expect(page.locator(".pareto svg")).to_have_count(2)
    expect(page.locator(".pareto").first.locator("polyline")).to_have_count(2)
    expect(page.locator('.chart[data-chart="loss"] canvas')).to_have_count(1)
    assert page.js_errors == []


def test_runs_list_and_keyboard_navigation(page, live_server):
    page.goto(live_server.url + "/")
    expect(page.locator("#runs-table")).to_contain_text("plain run")
    expect(page.locator("#runs-table progress").first).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    assert page.js_errors == []
