"""The web UI in a real headless Chromium (Debian's `chromium`, driven by Playwright): log in,
start a workflow, see it in the list, open it, see its timeline, send the signal it waits for
with the button, and watch it complete.

`UPDATE_SCREENSHOTS=1` also writes docs/ui-run.png, a README picture (docs/ui-runs.png is
tests/test_ui_runs.py's).
Without /usr/bin/chromium the test fails in CI (CI=true; `make test` installs it) and skips
elsewhere.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from durable.engine import machine
from durable.model import OperationAction, OperationType, OperationUpdate
from durable.store import open_store
from tests.apps.serverless_kit import start_function_host
from tests.kit import ROOT, free_port, stopping, wait_until
from tests.serverkit import Server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "ui-token-for-the-browser"
VIEWPORT = {"width": 1366, "height": 850}  # a laptop screen


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        what = f"{CHROMIUM} is missing (apt-get install -y chromium; `make test` does it)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{what}. CI=true: the UI tests must run, not skip")
        pytest.skip(what)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path, TOKEN) as s:
        yield s


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    p = context.new_page()
    p.set_default_timeout(20_000)
    yield p
    context.close()


def log_in(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    expect(page).to_have_url(f"{server.url}/login?next=%2F")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def test_start_watch_signal_and_see_it_complete(page: Page, server: Server,
                                               tmp_path: Path) -> None:
    log_in(page, server)
    page.locator("details.start").evaluate("details => { details.open = true; }")
    page.get_by_label("Workflow", exact=True).select_option("approval")
    page.get_by_label("Input (JSON)").fill('{"order_id": "A-17", "amount": 40}')
    page.get_by_label("Run id (optional)").fill("order-a17")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#start-form .result")).to_contain_text("Started: order-a17")

    row = page.locator("table.runs tr", has_text="order-a17")  # the list refreshes by itself
    expect(row).to_contain_text("approval")
    expect(row.locator(".badge")).to_have_text("RUNNING")
    row.get_by_role("link", name="order-a17").click()

    expect(page.locator(".run-head h1")).to_contain_text("order-a17")
    chart = page.locator("svg.gantt")
    expect(chart).to_contain_text("step 'reserve'")
    expect(chart).to_contain_text("invocations (compute)")
    waiting = page.locator("table.pending")
    expect(waiting).to_contain_text("signal 'approve'")
    expect(page.locator("table.kv")).to_contain_text("awaiting approval")

    waiting.get_by_role("button", name="Signal…").click()
    expect(page.locator("#signal-name")).to_have_value("approve")
    page.get_by_label("Payload (JSON)").first.fill('"ui-tester"')
    page.get_by_role("button", name="Send signal").click()

    expect(page.locator(".run-head .badge")).to_have_text("SUCCEEDED")  # it reloads on the end
    expect(page.locator(".io")).to_contain_text('"approved_by": "ui-tester"')
    expect(chart).to_contain_text("step 'charge'")
    expect(page.locator("table.history")).to_contain_text("succeeded")

    page.goto(server.url + "/?status=SUCCEEDED")
    expect(page.locator("table.runs")).to_contain_text("order-a17")
    page.goto(server.url + "/?status=FAILED")
    expect(page.locator("table.runs")).not_to_contain_text("order-a17")
    page.goto(server.url + "/?q=a17")
    expect(page.locator("table.runs")).to_contain_text("order-a17")
    screenshots(page, server, tmp_path)


def screenshots(page: Page, server: Server, tmp_path: Path) -> None:
    """A richer run for the pictures: retries, a sleep, branches, a child, a callback."""
    with server.client() as api:
        for order in ("B-2", "C-3"):
            api.post("/api/runs", json={"workflow": "approval",
                                        "input": {"order_id": order, "amount": 5}})
        api.post("/hooks/echo", params={"wait": "true"}, json={"event": "push"})
        run_id = api.post("/api/runs", json={"workflow": "pipeline", "input": "warehouse",
                                             "id": "pipeline-7"}).json()["run_id"]
        wait_until(lambda: api.get(f"/api/runs/{run_id}").json()["pending"],
                   f"run {run_id} to wait on something", interval=0.05)
        stopped = api.post("/api/runs", json={"workflow": "approval",
                                              "input": {"order_id": "D-4", "amount": 1}})
        stopped_id = stopped.json()["run_id"]
        wait_until(lambda: api.get(f"/api/runs/{stopped_id}").json()["pending"],
                   f"run {stopped_id} to wait on something", interval=0.05)
        api.post(f"/api/runs/{stopped_id}/cancel")
        api.get(f"/api/runs/{stopped_id}/result", params={"wait": 20})
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.locator("table.pending")).to_contain_text("callback 'review'")


@pytest.fixture
def other_port_page() -> Iterator[tuple[str, dict[str, str]]]:
    """A site on another port of the same host (same site, other origin): serves whatever HTML
    is put under a path in the dict it yields, at the URL it yields."""
    pages: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}", pages
    site.shutdown()
    site.server_close()


def test_a_page_on_another_port_cannot_cancel_a_run_with_the_login_cookie(
        page: Page, server: Server, other_port_page: tuple[str, dict[str, str]]) -> None:
    log_in(page, server)
    with server.client() as api:
        run_id = api.post("/api/runs", json={"workflow": "approval",
                                             "input": {"order_id": "X-1", "amount": 1}}
                          ).json()["run_id"]
    site, pages = other_port_page
    pages["/attack"] = (f'<form method="post" action="{server.url}/api/runs/{run_id}/cancel">'
                        "</form><script>document.forms[0].submit()</script>")
    page.goto(site + "/attack")
    expect(page.locator("body")).to_contain_text("cross_site")  # the browser sent the cookie
    with server.client() as api:
        assert api.get(f"/api/runs/{run_id}").json()["run"]["cancel_requested"] is False


def test_logging_out_ends_the_session_for_good(page: Page, server: Server) -> None:
    log_in(page, server)
    kept = page.context.cookies()
    assert [c["name"] for c in kept] == [f"durable_session_{server.port}"]
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{server.url}/login")
    page.context.add_cookies(kept)  # type: ignore[arg-type]  # the cookie as it was before logging out
    page.goto(server.url + "/")
    expect(page).to_have_url(f"{server.url}/login?next=%2F")


def lost_worker_run(db: str, run_id: str) -> None:
    """Through the engine, as two workers would: w1 claims the run, starts step 'slow', renews
    its lease 2 s into it and is never heard from again; w2 takes the run over when the lease
    runs out, and runs 'slow' again to success."""
    t0 = time.time() - 60
    start = OperationUpdate("s1", OperationType.STEP, OperationAction.START, name="slow",
                            started_at=t0 + 1)
    store = open_store(db)
    try:
        store.write_sync(lambda tx: machine.start_run(tx, run_id, "lost.demo", None, t0))
        (first,) = store.write_sync(lambda tx: machine.claim(tx, "w1", t0, 1, 5.0,
                                                             ["lost.demo"]))
        store.write_sync(lambda tx: machine.checkpoint(tx, run_id, first.token, [start], t0 + 1))
        store.write_sync(lambda tx: tx.extend_leases("w1", [run_id], t0 + 8))
        (second,) = store.write_sync(lambda tx: machine.claim(tx, "w2", t0 + 10, 1, 5.0,
                                                              ["lost.demo"]))
        again = replace(start, started_at=t0 + 11)
        done = OperationUpdate("s1", OperationType.STEP, OperationAction.SUCCEED, name="slow",
                               payload='"ok"', started_at=t0 + 11)
        store.write_sync(lambda tx: machine.checkpoint(tx, run_id, second.token, [again, done],
                                                       t0 + 12))
    finally:
        store.close()


def test_the_run_page_shows_the_lost_worker_and_the_attempt_lost_with_it(
        browser: Browser, tmp_path: Path) -> None:
    lost_worker_run(f"sqlite:///{tmp_path / 'server.db'}", "crashed-7")
    with Server(tmp_path, TOKEN) as server:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            log_in(page, server)
            page.goto(f"{server.url}/runs/crashed-7")
            history = page.locator("table.history")
            lost = history.locator("tr", has_text="worker w1 lost")
            expect(lost).to_be_visible()
            expect(lost).to_contain_text("in flight: step 'slow' attempt 1")
            expect(lost).to_contain_text("of compute lost")
            expect(history.locator("tr", has_text="attempt 1 lost with its worker")
                   ).to_be_visible()
            expect(history).to_contain_text("succeeded (attempt 2")
        finally:
            context.close()


OBSERVE_APP = "tests/apps/observe_app.py"


@pytest.fixture
def answering_500() -> Iterator[str]:
    """A function host that is up but broken: every invocation gets an HTTP 500."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"database connection pool exhausted"
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{host.server_address[1]}/"
    host.shutdown()
    host.server_close()


