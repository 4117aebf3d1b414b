"""Step and child-run inputs recorded with their operations, and every operation's input and
output shown by `durable show`, the API and the UI: through the run's serializer, once, not when
opted out, cut when long with a way to fetch the whole. The crash side is in test_crash.py."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import durable
from durable import Context, step, workflow
from durable.cli.commands import cli
from durable.cli.main import main
from durable.server.app import create_app
from durable.store.schema import LATEST, MIGRATIONS, statements
from durable.views.values import VALUE_PREVIEW
from tests.apps import crash_app
from tests.crashkit import CrashLab
from tests.kit import wait_until


def raw_rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read on a connection of the test's own, outside Durable (`?` placeholders)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(sql, params).fetchall())
    import psycopg

    with psycopg.connect(url) as pg:
        return [tuple(row) for row in pg.execute(sql.replace("?", "%s"), params).fetchall()]


def raw_inputs(url: str, run_id: str) -> dict[str, str | None]:
    return dict(raw_rows(url, "SELECT name, input FROM operations WHERE run_id = ?", (run_id,)))


@step
def add(a: int, b: int = 0) -> int:
    return a + b


@workflow(name="io.child")
async def child(ctx: Context, who: str) -> str:
    return f"hi {who}"


@workflow(name="io.parent")
async def parent(ctx: Context, n: int) -> dict[str, Any]:
    one = await add(n, b=2)
    two = await ctx.step(add, one, 3, name="add-again")
    greeting = await ctx.invoke(child, "ann")
    return {"sum": two, "greeting": greeting}


def test_step_and_child_inputs_are_recorded_as_the_body_received_them(any_db: str) -> None:
    assert durable.run(parent, 1, id="p", db=any_db) == {"sum": 6, "greeting": "hi ann"}
    inputs = raw_inputs(any_db, "p")
    assert json.loads(inputs["add"] or "") == {"args": [1], "kwargs": {"b": 2}}
    assert json.loads(inputs["add-again"] or "") == [3, 3]
    assert json.loads(inputs["io.child"] or "") == "ann"
    with contextlib.closing(durable.Client(any_db)) as client:
        by_name = {op.name: op for op in client.operations("p", inputs=True)}
        assert by_name["add-again"].input == "[3,3]"
        assert all(op.input is None for op in client.operations("p"))  # not what replays load


class Sealed:
    """Stands in for an encrypting serializer: what it writes is not JSON, and it counts what it
    was handed, so the test sees that inputs pass through it."""

    def __init__(self) -> None:
        self.encoded: list[Any] = []

    def encode(self, value: Any) -> str:
        self.encoded.append(value)
        return "sealed:" + base64.b64encode(json.dumps(value).encode()).decode()

    def decode(self, data: str, type_hint: Any = Any) -> Any:
        return json.loads(base64.b64decode(data.removeprefix("sealed:")))


SEALED = Sealed()


@workflow(name="io.sealed", serializer=SEALED)
async def sealed(ctx: Context, secret: str) -> str:
    return str(await ctx.step(add, 40, 2, name="answer")) + secret


def test_inputs_go_through_the_runs_serializer_so_encryption_covers_them(
        db_url: str) -> None:
    assert durable.run(sealed, "!", id="s", db=db_url) == "42!"
    assert [40, 2] in SEALED.encoded
    stored = raw_inputs(db_url, "s")["answer"] or ""
    assert stored.startswith("sealed:") and "40" not in stored
    shown = CliRunner().invoke(cli, ["show", "s", "--db", db_url])
    assert shown.exit_code == 0, shown.output
    assert "not JSON: a custom serializer's" in shown.output and "Traceback" not in shown.output
    view = json.loads(CliRunner().invoke(cli, ["show", "s", "--json", "--db", db_url]).output)
    [answer] = [op for op in view["operations"] if op["name"] == "answer"]
    assert answer["input"] == stored and answer["input_info"]["is_json"] is False
    with TestClient(create_app(db_url, serve=False), base_url="http://127.0.0.1") as http:
        page = http.get(f"/ui/runs/s/ops/{answer['id']}/values")
    assert page.status_code == 200 and "not JSON: a custom serializer" in page.text


@workflow(name="io.quiet", record_inputs=False)
async def quiet(ctx: Context, card: str) -> str:
    masked = await ctx.step(mask, card)
    shown = await ctx.step(add, 1, 2, record_input=True, name="add-shown")
    await ctx.invoke(child, card)
    return f"{masked}:{shown}"


@step(record_input=False)
def mask(card: str) -> str:
    return "*" * len(card)


@workflow(name="io.loud")
async def loud(ctx: Context, card: str) -> str:
    return str(await mask(card))


def test_opted_out_inputs_are_not_stored_at_all(any_db: str) -> None:
    assert durable.run(quiet, "4111", id="q", db=any_db) == "****:3"
    assert durable.run(loud, "4242", id="l", db=any_db) == "****"
    inputs = raw_inputs(any_db, "q")
    assert inputs["mask"] is None and inputs["io.child"] is None
    assert json.loads(inputs["add-shown"] or "") == [1, 2]  # the step's own word wins
    assert raw_inputs(any_db, "l") == {"mask": None}
    everything = raw_rows(any_db, "SELECT name, error, input FROM operations"  # not outputs
                                  " WHERE run_id IN ('q', 'l')")
    assert not any("4111" in str(cell) or "4242" in str(cell)
                   for row in everything for cell in row)


@step
def echo(text: str) -> str:
    return text


@workflow(name="io.big")
async def big(ctx: Context, size: int) -> int:
    text = await ctx.step(echo, "x" * size, name="echo")
    return len(text)


@pytest.fixture
def api(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(db_url, workflows=[big], serve=False),
                    base_url="http://127.0.0.1") as http:
        yield http


def test_long_values_are_cut_in_views_and_fetched_whole_by_api_and_cli(
        db_url: str, api: TestClient) -> None:
    size = 3 * VALUE_PREVIEW
    assert durable.run(big, size, id="b", db=db_url) == size
    detail = api.get("/api/runs/b").json()
    [op] = [op for op in detail["operations"] if op["name"] == "echo"]
    whole = json.dumps(["x" * size], separators=(",", ":"))
    assert op["input_info"] == {"chars": len(whole), "truncated": True, "is_json": None,
                                "url": f"/api/runs/b/operations/{op['id']}/input"}
    assert op["input"] == whole[:VALUE_PREVIEW]
    assert op["result_info"]["truncated"] and len(op["result"]) == VALUE_PREVIEW
    fetched = api.get(op["input_info"]["url"])
    assert fetched.status_code == 200 and fetched.text == whole
    assert fetched.headers["content-type"].startswith("application/json")
    assert api.get(op["result_info"]["url"]).json() == "x" * size

    printed = CliRunner().invoke(cli, ["show", "b", "--input", op["id"][:12], "--db", db_url])
    assert printed.exit_code == 0 and printed.output == whole + "\n"
    human = CliRunner().invoke(cli, ["show", "b", "--db", db_url])
    assert f"durable show b --input {op['id'][:12]}" in human.output

    assert f'id="io-{op["id"]}"' in api.get("/runs/b").text  # opened, it fetches:
    values = api.get(f"/ui/runs/b/ops/{op['id']}/values").text
    assert f'href="/api/runs/b/operations/{op["id"]}/input"' in values
    assert "whole value (" in values


def test_asking_for_a_value_that_is_not_there_is_a_clear_error(
        db_url: str, api: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    durable.run(big, 3, id="b", db=db_url)
    missing = api.get("/api/runs/b/operations/nope/input")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "operation_not_found"
    assert api.get("/ui/runs/b/ops/nope/values").status_code == 404
    assert api.get("/api/runs/b/operations/x/sideways").status_code == 422
    assert main(["show", "b", "--output", "nope", "--db", db_url]) == 2
    assert main(["show", "b", "--input", "0", "--output", "0", "--db", db_url]) == 2
    printed = capsys.readouterr().err
    assert "has no operation 'nope'" in printed and "give one of --input and --output" in printed
    assert "Traceback" not in printed


def test_small_values_are_shown_whole_per_operation_in_the_ui_and_json(
        db_url: str, api: TestClient) -> None:
    durable.run(big, 3, id="b", db=db_url)
    [op] = [op for op in api.get("/api/runs/b").json()["operations"] if op["name"] == "echo"]
    assert op["input"] == ["xxx"] and op["result"] == "xxx"
    assert op["input_info"]["truncated"] is False and op["input_info"]["is_json"] is True
    assert f'id="io-{op["id"]}"' in api.get("/runs/b").text
    values = api.get(f"/ui/runs/b/ops/{op['id']}/values").text
    assert "&#34;xxx&#34;" in values and "whole value" not in values


def test_a_database_of_the_previous_schema_migrates_and_keeps_its_operations(
        any_db: str) -> None:
    serial = ("INTEGER PRIMARY KEY" if any_db.startswith("sqlite")
              else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
    [inputs] = [v for v, sql in MIGRATIONS if "operations ADD COLUMN input" in sql]
    before = [(v, sql) for v, sql in MIGRATIONS if v < inputs]
    ddl = [s for _, sql in before for s in statements(sql, serial)]
    ddl += ["CREATE TABLE durable_migrations (version INTEGER PRIMARY KEY,"
            " applied_at DOUBLE PRECISION)",
            *(f"INSERT INTO durable_migrations VALUES ({v}, 0)" for v, _ in before),
            "INSERT INTO runs (run_id, workflow, status, created_at, updated_at)"
            " VALUES ('old', 'w', 'SUCCEEDED', 0, 0)",
            "INSERT INTO operations (run_id, op_id, type, status, name, result)"
            " VALUES ('old', 'o1', 'STEP', 'SUCCEEDED', 'a', '1')"]
    _raw_script(any_db, ddl)
    with contextlib.closing(durable.Client(any_db)) as client:
        [op] = client.operations("old", inputs=True)
    assert (op.name, op.result, op.input) == ("a", "1", None)
    assert raw_rows(any_db, "SELECT MAX(version) FROM durable_migrations") == [(LATEST,)]


def _raw_script(url: str, script: list[str]) -> None:
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn, conn:
            for sql in script:
                conn.execute(sql)
        return
    import psycopg

    with psycopg.connect(url) as pg:
        for sql in script:
            pg.execute(sql)


def test_an_input_the_serializer_cannot_encode_is_not_recorded_and_the_step_runs(
        db_url: str) -> None:
    assert durable.run(uses_a_callable, id="c", db=db_url) == 5
    assert raw_inputs(db_url, "c") == {"call": None}


def _five() -> int:
    return 5


@workflow(name="io.callable")
async def uses_a_callable(ctx: Context) -> int:
    return int(await ctx.step(_call, _five, name="call"))


def _call(fn: Any) -> Any:
    return fn()



@pytest.mark.crash
def test_a_step_input_is_recorded_once_across_a_worker_killed_mid_step(
        tmp_path: Path, any_db: str) -> None:
    """`b` (at least once) is killed before its START was sent, so its re-run records the
    input; `charge` (at most once) had its START, with the input, checkpointed before its body:
    the killed attempt's input stays, and the next attempts neither add nor lose one."""
    with CrashLab(tmp_path, any_db) as lab:
        chain = lab.start(crash_app.chain, 1, id="chain")
        charge = lab.start(crash_app.charge, 2, id="charge")
        w1 = lab.worker(lease=1.0)
        lab.wait_effect("b")
        lab.wait_effect("charge")
        assert raw_inputs(any_db, "charge")["charge"] == '["charge","receipt-1"]'
        w1.kill()
        lab.open_gate("b")
        lab.open_gate("charge")
        lab.worker(lease=1.0)
        lab.finish(chain)
        lab.finish(charge)
        assert lab.effects()["b"] == 2 and lab.effects()["charge"] == 2
        assert raw_inputs(any_db, "chain") == {"a": '["a",2]', "b": '["b",4]', "c": '["c",7]'}
        assert raw_inputs(any_db, "charge") == {"prepare": '["prepare",null]',
                                                "charge": '["charge","receipt-1"]'}
        assert raw_rows(any_db, "SELECT COUNT(*) FROM operations WHERE run_id = 'charge'"
                                " AND name = 'charge'") == [(1,)]
        assert lab.operations(charge)["charge"].attempt == 2


