"""A run's streams on its page, live, in a real headless Chromium: entries appear as they are
written, across a wait for a signal, until the close; an abandoned attempt's values are
struck out when its marker arrives."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.kit import wait_until
from tests.serverkit import Server
from tests.test_ui import browser, log_in, page, server

__all__ = ["browser", "page", "server"]  # the fixtures, shared with the main UI test


def test_the_run_page_shows_a_stream_live_until_it_is_closed(page: Page,
                                                              server: Server) -> None:
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "chatter", "id": "chat-1", "input": 3})
        wait_until(lambda: api.get("/api/runs/chat-1").json()["pending"], "it waits")
    log_in(page, server)
    page.goto(f"{server.url}/runs/chat-1")
    entries = page.locator('.stream[data-stream="tokens"] .stream-entries li')
    expect(entries).to_have_text(['"w0"', '"w1"', '"w2"'])
    with server.client() as api:
        api.post("/api/runs/chat-1/signal", json={"name": "more", "payload": {"last": True}})
    expect(entries).to_have_text(['"w0"', '"w1"', '"w2"', '{"last":true}'])
    expect(page.locator('.stream[data-stream="tokens"] .stream-state')).to_have_text("closed")


def test_an_abandoned_attempts_values_are_struck_out_live(page: Page, server: Server,
                                                         tmp_path: Path) -> None:
    release = tmp_path / "release"
    with server.client() as api:
        api.post("/api/runs", json={"workflow": "stutter", "id": "stutter-1",
                                    "input": str(release)})
    log_in(page, server)
    page.goto(f"{server.url}/runs/stutter-1")
    entries = page.locator('.stream[data-stream="tokens"] .stream-entries li')
    expect(entries).to_have_text(['"lost-0"', '"lost-1"'])
    release.touch()
    expect(entries).to_have_count(6)
    expect(entries.nth(2)).to_contain_text("abandoned")
    expect(page.locator(".stream-entries li.abandoned")).to_have_text(['"lost-0"', '"lost-1"'])
    expect(entries.nth(5)).to_have_text('"kept-2"')
    with server.client() as api:
        assert api.get("/api/runs/stutter-1/result", params={"wait": 20}).json()["status"] \
            == "SUCCEEDED"
    page.reload()  # opened after the attempt died: the same, struck out as it was live
    expect(entries).to_have_count(6)
    expect(page.locator(".stream-entries li.abandoned")).to_have_text(['"lost-0"', '"lost-1"'])
