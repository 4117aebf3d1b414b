"""Pause, edit and resume a run from its page in a real headless Chromium.

`UPDATE_SCREENSHOTS=1` also writes docs/ui-pause.png, the README's picture of a paused run with
its edited step in the history.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.kit import ROOT, wait_until
from tests.serverkit import Server
from tests.test_ui import TOKEN, browser, log_in, page, server

__all__ = ["browser", "page", "server"]  # the fixtures, shared with the main UI test


def test_pause_edit_a_step_and_resume_from_the_run_page(page: Page, server: Server,
                                                         tmp_path: Path) -> None:
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "approval", "id": "order-p1",
                                    "input": {"order_id": "P-1", "amount": 7}})
        wait_until(lambda: api.get("/api/runs/order-p1").json()["pending"], "it waits")
    log_in(page, server)
    page.goto(f"{server.url}/runs/order-p1")
    page.get_by_role("button", name="Pause run").click()
    expect(page.locator(".run-head .badge")).to_have_text("PAUSED")  # it reloads

    edit = page.locator("#edit-form")
    reserve = edit.locator("option", has_text="reserve")
    edit.get_by_label("Step").select_option(reserve.get_attribute("value"))
    edit.get_by_label("New result (JSON) or error message").fill('"reserved by hand"')
    edit.get_by_role("button", name="Set result").click()
    history = page.locator("table.history")
    expect(history).to_contain_text('edited by token')
    expect(history).to_contain_text('now SUCCEEDED "reserved by hand"')
    expect(history).to_contain_text("paused by token")
    page.screenshot(path=str(tmp_path / "ui-pause.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(tmp_path / "ui-pause.png", ROOT / "docs" / "ui-pause.png")

    page.get_by_role("button", name="Resume run").click()
    expect(page.locator(".run-head .badge")).to_have_text("RUNNING")
    expect(page.get_by_role("button", name="Pause run")).to_be_visible()
    with server.client() as api:  # the same token by bearer header: the history tells which
        api.post("/api/runs/order-p1/pause")
        api.post("/api/runs/order-p1/resume")
        by = [e["details"]["by"] for e in api.get("/api/runs/order-p1/history").json()["events"]
              if e["type"] in ("ExecutionPaused", "OperationEdited", "ExecutionResumed")]
        fingerprint = by[0].split()[1]
        assert by == [f"token {fingerprint} ({how})"
                      for how in ("session", "session", "session", "bearer", "bearer")]
        assert TOKEN not in str(by)
        api.post("/api/runs/order-p1/signal", json={"name": "approve", "payload": "ui"})
        assert api.get("/api/runs/order-p1/result", params={"wait": 20}).json()["status"] \
            == "SUCCEEDED"
        ops = api.get("/api/runs/order-p1").json()["operations"]
        assert next(op for op in ops if op["name"] == "reserve")["result"] == "reserved by hand"
