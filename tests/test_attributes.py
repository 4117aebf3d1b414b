"""Searchable attributes and the runs listing: set at start and from workflow code (recorded
once across a SIGKILLed worker), found with the filter language on both databases, listed by
status, time, parent and roots with cursor paging, through the Client, `durable ls` and
`GET /api/runs`; malformed filters refused with their position."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

import durable
from durable import Context, workflow
from durable.errors import UsageError
from durable.model.attributes import FilterError, parse_filter
from durable.model.listing import run_filter
from durable.store import attributes as attribute_store
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import DURABLE, ROOT
from tests.serverkit import Server

DUE = datetime(2026, 12, 1, tzinfo=UTC)


def found(client: durable.Client, where: str = "", **kw: object) -> list[str]:
    chosen = run_filter(where=where, now=client.clock(), **kw)  # type: ignore[arg-type]
    return [r.run_id for r in client.runs(chosen, limit=1000).runs]


@workflow(name="attrs.tagger")
async def tagger(ctx: Context, amount: float) -> float:
    ctx.set_attributes({"amount": amount, "stage": "set"})
    await ctx.sleep(0.01)  # a second invocation replays the set_attributes above
    ctx.set_attributes({"stage": "done"})
    return amount


@workflow(name="attrs.parent")
async def parent(ctx: Context, n: int) -> list[float]:
    return [await ctx.invoke(tagger, float(i), id=f"{ctx.run_id}-child-{i}") for i in range(n)]


def test_runs_are_found_by_attributes_from_the_start_and_from_workflow_code(
        any_client: durable.Client) -> None:
    client = any_client
    amounts = {"acme-1": 5.0, "acme-2": 50.0, "other": 7.5}
    client.start(tagger, 5.0, id="acme-1", attributes={"customer": "acme", "due": DUE})
    client.start(tagger, 50.0, id="acme-2", attributes={"customer": "acme", "region": "eu"})
    client.start(tagger, 7.5, id="other", attributes={"customer": "other"})
    for run_id, amount in amounts.items():
        durable.run(tagger, amount, id=run_id, db=client.store)  # serves the run started above

    assert found(client, 'customer = "acme"') == ["acme-2", "acme-1"]  # newest first
    assert found(client, "amount >= 7.5") == ["other", "acme-2"]
    assert found(client, 'customer = "acme" AND amount < 10') == ["acme-1"]
    assert found(client, "due < 2026-12-01T00:00:01Z AND due >= 2026-11-30T23:00:00+00:00"
                 ) == ["acme-1"]
    assert found(client, 'stage = "done"') == ["other", "acme-2", "acme-1"]
    assert found(client, 'stage = "set"') == []  # the second set replaced the value
    assert found(client, "amount = 50") == ["acme-2"]
    assert found(client, 'amount = "50"') == []  # text is not the number
    page = client.runs(run_filter(where='region = "eu"', now=0))
    assert {a.key: a.value for a in page.attributes["acme-2"]} == {
        "customer": "acme", "region": "eu", "amount": 50.0, "stage": "done"}
    ops = [op for op in client.operations("acme-1") if op.sub_type == "SetAttributes"]
    assert len(ops) == 2  # each set recorded once, the replay added none


def test_sparse_and_dense_matches_find_the_same_runs(any_client: durable.Client,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Few matches are read from the attribute's index, many by walking the runs: the same
    answer either way, paged alike."""
    client = any_client
    for i in range(12):
        client.start(tagger, float(i), id=f"r{i:02d}", attributes={"n": i, "odd": str(i % 2)})
    queries = ['odd = "1"', "n >= 4 AND n < 10", 'n < 6 AND odd = "0"']
    sparse = {q: found(client, q) for q in queries}
    monkeypatch.setattr(attribute_store, "FEW", 2)
    assert {q: found(client, q) for q in queries} == sparse
    assert sparse['n < 6 AND odd = "0"'] == ["r04", "r02", "r00"]
    chosen = run_filter(where="n >= 4 AND n < 10", now=0)
    first = client.runs(chosen, limit=4)
    rest = client.runs(chosen, limit=4, cursor=first.next_cursor)
    assert [r.run_id for r in first.runs + rest.runs] == sparse["n >= 4 AND n < 10"]
    assert rest.next_cursor is None


