"""The run page of a large run in a real headless Chromium: a run of 10,000 operations (a gather
of 2,000 documents, each with a child run, one of them failed), made by the real engine once
for the module (about 10 s on SQLite), opens in under a second with its failed item on the first
screen; its tree opens a page at a time; its history is searched on the server; and a running
run's page takes only the events after the last one it shows.

`UPDATE_SCREENSHOTS=1` also writes docs/ui-run.png, the README's picture of a run page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from durable.client import Client
from durable.server import tree, views
from tests.apps import big_app
from tests.kit import ROOT, wait_until
from tests.serverkit import Server
from tests.test_ui import TOKEN, VIEWPORT, browser, log_in

__all__ = ["browser"]  # the Chromium fixture, shared with tests/test_ui.py

DOCUMENTS, FAILED = 2000, 1234
RUN = "docs-2000"


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("large")
    big_app.build(f"sqlite:///{tmp / 'server.db'}", RUN, DOCUMENTS, FAILED)
    with Server(tmp, TOKEN) as server:
        yield server


@pytest.fixture
def page(browser: Browser, large: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    p = context.new_page()
    p.set_default_timeout(20_000)
    log_in(p, large)
    yield p
    context.close()


FIRST_RENDER = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  return paint && {paint: paint.startTime, bytes: nav.decodedBodySize, scrolled: window.scrollY};
}"""


def test_the_page_of_a_10000_operation_run_renders_in_under_a_second_with_the_failure_on_screen(
        page: Page, large: Server, tmp_path: Path) -> None:
    with large.client() as api:
        assert len(api.get(f"/api/runs/{RUN}").json()["operations"]) == 10_000
    page.goto(f"{large.url}/runs/{RUN}")
    timing = page.wait_for_function(FIRST_RENDER).json_value()
    print(f"\nfirst render of the {RUN} page: {timing['paint']:.0f} ms, "
          f"{timing['bytes']} bytes of HTML")
    assert timing["paint"] < 1000, timing
    assert timing["bytes"] < 100_000, timing  # the 10,000 rows are not in it

    failed = page.locator("ul.surfaced li.op", has_text=f"run '{RUN}-doc-{FAILED}'").first
    expect(failed).to_be_in_viewport()
    expect(failed).to_contain_text("ValueError: doc-1234 is not a PDF")
    assert timing["scrolled"] == 0 and page.evaluate("window.scrollY") == 0
    gather = page.locator("li.op", has_text="gather 'documents'").first
    expect(gather.locator(".counts").first).to_contain_text(
        "2000: 1999 succeeded · 1 failed · 0 running · 0 pending")
    if os.environ.get("UPDATE_SCREENSHOTS"):
        expect(page.locator("svg.gantt")).to_be_visible()
        page.screenshot(path=str(tmp_path / "ui-run.png"))
        shutil.copy(tmp_path / "ui-run.png", ROOT / "docs" / "ui-run.png")


def test_expanding_a_gather_fetches_its_branches_a_page_at_a_time_failed_first(
        page: Page, large: Server) -> None:
    page.goto(f"{large.url}/runs/{RUN}")
    gather = page.locator("li.op", has_text="gather 'documents'").first
    kids = gather.locator(":scope > ul.kids")
    with page.expect_request(lambda r: "/ops?parent=" in r.url):
        gather.locator(":scope > .op-line button.expand").click()
    rows = kids.locator(":scope > li.op")
    expect(rows).to_have_count(100)
    expect(rows.first).to_contain_text(f"branch '{FAILED}'")
    expect(rows.first.locator(".badge").first).to_have_text("FAILED")
    expect(rows.nth(1)).to_contain_text("branch '0'")  # then the rest in order
    expect(gather.locator(":scope > ul.surfaced")).to_be_hidden()  # not listed twice

    kids.get_by_role("button", name="Show 100 more of 2000").click()
    expect(rows).to_have_count(200)
    expect(rows.nth(199)).to_contain_text("branch '198'")
    branch = rows.nth(1)
    branch.locator(":scope > .op-line button.expand").click()
    expect(branch.locator(":scope > ul.kids > li.op")).to_have_count(4)
    expect(branch.locator(":scope > ul.kids")).to_contain_text("child 'convert'")


def test_history_is_paged_and_searched_on_the_server(page: Page, large: Server) -> None:
    page.goto(f"{large.url}/runs/{RUN}")
    history = page.locator("#history")
    expect(history.locator("tbody tr")).to_have_count(100)
    last = int(history.locator("tbody tr").last.get_attribute("data-event") or 0)
    history.get_by_role("link", name="Next →").click()
    expect(history.get_by_role("link", name="← First")).to_be_visible()
    expect(history.locator("tbody tr")).to_have_count(100)
    assert int(history.locator("tbody tr").first.get_attribute("data-event") or 0) > last

    with page.expect_request(lambda r: "/history?q=" in r.url):
        page.get_by_label("Search history").fill(f"{RUN}-doc-{FAILED}")
        page.get_by_role("button", name="Search history").click()
    rows = page.locator("#history tbody tr")
    expect(rows.first).to_contain_text(f"child run {RUN}-doc-{FAILED}")
    texts = rows.all_inner_texts()
    assert 2 <= len(texts) < 10 and all(f"{RUN}-doc-{FAILED}" in t for t in texts), texts
    page.get_by_label("Search history").fill("chainedinvokefailed")
    page.get_by_role("button", name="Search history").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(f"child run {RUN}-doc-{FAILED} failed")