def test_an_operations_input_is_fetched_when_opened_and_stays_open_across_live_updates(
        tmp_path: Path) -> None:
    """In Chromium: the run page carries no operation's input or output (a large run's page
    stays small); opening one fetches it, and the live updates of a running run leave it
    open (the values hang outside the row an update replaces)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.serverkit import Server
    from tests.test_ui import ARGS, CHROMIUM, TOKEN, VIEWPORT, log_in

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing")
    with Server(tmp_path, TOKEN) as server, sync_playwright() as p:
        with server.client() as http:
            http.post("/api/runs", json={"workflow": "approval", "id": "o-1",
                                         "input": {"order_id": "A-17", "amount": 40}})
            wait_until(lambda: http.get("/api/runs/o-1").json()["pending"],
                       "run o-1 to wait on something", interval=0.05)
            tree = http.get("/runs/o-1").text.split('class="tree"')[1].split("</section>")[0]
            assert "op-io" in tree and "A-17" not in tree
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
            page.set_default_timeout(20_000)
            log_in(page, server)
            page.goto(f"{server.url}/runs/o-1")
            row = page.locator("li.op", has_text="reserve").first
            row.locator("details.op-io > summary").click()
            expect(row.locator("details.op-io")).to_contain_text('"A-17"')
            with server.client() as http:  # an event the page's next update brings
                http.post("/api/runs/o-1/signal", json={"name": "note", "payload": 1})
            page.wait_for_function("() => document.querySelector('#history')"
                                   " && document.querySelector('#history').textContent"
                                   ".includes('note')")
            expect(row.locator("details.op-io")).to_have_attribute("open", "")
        finally:
            browser.close()