def observed(server: Server, host: str, broken: str, down: str) -> None:
    """Through the API: three orders on a queue of one slot, a function that works (on a real
    `durable.serve` host), two that cannot be invoked (one answers 500, one is not listening)
    and one never invoked; returns once the server shows each, and the schedule has ticked."""
    with server.client() as api:
        for name, url in (("chain", f"{host}/chain"), ("billing", broken), ("inventory", down),
                          ("ledger", "http://ledger.internal:9000/")):
            assert api.put(f"/api/functions/{name}", json={"url": url}).status_code == 200
        for n in (1, 2, 3):
            api.post("/api/runs", json={"workflow": "orders.fulfil", "input": f"A-{n}",
                                        "id": f"order-{n}"}).raise_for_status()
        for name in ("billing", "inventory"):
            api.post("/api/runs", json={"workflow": name, "id": f"{name}-1"}).raise_for_status()
        api.post("/api/runs", json={"workflow": "chain", "input": 3, "id": "chain-1"}
                 ).raise_for_status()
        ended = api.get("/api/runs/chain-1/result", params={"wait": 20}).json()
        assert ended.get("result") == 6, ended

        def functions_failed() -> bool:
            health = {f["name"]: f["health"] for f in api.get("/api/functions").json()}
            return all(health[n]["failures"] >= 1 and health[n]["last_ok"] is False
                       for n in ("billing", "inventory"))
        wait_until(lambda: [(q["waiting"], q["running"]) for q in api.get("/api/queues").json()]
                   == [(2, 1)], "two orders waiting behind one", interval=0.05)
        wait_until(lambda: {s["workflow"]: s for s in api.get("/api/schedules").json()}
                   ["reports.pulse"]["last_run_status"], "the schedule to tick", interval=0.1)
        wait_until(functions_failed, "both functions to fail an invocation", interval=0.05)


