"""The events page in a real headless Chromium: publish from the form, see the run the
trigger started, redispatch and see a second run, against `durable server` serving
tests/apps/events_app.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import durable
from tests.kit import wait_until
from tests.serverkit import Server
from tests.test_ui import TOKEN, browser, log_in, page

__all__ = ["browser", "page"]  # the fixtures, shared with tests/test_ui.py

EVENTS_APP = "tests/apps/events_app.py"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path, TOKEN, app=EVENTS_APP, env={"EVENTS_DIR": str(tmp_path)}) as s:
        yield s


def test_an_event_published_from_the_page_shows_its_run_and_a_redispatch_adds_one(
        page: Page, server: Server) -> None:
    client = durable.Client(server.db)
    try:
        wait_until(lambda: client.store.read(lambda tx: tx.trigger_since("big_order")),
                   "the server's worker to register the trigger")
    finally:
        client.close()
    log_in(page, server)
    page.get_by_role("link", name="Events").click()
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    form = page.locator("form.publish")
    form.get_by_label("Topic").fill("orders")
    form.get_by_label("Id").fill("ui-1")
    form.get_by_label("Data").fill('{"amount": 150}')
    form.get_by_role("button", name="Publish").click()
    expect(form.locator(".result")).to_have_text("Published #1")

    row = page.locator("tr[data-seq='1']")
    runs = row.locator(".deliveries a")

    def shown(count: int) -> bool:
        page.reload()
        return runs.count() == count
    wait_until(lambda: shown(1), "the run the trigger started to show")
    expect(row.locator("td.id")).to_have_text("ui-1")
    first = runs.first.inner_text()
    row.get_by_role("button", name="Redispatch").click()
    wait_until(lambda: shown(2), "the redispatch's run to show")
    assert runs.nth(1).inner_text() != first
    expect(row.locator(".deliveries")).to_contain_text("(dispatch 2)")
    runs.nth(1).click()
    expect(page.locator("body")).to_contain_text("big_order")
