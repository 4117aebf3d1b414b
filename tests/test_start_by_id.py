"""Starting a run by an id that exists: the same input is the same run (idempotent start), another
input is refused with a clear error unless the caller asks for the existing run. Without the
refusal a caller reusing an id for different work would get the old run back and never know."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import durable
from durable.errors import RunIdTaken
from tests.apps import cli_app


@pytest.fixture
def client(any_db: str) -> Iterator[durable.Client]:
    c = durable.Client(any_db)
    yield c
    c.close()


def test_another_input_under_an_existing_id_is_refused(client: durable.Client) -> None:
    first = client.start(cli_app.greet, "Ada", id="order-1")
    again = client.start(cli_app.greet, "Ada", id="order-1")  # the same input: that run
    assert again.run_id == first.run_id
    with pytest.raises(RunIdTaken, match="already started with another input"):
        client.start(cli_app.greet, "Bob", id="order-1")
    assert '"Ada"' in (client.get("order-1").input or "")  # nothing was changed


def test_asking_for_the_existing_run_takes_it_whatever_its_input(client: durable.Client) -> None:
    client.start(cli_app.greet, "Ada", id="order-2")
    taken = client.start(cli_app.greet, "Bob", id="order-2", existing=True)
    assert taken.run_id == "order-2"
    assert '"Ada"' in (client.get("order-2").input or "")


def test_the_same_input_spaced_otherwise_is_the_same_run(client: durable.Client) -> None:
    run, created = client.start_run("greet", '{"name": "Ada"}', "order-3")
    again, created_again = client.start_run("greet", '{"name":"Ada"}', "order-3")
    assert created and not created_again and again.run_id == run.run_id