def picture(page: Page, path: Path) -> None:
    """The page down to the end of its table: the README's pictures, without the empty rest."""
    box = page.locator("main table").bounding_box()
    assert box is not None
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT["width"],
                                          "height": box["y"] + box["height"] + 24})


def test_queues_schedules_and_functions_pages_show_what_the_store_holds(
        browser: Browser, tmp_path: Path, answering_500: str) -> None:
    down = f"http://127.0.0.1:{free_port()}/"
    host = start_function_host(tmp_path, "tests.apps.push_wire_functions:app", backend=down,
                               DURABLE_TOKEN=TOKEN)  # it sends it with its checkpoints
    with stopping(host), Server(tmp_path, TOKEN, "--worker", OBSERVE_APP) as server:
        observed(server, host.url, answering_500, down)
        with server.client() as api:
            paths = api.get("/openapi.json").json()["paths"]
            assert {"/api/queues", "/api/schedules", "/api/functions"} <= set(paths)
            before = {f["name"]: f["health"]["failures"] for f in api.get("/api/functions").json()}
        for path in ("/api/queues", "/api/schedules", "/api/functions", "/queues"):
            assert httpx.get(server.url + path).status_code in (401, 303), path  # no token
    with Server(tmp_path, TOKEN, "--worker", OBSERVE_APP) as server:  # a restart forgets none
        with server.client() as api:
            after = {f["name"]: f["health"] for f in api.get("/api/functions").json()}
        assert all(after[n]["failures"] >= before[n] >= 1 for n in ("billing", "inventory"))
        assert after["ledger"]["invocations"] == 0
        assert (after["chain"]["last_ok"], after["chain"]["failures"]) == (True, 0)
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            log_in(page, server)

            page.get_by_role("link", name="Queues").click()
            orders = page.locator("table.queues tr[data-queue=orders]")
            expect(orders.locator(".waiting")).to_have_text("2")
            expect(orders.locator(".running")).to_have_text("1")
            expect(orders).to_contain_text("120/minute")
            expect(orders.locator(".rate")).to_contain_text("(1 in 10m00s)")
            expect(orders.locator(".oldest")).to_contain_text("since")
            picture(page, tmp_path / "ui-queues.png")

            page.get_by_role("link", name="Schedules").click()
            pulse = page.locator("table.schedules tr[data-workflow='reports.pulse']")
            expect(pulse).to_contain_text("* * * * * */2")
            expect(pulse.locator(".last a")).to_contain_text("reports.pulse")
            expect(pulse.locator(".last .badge")).to_be_visible()
            nightly = page.locator("table.schedules tr[data-workflow='reports.nightly']")
            expect(nightly).to_contain_text("Europe/Paris")
            expect(nightly.locator(".last")).to_have_text("never fired")
            pulse.locator(".last a").click()
            expect(page.locator(".run-head h1")).to_contain_text("reports.pulse")

            page.get_by_role("link", name="Functions").click()
            chain = page.locator("table.functions tr[data-function=chain]")
            expect(chain.locator(".health .badge")).to_have_text("OK")
            expect(chain.locator(".health")).to_contain_text("chain-1")
            expect(chain.locator(".failures")).to_have_text("0")
            expect(chain.locator(".error")).to_have_text("none")
            billing = page.locator("table.functions tr[data-function=billing]")
            expect(billing.locator(".health .badge")).to_have_text("FAILING")
            expect(billing.locator(".error")).to_contain_text("Function.Error")
            expect(billing.locator(".error")).to_contain_text("HTTP 500")
            expect(billing.locator(".error")).to_contain_text("pool exhausted")
            inventory = page.locator("table.functions tr[data-function=inventory]")
            expect(inventory.locator(".error")).to_contain_text("Function.Unreachable")
            expect(inventory.locator(".failures")).not_to_have_text("0")
            ledger = page.locator("table.functions tr[data-function=ledger]")
            expect(ledger.locator(".health")).to_contain_text("not invoked")
            expect(ledger.locator(".invocations")).to_have_text("0")
            picture(page, tmp_path / "ui-functions.png")
        finally:
            context.close()
    if os.environ.get("UPDATE_SCREENSHOTS"):
        for name in ("ui-queues.png", "ui-functions.png"):
            shutil.copy(tmp_path / name, ROOT / "docs" / name)


