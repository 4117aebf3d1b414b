"""The runs list in a real headless Chromium: root runs by default with their children behind a
toggle, the time range and attribute filters (a malformed one says where it breaks), and a run
started elsewhere appearing without the table being loaded again."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from playwright.sync_api import Page, expect

import durable
from tests.kit import ROOT, wait_until
from tests.serverkit import Server
from tests.test_ui import browser, log_in, page, server

__all__ = ["browser", "page", "server"]  # the fixtures, shared with tests/test_ui.py

ORDER = {"order_id": "A-1", "amount": 1}


def test_the_runs_list_shows_roots_toggles_children_filters_and_updates_live(
        page: Page, server: Server, tmp_path: Path) -> None:
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "pipeline", "input": "depot", "id": "pipe-1"})
        wait_until(lambda: api.get("/api/runs", params={"parent": "pipe-1"}).json()["runs"],
                   "pipe-1 to start its child", interval=0.05)
        for run_id, attrs in [("acme-big", {"customer": "acme", "amount": 400}),
                              ("acme-small", {"customer": "acme", "amount": 4}),
                              ("zed", {"customer": "zed", "amount": 400})]:
            api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": run_id,
                                        "attributes": attrs})
    two_hours_ago = durable.Client(server.db, clock=lambda: time.time() - 7200)
    two_hours_ago.start_run("approval", '{"order_id": "O-1", "amount": 1}', "old-run")
    two_hours_ago.close()
    child = api_child(server)

    log_in(page, server)
    table = page.locator("table.runs")
    expect(table).to_contain_text("pipe-1")
    expect(table).to_contain_text("old-run")
    expect(table.locator(f'tr[data-id="{child}"]')).to_have_count(0)  # roots only
    expect(table.locator('tr[data-id="acme-big"] td.attrs')).to_contain_text("amount=400")

    table.locator('tr[data-id="pipe-1"]').get_by_role("button", name="▸ 1 child").click()
    expect(table.locator(f'tr.nested[data-id="{child}"]')).to_contain_text("label")
    table.locator('tr[data-id="pipe-1"]').get_by_role("button", name="▾ 1 child").click()
    expect(table.locator(f'tr[data-id="{child}"]')).to_have_count(0)

    page.get_by_label("Created").select_option("1h")
    page.get_by_role("button", name="Filter").click()
    expect(table).to_contain_text("acme-big")
    expect(table).not_to_contain_text("old-run")

    page.get_by_label("Attribute filter").fill('customer = "acme" AND amount >= 100')
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tr[data-id]")).to_have_count(1)
    expect(table).to_contain_text("acme-big")

    page.get_by_label("Attribute filter").fill('customer = "acme" AND amount >> 100')
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("bad filter at position 31")

    page.get_by_label("Attribute filter").fill("amount >= 100")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tr[data-id]")).to_have_count(2)
    table.evaluate("t => { t.dataset.mark = 'loaded once'; window.marked = true; }")
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": "live-new",
                                    "attributes": {"amount": 999}})
        api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": "live-low",
                                    "attributes": {"amount": 1}})
    expect(table.locator('tr[data-id="live-new"]')).to_contain_text("RUNNING")
    expect(table.locator("tr[data-id]").first).to_have_attribute("data-id", "live-new")
    expect(table.locator('tr[data-id="live-low"]')).to_have_count(0)  # filtered out live too
    assert table.evaluate("t => t.dataset.mark === 'loaded once' && window.marked")
    with server.client() as api:
        api.post("/api/runs/zed/cancel")
    expect(table.locator('tr[data-id="zed"] .badge')).not_to_have_text("RUNNING")
    screenshot(page, server, tmp_path)


def screenshot(page: Page, server: Server, tmp_path: Path) -> None:
    """The README's picture of the list (UPDATE_SCREENSHOTS=1 writes docs/ui-runs.png): every
    root run, one root's children shown."""
    page.goto(server.url + "/")
    page.locator('tr[data-id="pipe-1"]').get_by_role("button", name="▸ 1 child").click()
    expect(page.locator("tr.nested")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "ui-runs.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(tmp_path / "ui-runs.png", ROOT / "docs" / "ui-runs.png")


def api_child(server: Server) -> str:
    with server.client() as api:
        (child,) = api.get("/api/runs", params={"parent": "pipe-1"}).json()["runs"]
    return str(child["run_id"])
