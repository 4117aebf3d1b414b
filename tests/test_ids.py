"""The run id rule (durable.model.ids): which ids a run may be created with, through every door,
the ids Durable derives itself, and runs stored before the rule."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

import durable
from durable.model.ids import RUN_ID_MAX, check_run_id, derived_run_id
from durable.model.schedule import Schedule

REFUSED = {
    "a slash": ("a/b", "contains '/' at position 1"),
    "a dot segment": ("..", "starts with '.'"),
    "a leading dot": (".hidden", "starts with '.'"),
    "a leading dash": ("-rf", "starts with '-'"),
    "nothing": ("", "is empty"),
    "a space": ("a b", "contains ' '"),
    "a newline": ("a\nb", "contains '\\n'"),
    "a NUL": ("nul\x00", "contains '\\x00'"),
    "an escape sequence": ("esc\x1b[2J", "contains '\\x1b'"),
    "a non-ASCII letter": ("café", "contains 'é'"),
    "a percent sign": ("50%", "contains '%'"),
    "too many characters": ("x" * (RUN_ID_MAX + 1), f"is {RUN_ID_MAX + 1} characters long"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_run_id_outside_the_rule_is_a_usage_error_and_creates_nothing(
        client: durable.Client, case: str) -> None:
    run_id, problem = REFUSED[case]
    with pytest.raises(durable.UsageError) as refused:
        client.start_by_name("anything", None, id=run_id)
    assert problem in str(refused.value)
    assert "a run id is 1 to 256 ASCII letters, digits and the characters _ - . : @ +" in str(
        refused.value)
    assert client.list() == []


def test_a_run_id_that_is_not_a_string_is_a_usage_error(client: durable.Client) -> None:
    with pytest.raises(durable.UsageError, match="a run id is a string, not int"):
        client.start_by_name("anything", None, id=17)  # type: ignore[arg-type]


def test_every_character_the_rule_allows_makes_a_run_found_again_by_its_id(
        client: durable.Client) -> None:
    for run_id in ("Tenant_9:order-17@v2.1+eu", "_", "0", "x" * RUN_ID_MAX):
        handle = client.start_by_name("anything", None, id=run_id)
        assert client.get(handle.run_id).run_id == run_id


def test_a_rerun_under_an_id_outside_the_rule_is_refused(client: durable.Client) -> None:
    @durable.workflow
    async def one_step(ctx: durable.Context) -> int:
        return await ctx.step(lambda: 1, name="only")

    durable.run(one_step, id="source", db=client.store)
    with pytest.raises(durable.UsageError, match="run id 'a/b' contains '/'"):
        client.rerun("source", "only", id="a/b")
    assert [r.run_id for r in client.list()] == ["source"]


def test_a_run_stored_before_the_rule_stays_readable_and_reachable(
        client: durable.Client) -> None:
    old = "made before/the rule"
    client.store.write_sync(lambda tx: tx.insert_run(old, "anything", None, time.time()))
    assert client.get(old).run_id == old
    client.signal(old, "go", 1)
    assert client.cancel(old).cancel_requested
    with pytest.raises(durable.RunNotFound):  # an id breaking the rule is simply not there
        client.get("never/made")


def test_derived_ids_follow_the_rule_and_are_stable_and_distinct() -> None:
    texts = ["report@2025-01-31T02:00:00+01:00", "nightly report@2025", "nightly_report@2025",
             "test_x.<locals>.wf@2025", ".hidden", "-dash", "", "é" * 300, "p" * 300 + "-child"]
    derived = [derived_run_id(t) for t in texts]
    assert [check_run_id(d) for d in derived] == derived
    assert derived == [derived_run_id(t) for t in texts]  # the same text, the same id
    assert len(set(derived)) == len(texts)  # "a b" and "a_b" do not collide
    assert derived[0] == texts[0]  # an id that fits is kept as it is


def test_a_schedule_tick_of_a_workflow_named_outside_the_rule_gets_an_id_within_it() -> None:
    tick = datetime(2025, 1, 2, 9, tzinfo=UTC).timestamp()
    schedule = Schedule("0 9 * * *")
    assert schedule.run_id("report", tick) == "report@2025-01-02T09:00:00+00:00"  # unchanged
    spaced = schedule.run_id("daily report <v2>", tick)
    assert check_run_id(spaced) == spaced and spaced.startswith("daily_report__v2_@2025-01-02")