def test_a_running_run_page_takes_only_the_new_events(page: Page, large: Server) -> None:
    with large.client() as api:
        run_id = api.post("/api/runs", json={"workflow": "approval",
                                             "input": {"order_id": "L-1", "amount": 3}}
                          ).json()["run_id"]
        wait_until(lambda: api.get(f"/api/runs/{run_id}").json()["pending"],
                   f"run {run_id} to wait for its signal", interval=0.05)
    page.goto(f"{large.url}/runs/{run_id}")
    expect(page.locator("table.pending")).to_contain_text("signal 'approve'")
    expect(page.locator("svg.gantt")).to_contain_text("step 'reserve'")  # fetched once, lazily
    page.evaluate("window.sameDocument = true")
    asked: list[Request] = []
    page.on("request", lambda r: asked.append(r))
    with large.client() as api:
        api.post(f"/api/runs/{run_id}/signal", json={"name": "nudge", "payload": 1})
    expect(page.locator("#history tbody")).to_contain_text("signal 'nudge'")
    assert page.evaluate("window.sameDocument") is True  # applied in place, no reload

    def after(r: Request) -> int:
        return int(parse_qs(urlparse(r.url).query).get("after", ["0"])[0])

    def polls() -> list[Request]:
        # Beside the history's updates, the page asks only for the run's list of streams (the
        # streams panel looks for new ones while the run runs: a short list, no history).
        return [r for r in asked if urlparse(r.url).path != f"/api/runs/{run_id}/streams"]
    first = after(polls()[0])  # the poll that brought the event asked from the page's last
    page.wait_for_event("request", lambda r: after(r) > first)  # the next from the new one
    assert {urlparse(r.url).path for r in polls()} == {f"/ui/runs/{run_id}/updates"}
    assert [after(r) for r in polls()] == sorted(after(r) for r in polls())
    expect(page.locator("#history tbody tr", has_text="signal 'nudge'")).to_have_count(1)


def test_the_new_routes_ask_for_the_token(large: Server) -> None:
    with httpx.Client(base_url=large.url, timeout=30) as anonymous:
        for path in (f"/runs/{RUN}", f"/ui/runs/{RUN}/ops", f"/ui/runs/{RUN}/history",
                     f"/ui/runs/{RUN}/gantt", f"/ui/runs/{RUN}/updates"):
            answer = anonymous.get(path)
            assert answer.status_code in (303, 401), (path, answer.status_code)
            assert RUN not in answer.text


def test_tree_history_and_updates_tell_a_batch_alike_on_both_stores(any_db: str) -> None:
    big_app.build(any_db, "batch", 30, 7)
    client = Client(any_db)
    try:
        page = views.run_page(client, "batch")
        roots = page.roots.nodes
        assert [n.label for n in roots] == ["step 'list_documents'", "gather 'documents'"]
        gather = roots[1]
        assert gather.counts == tree.Counts(succeeded=29, failed=1)
        assert [n.label for n in gather.surfaced] == ["branch '7'"]
        assert [n.label for n in gather.surfaced[0].surfaced] == ["child 'convert'"]

        _, first = views.children(client, "batch", gather.op.id, 0)
        assert first.total == 30 and first.next_offset is None
        assert [n.label for n in first.nodes[:3]] == ["branch '7'", "branch '0'", "branch '1'"]
        _, second = views.children(client, "batch", gather.op.id, 29)
        assert [n.label for n in second.nodes] == ["branch '29'"]

        _, found = views.history_page(client, "batch", "batch-doc-7", 0)
        assert found.lines and all("batch-doc-7" in line.entry.text for line in found.lines)
        _, paged = views.history_page(client, "batch", "", 0)
        assert len(paged.lines) == views.HISTORY_PAGE and paged.next_after is not None
        _, rest = views.history_page(client, "batch", "", paged.next_after)
        assert rest.lines[0].event.id > paged.lines[-1].event.id

        last = client.history_watermark("batch")
        assert last == page.watermark == client.history("batch", 0, 100_000)[-1].id
        assert views.update(client, "batch", last) == views.Update(None, [], [], last, False)
        news = views.update(client, "batch", last - 1)  # the run's last event alone
        assert [line.event.id for line in news.lines] == [last] and news.watermark == last
        assert news.state is not None and news.state.run.status.value == "SUCCEEDED"
    finally:
        client.close()