def test_listing_filters_by_status_time_parent_and_roots_and_pages_by_cursor(
        any_client: durable.Client) -> None:
    client = any_client
    client.start(parent, 2, id="p")
    durable.run(parent, 2, id="p", db=client.store)
    client.start(tagger, 1.0, id="waiting")
    children = ["p-child-1", "p-child-0"]
    assert found(client, parent="p") == children
    assert found(client, roots=True) == ["waiting", "p"]
    assert found(client, status="running") == ["waiting"]
    assert found(client, status="SUCCEEDED", roots=True) == ["p"]
    assert found(client, status="parked") == []
    made = {r.run_id: r.created_at for r in client.runs().runs}
    assert found(client, since=made["p-child-0"], until=made["waiting"]) == children
    assert set(client.runs().children.items()) == {("p", 2)}
    seen: list[str] = []
    cursor = None
    while True:
        page = client.runs(limit=2, cursor=cursor)
        seen += [r.run_id for r in page.runs]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == ["waiting", *children, "p"]
    with pytest.raises(UsageError, match=r"unknown status 'SLEEPING'; use one of .*RUNNING, "
                                         "SUCCEEDED"):
        run_filter(status="SLEEPING", now=0)
    with pytest.raises(UsageError, match="not one a listing gave"):
        client.runs(cursor="not-a-cursor")


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("customer", 9, "a comparison"),
    ('customer = "acme', 12, 'a closing "'),
    ('customer < "acme"', 12, "a number or a time after <"),
    ("amount >= 3 OR amount < 1", 13, "AND or the end"),
    ("due < 2026-13-01T00:00:00Z", 7, "a valid time"),
    ("amount >= 3x", 11, 'a value: "text", a number'),
])
def test_a_malformed_filter_is_refused_at_its_position(text: str, position: int,
                                                       expected: str) -> None:
    with pytest.raises(FilterError) as refused:
        parse_filter(text)
    assert refused.value.position == position
    assert f"at position {position}: expected {expected}" in str(refused.value)


def test_attribute_values_that_cannot_be_searched_are_refused() -> None:
    client = durable.Client.__new__(durable.Client)  # refused before any store is touched
    for bad, message in [({"ok": True}, "a boolean"), ({"1x": "v"}, "key '1x'"),
                         ({"t": datetime(2026, 1, 1)}, "no time zone"),
                         ({"n": float("nan")}, "finite")]:
        with pytest.raises(UsageError, match=message):
            client.start_run("attrs.tagger", "1", attributes=bad)


# -- a SIGKILLed worker ----------------------------------------------------------------------------

@pytest.mark.crash
@pytest.mark.parametrize(("crash_at", "saved"), [("tagged:unsaved", False),
                                                 ("tag:inside", True)])
def test_attributes_set_around_a_crash_are_recorded_once_and_found_after_resume(
        crash_lab: CrashLab, crash_at: str, saved: bool) -> None:
    lab = crash_lab
    run_id = lab.start(app.tagged, "acme", id="tagged")
    assert lab.worker(crash_at=[crash_at]).wait_exit() == -signal.SIGKILL
    assert found(lab.client, 'tenant = "acme" AND stage = 1') == (["tagged"] if saved else [])
    lab.worker()
    lab.finish(run_id)
    assert found(lab.client, 'tenant = "acme" AND stage = 2') == ["tagged"]
    assert found(lab.client, "stage < 2") == []
    recorded = [e.name for e in lab.history(run_id, "StepSucceeded")]
    assert recorded.count("attributes") == 2


