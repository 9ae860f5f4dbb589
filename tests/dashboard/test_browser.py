"""The dashboard in a real browser against a real ``skalds up``: what a person sees and does."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.dashboard.conftest import NODE_ID, TOKEN, new_page, screenshot, sign_in

pw = pytest.importorskip("playwright.sync_api")
expect = pw.expect

pytestmark = pytest.mark.slow


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_camera(api, task_id: str, **attachments) -> None:
    body = {
        "id": task_id,
        "className": "CameraStreamWorker",
        "executor": NODE_ID,
        "attachments": {"rtspUrl": f"rtsp://camera/{task_id}", "fixFrame": 5, **attachments},
    }
    assert api.post("/api/tasks", json=body).status_code == 201


def create_crashing_job(api, task_id: str) -> None:
    """A job whose only stage fails on its only try (``fail_chance`` 1): a StageFailed."""
    body = {
        "id": task_id,
        "className": "MultiStageJobWorker",
        "attachments": {
            "jobId": task_id,
            "retries": 0,
            "subTasks": [{"name": "explode", "duration": 0, "fail_chance": 1}],
        },
    }
    assert api.post("/api/tasks", json=body).status_code == 201


def nav_link(page, name: str):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def status_chip(page):
    return page.locator("#task-status .chip")


def confirm(page, label: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=label).click()
    expect(dialog).to_be_hidden()


def test_a_wrong_token_is_refused_and_the_right_one_opens_the_overview(page):
    page.goto("/dashboard")
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That token was refused.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#nodes-by-mode")).to_contain_text("1")


def test_creating_a_task_from_the_form_checks_fields_inline_and_shows_it_start(signed_in):
    page = signed_in
    nav_link(page, "Create task").click()
    page.get_by_label("Worker class *").select_option("CameraStreamWorker")
    fix_frame = page.get_by_label("fixFrame")
    fix_frame.fill("500")
    fix_frame.blur()
    expect(page.get_by_text("must be ≤ 120")).to_be_visible()
    expect(fix_frame).to_have_attribute("aria-invalid", "true")

    page.get_by_role("button", name="Create task").click()  # rtspUrl is still empty
    expect(page.locator('[data-path="rtspUrl"] .field-error')).to_have_text("required")
    expect(page).to_have_url(re.compile(r"/dashboard/tasks/new$"))

    task_id = unique("ui-cam")
    page.get_by_label("Task ID").fill(task_id)
    page.get_by_label("rtspUrl").fill("rtsp://camera/ui")
    fix_frame.fill("8")
    page.get_by_label("Priority").fill("3")
    expect(page.get_by_text("must be ≤ 120")).to_be_hidden()
    screenshot(page, "create-task", full_page=True)
    page.get_by_role("button", name="Create task").click()

    expect(page).to_have_url(re.compile(rf"/dashboard/tasks/{task_id}$"))
    expect(page.get_by_role("heading", name=task_id)).to_be_visible()
    expect(status_chip(page)).to_have_text("Running")
    expect(page.locator('[data-field="priority"]')).to_have_text("3")


def test_the_api_rejecting_a_field_is_shown_next_to_it(signed_in, api):
    """A rule the form cannot know (the dependency list is capped by the API) comes back as
    a 422 naming the field; the page puts the message on that field."""
    page = signed_in
    page.goto("/dashboard/tasks/new")
    page.get_by_label("Worker class *").select_option("CameraStreamWorker")
    page.get_by_label("rtspUrl").fill("rtsp://camera/too-many")
    page.get_by_label("Dependencies").fill(", ".join(f"dep-{i}" for i in range(101)))
    page.get_by_role("button", name="Create task").click()
    error = page.locator('[data-top="dependencies"] .field-error')
    expect(error).to_contain_text("at most 100")
    expect(page.get_by_label("Dependencies")).to_have_attribute("aria-invalid", "true")


def test_saving_attachments_reaches_the_running_worker_and_its_log(signed_in, api):
    task_id = unique("cam-edit")
    create_camera(api, task_id)
    page = signed_in
    page.goto(f"/dashboard/tasks/{task_id}")
    expect(status_chip(page)).to_have_text("Running")
    log = page.locator("#task-log")
    expect(log).to_contain_text("frames analysed (fixFrame=5, threshold=0.50)")

    page.get_by_label("threshold").fill("2")  # the schema says at most 1
    page.get_by_role("button", name="Save attachments").click()
    expect(page.locator('[data-path="threshold"] .field-error')).to_have_text("must be ≤ 1")

    page.get_by_label("threshold").fill("0.8")
    page.get_by_label("fixFrame").fill("7")
    page.get_by_role("button", name="Save attachments").click()
    expect(page.locator("#update-status")).to_contain_text("the worker received the update")
    expect(log).to_contain_text("new parameters: rtspUrl=rtsp://camera/")
    expect(log).to_contain_text("fixFrame=7 threshold=0.80")
    expect(page.locator("#heartbeat-chart svg path.line")).to_be_visible()
    screenshot(page, "task-detail", full_page=True)


def test_pause_resume_and_cancel_ask_first_and_the_status_follows(signed_in, api):
    task_id = unique("cam-ctl")
    create_camera(api, task_id)
    page = signed_in
    page.goto(f"/dashboard/tasks/{task_id}")
    expect(status_chip(page)).to_have_text("Running")

    page.get_by_role("button", name="Pause").click()
    confirm(page, "Pause")
    expect(status_chip(page)).to_have_text("Paused")

    page.get_by_role("button", name="Resume").click()
    confirm(page, "Resume")
    expect(status_chip(page)).to_have_text("Running")

    page.get_by_role("button", name="Cancel task").click()
    page.get_by_role("dialog").get_by_role("button", name="Keep it").click()
    expect(status_chip(page)).to_have_text("Running")
    page.get_by_role("button", name="Cancel task").click()
    confirm(page, "Cancel task")
    expect(status_chip(page)).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()


def test_a_crashing_worker_shows_failed_with_its_traceback_and_can_be_retried(signed_in, api):
    task_id = unique("crash")
    create_crashing_job(api, task_id)
    page = signed_in
    page.goto(f"/dashboard/tasks/{task_id}")
    expect(status_chip(page)).to_have_text("Failed")
    error = page.locator("#task-error")
    expect(error).to_contain_text("Traceback (most recent call last)")
    expect(error).to_contain_text("StageFailed: stage 'explode' failed 1 times")

    page.get_by_role("button", name="Retry").click()
    confirm(page, "Retry")
    expect(page.get_by_text("Retry: sent")).to_be_visible()
    expect(status_chip(page)).to_have_text("Failed")
    expect(page.locator('[data-field="attempts"]')).to_have_text("1")


def test_the_tasks_page_filters_searches_and_follows_status_live(signed_in, api):
    prefix = unique("list")
    create_camera(api, f"{prefix}-cam")
    create_crashing_job(api, f"{prefix}-job")
    page = signed_in
    nav_link(page, "Tasks").click()
    page.get_by_label("Search by ID").fill(prefix)
    rows = page.locator("#tasks-table tbody tr[data-task]")
    expect(rows).to_have_count(2)

    page.get_by_label("Class").fill("CameraStreamWorker")
    expect(rows).to_have_count(1)
    row = page.locator(f'tr[data-task="{prefix}-cam"]')
    expect(row.locator(".chip")).to_have_text("Running")
    expect(row.locator(".heartbeat-cell")).to_have_text(re.compile(r"^\d+$"))

    api.put(f"/api/tasks/{prefix}-cam/status", json={"lifecycleStatus": "Cancelled"})
    expect(row.locator(".chip")).to_have_text("Cancelled")  # pushed, no reload

    page.get_by_label("Class").fill("")
    page.get_by_label("Status").select_option("Failed")
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-task="{prefix}-job"] .chip')).to_have_text("Failed")
    expect(page).to_have_url(re.compile(r"status=Failed"))

    page.get_by_role("link", name=f"{prefix}-job").click()
    expect(page.get_by_role("heading", name=f"{prefix}-job")).to_be_visible()
    page.go_back()
    expect(page.get_by_label("Status")).to_have_value("Failed")


def test_the_skalds_page_shows_the_node_its_classes_and_its_tasks(signed_in, api):
    task_id = unique("cam-node")
    create_camera(api, task_id)
    page = signed_in
    nav_link(page, "Skalds").click()
    node = page.locator(f'[data-node="{NODE_ID}"]')
    expect(node.locator(".chip").first).to_have_text("online")
    expect(node).to_contain_text("node")
    expect(node.locator(".heartbeat-age")).to_contain_text(re.compile(r"Last heartbeat \d+ s ago"))
    expect(node).to_contain_text("CameraStreamWorker")
    expect(node).to_contain_text("MultiStageJobWorker")
    expect(node).to_contain_text("Memory")
    expect(node).to_contain_text("gpu 1")  # what it offers (--resources gpu=1)
    node.get_by_role("link", name=task_id).click()
    expect(page.get_by_role("heading", name=task_id)).to_be_visible()


def test_the_overview_counts_tasks_charts_activity_and_lists_failures(signed_in, api):
    task_id = unique("ov-crash")
    page = signed_in
    failed = page.locator('#tasks-by-status [data-status="Failed"] .stat-value')
    before = int(failed.inner_text())
    create_crashing_job(api, task_id)
    create_camera(api, unique("ov-cam"))
    expect(failed).to_have_text(str(before + 1))  # pushed by the status stream
    failures = page.locator("#recent-failures")
    expect(failures.get_by_role("link", name=task_id)).to_be_visible()
    expect(failures).to_contain_text("StageFailed")
    expect(page.locator("#activity svg rect.bar.failed").last).to_have_attribute(
        "height", re.compile(r"^[1-9]")
    )
    screenshot(page, "overview", full_page=True)


def test_a_narrow_screen_shows_every_page_without_sideways_scrolling(browser, base_url, api):
    task_id = unique("narrow")
    create_camera(api, task_id)
    page = new_page(browser, base_url, width=390, height=844)
    try:
        sign_in(page)
        for path, heading in (
            ("/dashboard", "Overview"),
            ("/dashboard/tasks", "Tasks"),
            ("/dashboard/skalds", "Skalds"),
            (f"/dashboard/tasks/{task_id}", task_id),
            ("/dashboard/tasks/new", "Create task"),
        ):
            page.goto(path)
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        screenshot(page, "narrow-create-task")
        assert not page.errors
    finally:
        page.context.close()


def test_signing_out_forgets_the_token(signed_in):
    page = signed_in
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()
