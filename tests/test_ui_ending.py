"""Terminate and delete from the run page, in a real headless Chromium: a run holding a step
is terminated with a reason (the run ends STOPPED, its child runs with it), then deleted,
which leaves the runs list without it.

`UPDATE_SCREENSHOTS=1` also writes docs/ui-terminate.png (the run page's Terminate panel) for
the README."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.kit import ROOT, wait_until
from tests.serverkit import Server
from tests.test_ui import TOKEN, VIEWPORT, browser, log_in

__all__ = ["browser"]  # the fixture, shared with tests/test_ui.py

ENDING_APP = "tests/apps/ending_app.py"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path, TOKEN, "--worker", ENDING_APP,
                env={"ENDING_DIR": str(tmp_path)}) as s:
        yield s
        for held in tmp_path.glob("*.started"):  # let held steps end, so the server drains
            held.with_suffix(".release").touch()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    p = context.new_page()
    p.set_default_timeout(20_000)
    confirmations: list[str] = []

    def accept(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        dialog.accept()
    p.on("dialog", accept)
    yield p
    context.close()


def test_terminate_then_delete_from_the_run_page(page: Page, server: Server,
                                                 tmp_path: Path) -> None:
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "family", "input": "ui", "id": "order-ui"})
        wait_until(lambda: (tmp_path / "ui-awaited.started").exists(), "the child to hold")
    log_in(page, server)
    page.goto(f"{server.url}/runs/order-ui")
    panel = page.locator("form[data-kind=terminate]")
    expect(panel).to_be_visible()
    expect(page.locator("form[data-kind=delete]")).to_have_count(0)  # still running
    panel.get_by_label("Reason").fill("wrong warehouse")
    panel.get_by_label("Running child runs").select_option("terminate")
    page.screenshot(path=str(tmp_path / "ui-terminate.png"), full_page=True)
    panel.get_by_role("button", name="Terminate run").click()

    delete = page.locator("form[data-kind=delete]")
    expect(delete).to_be_visible()  # the page reloaded: the run has ended
    expect(page.locator("#live")).to_contain_text("STOPPED")
    expect(page.locator("#live")).to_contain_text("wrong warehouse")
    with server.client() as api:
        assert api.get("/api/runs/ui-awaited/result").json()["status"] == "STOPPED"
    delete.get_by_role("button", name="Delete run").click()
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator("table.runs")).not_to_contain_text("order-ui")
    with server.client() as api:
        assert api.get("/api/runs/order-ui").status_code == 404
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(tmp_path / "ui-terminate.png", ROOT / "docs" / "ui-terminate.png")