def test_the_schedules_page_pauses_resumes_runs_now_backfills_and_deletes(
        browser: Browser, tmp_path: Path) -> None:
    with Server(tmp_path, TOKEN, "--worker", OBSERVE_APP) as server, server.client() as api:
        def nightly() -> dict[str, object]:
            listed: list[dict[str, object]] = api.get("/api/schedules").json()
            return next(s for s in listed if s["workflow"] == "reports.nightly")
        wait_until(lambda: nightly()["registered"], "the worker to serve the schedule",
                   interval=0.05)
        api.post("/api/schedules", json={"workflow": "orders.fulfil", "cron": "0 3 1 1 *"}
                 ).raise_for_status()  # made through the API: it can be deleted
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            log_in(page, server)
            page.get_by_role("link", name="Schedules").click()
            row = page.locator("table.schedules tr[data-workflow='reports.nightly']")
            expect(row.locator(".badge.st-PAUSED")).to_have_count(0)

            row.get_by_role("button", name="Pause").click()
            expect(row.locator(".badge.st-PAUSED")).to_have_text("PAUSED")
            assert nightly()["paused"] is True
            row.get_by_role("button", name="Resume").click()
            expect(row.get_by_role("button", name="Pause")).to_be_visible()
            expect(row.locator(".badge.st-PAUSED")).to_have_count(0)
            assert nightly()["paused"] is False

            row.get_by_role("button", name="Run now").click()
            started = row.locator(".schedule-actions .result.ok a")
            expect(started).to_contain_text("reports.nightly@")
            run_id = started.inner_text()
            run = api.get(f"/api/runs/{quote(run_id, safe='')}")
            assert run.json()["run"]["workflow"] == "reports.nightly", run.text
            # A run by hand leaves the schedule's own ticks as they were (engine.schedules).
            expect(row.locator(".last")).to_have_text("never fired")

            row.get_by_text("Backfill").click()
            backfill = row.locator("details.backfill form")
            # Two nightly ticks at 03:00 Paris time fall in this range.
            backfill.get_by_label("From").fill("2026-01-01T00:00+01:00")
            backfill.get_by_label("To").fill("2026-01-02T12:00+01:00")
            backfill.get_by_role("button", name="Start the missing runs").click()
            expect(backfill.locator(".result.ok")).to_have_text(
                "2 run(s) started, 0 tick(s) had one already")
            picture(page, tmp_path / "ui-schedules.png")
            backfill.get_by_role("button", name="Start the missing runs").click()
            expect(backfill.locator(".result.ok")).to_have_text(
                "0 run(s) started, 2 tick(s) had one already")
            backfill.get_by_label("To").fill("next week")
            backfill.get_by_role("button", name="Start the missing runs").click()
            expect(backfill.locator(".result.err")).to_contain_text(
                "body.to: Input should be a valid datetime")
            runs = api.get("/api/runs", params={"workflow": "reports.nightly"}).json()["runs"]
            assert len(runs) == 3, runs  # the one run by hand and the two backfilled

            expect(row.get_by_role("button", name="Delete")).to_have_count(0)  # in its code
            started.click()
            expect(page.locator(".run-head h1")).to_contain_text("reports.nightly")
            page.go_back()
            made = page.locator("table.schedules tr[data-workflow='orders.fulfil']")
            expect(made).to_contain_text("(created through the API)")
            page.once("dialog", lambda dialog: dialog.accept())
            made.get_by_role("button", name="Delete").click()
            expect(made).to_have_count(0)
            assert "orders.fulfil" not in {s["workflow"] for s in
                                           api.get("/api/schedules").json()}
        finally:
            context.close()
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(tmp_path / "ui-schedules.png", ROOT / "docs" / "ui-schedules.png")