# -- durable ls and GET /api/runs --------------------------------------------------------------

def durable_cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DURABLE, *args, "--db", db], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_ls_finds_runs_started_with_attributes_and_refuses_a_bad_filter(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    target = "tests/apps/crash_app.py:tagged"
    for i, attrs in enumerate([["customer=acme", "amount=5"], ["customer=acme", "amount=50"],
                               ['customer="3"', "due=2026-12-01T00:00:00Z"]]):
        started = durable_cli(db, "start", target, "--input", "\"t\"", "--id", f"c{i}",
                              *[f"--attr={a}" for a in attrs])
        assert started.returncode == 0, started.stderr
    listed = durable_cli(db, "ls", "--json", "--where", 'customer = "acme" AND amount > 10')
    page = json.loads(listed.stdout)
    assert [r["run_id"] for r in page["runs"]] == ["c1"] and page["next_cursor"] is None
    assert page["runs"][0]["attributes"] == {"customer": "acme", "amount": 50}
    shown = json.loads(durable_cli(db, "show", "c1", "--json").stdout)
    assert shown["attributes"] == {"customer": "acme", "amount": 50}
    dated = json.loads(durable_cli(db, "ls", "--json", "--where",
                                   'due >= 2026-12-01T00:00:00Z AND customer = "3"').stdout)
    assert dated["runs"][0]["attributes"]["due"] == "2026-12-01T00:00:00Z"
    first = json.loads(durable_cli(db, "ls", "--json", "--limit", "2").stdout)
    rest = json.loads(durable_cli(db, "ls", "--json", "--cursor", first["next_cursor"]).stdout)
    assert [r["run_id"] for r in first["runs"] + rest["runs"]] == ["c2", "c1", "c0"]
    table = durable_cli(db, "ls", "--limit", "1", "--status", "running", "--roots")
    assert "c2" in table.stdout and "durable ls --cursor" in table.stderr
    for args, message in [(["--where", "amount >> 3"], "bad filter at position 9"),
                          (["--status", "SLEEPING"], "unknown status 'SLEEPING'"),
                          (["--since", "yesterday"], "since 'yesterday' is not a time")]:
        refused = durable_cli(db, "ls", *args)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    bad_attr = durable_cli(db, "start", target, "--input", "\"t\"", "--attr", "no-equals")
    assert bad_attr.returncode == 2 and "is not key=value" in bad_attr.stderr


def test_the_api_starts_runs_with_attributes_and_filters_them_or_says_where_a_filter_breaks(
        tmp_path: Path) -> None:
    with Server(tmp_path) as server, server.client() as api:
        for i, attrs in enumerate([{"tier": "gold", "score": 9.5},
                                   {"tier": "gold", "score": 3, "due": "2026-12-01T00:00:00Z"}]):
            made = api.post("/api/runs", json={"workflow": "elsewhere", "id": f"a{i}",
                                               "attributes": attrs})
            assert made.status_code == 201, made.text
        page = api.get("/api/runs", params={"where": 'tier = "gold" AND score < 5'}).json()
        assert [r["run_id"] for r in page["runs"]] == ["a1"]
        assert page["runs"][0]["attributes"]["due"] == "2026-12-01T00:00:00Z"
        assert api.get("/api/runs/a0").json()["attributes"] == {"tier": "gold", "score": 9.5}
        first = api.get("/api/runs", params={"limit": 1}).json()
        rest = api.get("/api/runs", params={"cursor": first["next_cursor"]}).json()
        assert [r["run_id"] for r in first["runs"] + rest["runs"]] == ["a1", "a0"]
        bad = api.get("/api/runs", params={"where": 'tier = "gold" AND'})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_filter"
        assert "position 18" in bad.json()["error"]["message"]
        refused = api.post("/api/runs", json={"workflow": "elsewhere",
                                              "attributes": {"flag": True}})
        assert refused.status_code in (400, 422), refused.text
