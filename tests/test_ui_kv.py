"""The KV store page in a real headless Chromium: keys listed, edited, added and deleted
through the API, as a workflow's next read then sees them."""

from __future__ import annotations

from playwright.sync_api import Page, expect

import durable
from tests.serverkit import Server
from tests.test_ui import browser, log_in, page, server

__all__ = ["browser", "page", "server"]  # the fixtures, shared with the main UI test


def test_keys_are_shown_edited_added_and_deleted_from_the_kv_page(page: Page,
                                                                   server: Server) -> None:
    client = durable.Client(server.db)
    try:
        client.kv.set("orders/count", 41)
        client.kv.set("orders/limits", {"max": 5})
        log_in(page, server)
        page.get_by_role("link", name="KV store").click()
        rows = page.locator("table.kv tbody tr")
        expect(rows).to_have_count(2)
        count = page.locator('tr[data-key="orders/count"]')
        expect(count.get_by_label("value of orders/count")).to_have_value("41")

        count.get_by_label("value of orders/count").fill("{oops")
        count.get_by_role("button", name="Save").click()
        expect(count.locator("form.kv-edit .result")).to_contain_text("Value is not valid JSON")
        assert client.kv.get("orders/count") == 41

        count.get_by_label("value of orders/count").fill("42")
        count.get_by_role("button", name="Save").click()
        expect(page.locator('tr[data-key="orders/count"] .version')).to_have_text("2")
        assert client.kv.get("orders/count") == 42

        add = page.locator("form.kv-add")
        add.get_by_label("Key").fill("orders/new one")
        add.get_by_label("Value (JSON)").fill('["a", 1]')
        add.get_by_role("button", name="Save").click()
        expect(rows).to_have_count(3)
        assert client.kv.get("orders/new one") == ["a", 1]

        page.once("dialog", lambda dialog: dialog.accept())
        page.locator('tr[data-key="orders/limits"]').get_by_role("button",
                                                                  name="Delete").click()
        expect(rows).to_have_count(2)
        assert client.kv.keys("orders/") == ["orders/count", "orders/new one"]

        page.get_by_label("Keys beginning with").fill("orders/n")
        page.get_by_role("button", name="Filter").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("orders/new one")
    finally:
        client.close()
