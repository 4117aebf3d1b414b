"""The runs page's start form for a workflow on a queue, in a real headless Chromium: its
priority and dedup id fields show for a queued workflow only; a second start with a live
dedup id returns the run that has it, and a higher priority goes first in the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.kit import wait_until
from tests.serverkit import Server
from tests.test_queue_runtime import QUEUE_APP
from tests.test_ui import TOKEN, browser, log_in, page

__all__ = ["browser", "page"]  # the fixtures, shared with tests/test_ui.py


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`durable server` serving tests/apps/queue_app.py: one slot, held until signalled."""
    with Server(tmp_path, TOKEN, app=QUEUE_APP) as s:
        yield s


def start(page: Page, workflow: str, label: str, *, run_id: str = "", priority: str = "",
          dedup_id: str = "") -> str:
    """Fill the start form and submit it; returns what it says."""
    form = page.locator("#start-form")
    form.get_by_label("Workflow").select_option(workflow)
    form.locator("textarea[name=input]").fill(f'"{label}"')
    form.locator("input[name=id]").fill(run_id)
    if priority or dedup_id:
        form.get_by_label("Queue priority").fill(priority)
        form.get_by_label("Deduplication id").fill(dedup_id)
    result = form.locator(".result")
    result.evaluate("node => { node.textContent = ''; }")
    form.get_by_role("button", name="Start").click()
    expect(result).not_to_have_text("")
    expect(result).not_to_have_text("…")
    return result.inner_text()


def test_the_start_form_sends_a_dedup_id_and_a_priority_for_a_queued_workflow(
        page: Page, server: Server) -> None:
    log_in(page, server)
    form = page.locator("#start-form")
    form.get_by_label("Workflow").select_option("rt.free")
    expect(form.locator("fieldset.queued")).to_be_hidden()  # on no queue: nothing to set
    form.get_by_label("Workflow").select_option("rt.hold")
    expect(form.locator("fieldset.queued")).to_be_visible()
    expect(form.locator("fieldset.queued legend")).to_have_text("On queue rt.one-slot")

    said = start(page, "rt.hold", "first", run_id="first")  # waits until a worker admits it
    assert said == "Started: first (ENQUEUED #1 on rt.one-slot)"
    with server.client() as api:  # the first run takes the one slot
        wait_until(lambda: api.get("/api/runs/first").json()["run"]["status"] == "RUNNING",
                   "the first run to take the slot")
    said = start(page, "rt.hold", "order", run_id="order-1", dedup_id="order-A-17")
    assert said == "Started: order-1 (ENQUEUED #1 on rt.one-slot)"
    again = start(page, "rt.hold", "order again", dedup_id="order-A-17")
    assert again == "Already exists: order-1 (ENQUEUED #1 on rt.one-slot)"
    urgent = start(page, "rt.hold", "urgent", run_id="urgent", priority="5")
    assert urgent == "Started: urgent (ENQUEUED #1 on rt.one-slot)"  # ahead of order-1

    with server.client() as api:
        runs = {r: api.get(f"/api/runs/{r}").json()["run"] for r in ("order-1", "urgent")}
        listed = api.get("/api/runs", params={"workflow": "rt.hold"}).json()["runs"]
    assert (runs["order-1"]["dedup_id"], runs["order-1"]["position"]) == ("order-A-17", 2)
    assert (runs["urgent"]["priority"], runs["urgent"]["position"]) == (5, 1)
    assert sorted(r["run_id"] for r in listed) == ["first", "order-1", "urgent"]  # no third

    priority = form.get_by_label("Queue priority")
    priority.fill("1.5")  # not a whole number: the browser does not submit the form
    assert priority.evaluate("input => input.validity.valid") is False
