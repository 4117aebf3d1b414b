"""Act on all matching runs from the runs list, in a real headless Chromium: the list's own
filters go to a dry run whose count is shown first, and only the confirming click acts.

`UPDATE_SCREENSHOTS=1` also writes docs/ui-bulk.png, the README's picture of the panel with
its dry run counted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.kit import ROOT
from tests.serverkit import Server
from tests.test_ui import browser, log_in, page, picture, server

__all__ = ["browser", "page", "server"]  # the fixtures, shared with tests/test_ui.py

ORDER = {"order_id": "A-1", "amount": 1}


def test_the_runs_list_counts_the_matching_runs_then_terminates_them_on_confirming(
        page: Page, server: Server, tmp_path: Path) -> None:
    with server.client() as api:
        for run_id, customer in [("acme-1", "acme"), ("acme-2", "acme"), ("zed-1", "zed")]:
            api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": run_id,
                                        "attributes": {"customer": customer}})
    log_in(page, server)
    page.get_by_label("Attribute filter").fill('customer = "acme"')
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.runs tr[data-id]")).to_have_count(2)

    page.get_by_text("Act on all matching").click()
    page.get_by_label("Bulk action").select_option("terminate")
    page.get_by_role("button", name="Count matching runs").click()
    form = page.locator("#bulk-form")
    expect(form.locator(".result")).to_have_text(
        "2 runs match; terminate would apply to 2 (0 are past it)")
    picture(page, tmp_path / "ui-bulk.png")
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(tmp_path / "ui-bulk.png", ROOT / "docs" / "ui-bulk.png")
    with server.client() as api:  # counted, nothing done yet
        assert api.get("/api/runs/acme-1").json()["run"]["status"] == "RUNNING"
    page.get_by_role("button", name="terminate 2 runs").click()
    expect(form.locator(".result")).to_contain_text("terminate applied to 2, skipped 0 (done)")
    with server.client() as api:
        statuses = {r: api.get(f"/api/runs/{r}").json()["run"]["status"]
                    for r in ("acme-1", "acme-2", "zed-1")}
    assert statuses == {"acme-1": "STOPPED", "acme-2": "STOPPED", "zed-1": "RUNNING"}

    page.get_by_label("Bulk action").select_option("rerun")
    page.get_by_role("button", name="Count matching runs").click()
    expect(form.locator(".result")).to_have_text(
        "a bulk rerun needs the step to rerun from (--from STEP / from_step)")
