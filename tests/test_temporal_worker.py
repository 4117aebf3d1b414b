"""durable.temporal's Worker and connection settings, used as Temporal's samples use them.

Temporal programs load their connection with `envconfig`, run a worker in `async with` around
their client calls, sometimes run activities in a worker of their own, and expect the worker to
say in its log when workflow code fails its task or an activity keeps failing. Each test runs
the code as Temporal's documentation writes it, against both stores where a store is touched.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable import ExecutionStatus
from durable.errors import UsageError
from durable.temporal import activity, workflow
from durable.temporal.client import Client, store_url
from durable.temporal.common import RetryPolicy
from durable.temporal.envconfig import ClientConfig, ConfigError
from durable.temporal.serverless import run_async
from durable.temporal.worker import Worker
from tests.kit import wait_until_async
from tests.test_temporal_workflows import load_example

HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works


@activity.defn
async def compose(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@workflow.defn
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose, args=["Hello", name], start_to_close_timeout=timedelta(seconds=10))


# -- connection settings -----------------------------------------------------------------------

def profile_file(tmp_path: Path, address: str) -> Path:
    file = tmp_path / "temporal.toml"
    file.write_text(f'[profile.default]\naddress = "{address}"\nnamespace = "orders"\n\n'
                    f'[profile.staging]\naddress = "staging.example:7233"\n')
    return file


async def test_the_hello_activity_sample_connects_through_the_profile_named_database(
        any_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample's own main(): envconfig reads TEMPORAL_CONFIG_FILE, whose profile's address is
    the Durable database; the run is stored there, nowhere else."""
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile_file(tmp_path, any_db)))
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setenv("DURABLE_DB", f"sqlite:///{tmp_path / 'not-this-one.db'}")
    sample = load_example("hello_activity")
    result = await asyncio.wait_for(sample.main("hello-profile"), HANG_GUARD)
    assert result == "Hello, World!"
    client = Client(any_db)
    assert client.durable.get("hello-profile").status is ExecutionStatus.SUCCEEDED
    assert not (tmp_path / "not-this-one.db").exists()
    client.durable.close()


async def test_temporal_address_in_the_environment_overrides_the_profile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile_file(tmp_path, "frontend:7233")))
    monkeypatch.setenv("TEMPORAL_ADDRESS", db)
    config = ClientConfig.load_client_connect_config()
    assert config == {"target_host": db, "namespace": "orders"}
    client = await Client.connect(**config)
    assert client.durable.store.url == db and client.namespace == "orders"
    client.durable.close()


async def test_a_temporal_frontend_address_means_durable_db(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """`localhost:7233` (the samples' default) names no Durable database: DURABLE_DB does.
    An API key (which implies TLS) is accepted and said to have no effect."""
    db = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("DURABLE_DB", db)
    config = ClientConfig.load_client_connect_config(
        disable_file=True, override_env_vars={"TEMPORAL_API_KEY": "k"})
    config.setdefault("target_host", "localhost:7233")
    with caplog.at_level(logging.WARNING, logger="durable.temporal"):
        client = await Client.connect(**config)
    assert client.durable.store.url == db
    assert any("api_key= has no effect" in r.getMessage() for r in caplog.records)
    client.durable.close()


def test_addresses_map_onto_durable_databases() -> None:
    assert store_url("localhost:7233") is None
    assert store_url(None) is None
    assert store_url("sqlite:///a.db") == "sqlite:///a.db"
    assert store_url("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(UsageError, match="TEMPORAL_ADDRESS"):
        store_url("http://durable.example:8000")


def test_bad_connection_settings_say_which_file_and_what_to_do(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[profile.default\naddress = ")
    with pytest.raises(ConfigError, match=f"{broken}.*not valid TOML"):
        ClientConfig.load_client_connect_config(config_file=str(broken), override_env_vars={})
    with pytest.raises(ConfigError, match=r"Profile 'prod' not found .*default, staging"):
        ClientConfig.load_client_connect_config(
            "prod", config_file=str(profile_file(tmp_path, "x:1")), override_env_vars={})
    strict = tmp_path / "strict.toml"
    strict.write_text('[profile.default]\naddress = "x:1"\nadress = "typo"\n')
    with pytest.raises(ConfigError, match=r"\[profile.default\]: unknown field 'adress'"):
        ClientConfig.load_client_connect_config(config_file=str(strict), config_file_strict=True,
                                                override_env_vars={})
    assert ClientConfig.load_client_connect_config(config_file=str(strict),
                                                   override_env_vars={}) == {"target_host": "x:1"}


# -- the worker --------------------------------------------------------------------------------

async def test_leaving_async_with_worker_before_its_task_ran_returns(db_url: str) -> None:
    """`async with Worker(...): pass` exits at once: the shutdown asked before the worker's
    task first ran holds (it used to be cleared as the task began, and __aexit__ hung)."""
    client = Client(db_url)

    async def enter_and_leave() -> None:
        async with Worker(client, task_queue="q", workflows=[Greet], activities=[compose]):
            pass
    await asyncio.wait_for(enter_and_leave(), HANG_GUARD)
    worker = Worker(client, task_queue="q", workflows=[Greet], activities=[compose])
    await worker.shutdown()
    await asyncio.wait_for(worker.run(), HANG_GUARD)  # run() after shutdown() returns too
    client.durable.close()


async def test_an_activities_only_worker_claims_no_run(any_db: str) -> None:
    """Temporal's separate activity worker: here activities run in their workflow's step, so a
    worker given only activities serves nothing. Beside a workflow worker, every run is the
    workflow worker's and succeeds; none fails with KeyError for want of its workflow."""
    client = Client(any_db)
    ids = [f"greet-{i}" for i in range(8)]
    handles = [await client.start_workflow(Greet.run, f"n{i}", id=run_id, task_queue="q")
               for i, run_id in enumerate(ids)]
    async with Worker(client, task_queue="q", activities=[compose]):
        await asyncio.sleep(0)  # its task has run: it would claim now if it ever did
        async with Worker(client, task_queue="q", workflows=[Greet], activities=[compose]):
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)),
                                             HANG_GUARD)
    assert results == [f"Hello, n{i}!" for i in range(8)]
    for run_id in ids:
        failed = [e for e in client.durable.history(run_id) if "FAILED" in str(e.type)]
        assert failed == [], (run_id, failed)
    client.durable.close()


def test_a_worker_needs_workflows_or_activities_and_the_serverless_entry_workflows(
        db_url: str) -> None:
    client = Client(db_url)
    with pytest.raises(UsageError, match="at least one workflow or activity"):
        Worker(client, task_queue="q")
    with pytest.raises(UsageError, match="no workflows given"):
        asyncio.run(run_async([], [compose], db=db_url))
    client.durable.close()


async def test_worker_options_without_meaning_here_are_named_once(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(db_url)
    with caplog.at_level(logging.WARNING, logger="durable.temporal"):
        for _ in range(2):
            Worker(client, task_queue="q", workflows=[Greet], max_concurrent_activities=3)
    named = [r for r in caplog.records if "max_concurrent_activities=" in r.getMessage()]
    assert len(named) == 1
    client.durable.close()


# -- what the worker logs ----------------------------------------------------------------------

@workflow.defn
class Broken:
    @workflow.run
    async def run(self, name: str) -> str:
        raise KeyError(name)  # not an ApplicationError: fails the workflow task


@activity.defn
async def always_fails(name: str) -> str:
    raise RuntimeError(f"backend down for {name}")


@workflow.defn
class Stubborn:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            always_fails, name, start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10),
                                     backoff_coefficient=1.0))


def lines_about(caplog: pytest.LogCaptureFixture, run_id: str, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
            and run_id in r.getMessage() and all(w in r.getMessage() for w in words)]


async def test_workflow_code_that_raises_is_logged_with_the_run_id(
        any_db: str, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(any_db)
    handle = await client.start_workflow(Broken.run, "Ada", id="broken-run", task_queue="q")
    with caplog.at_level(logging.WARNING):
        async with Worker(client, task_queue="q", workflows=[Broken]):
            # The worker logs once the park has committed: wait for the line, not the row.
            await wait_until_async(lambda: lines_about(caplog, "broken-run", "KeyError", "'Ada'"),
                                   "the parked run logged")
    assert client.durable.get(handle.id).parked
    assert client.durable.get(handle.id).status is ExecutionStatus.RUNNING  # parked, not failed
    client.durable.close()


async def test_an_activity_failing_forever_is_logged_at_each_retry_with_the_run_id(
        any_db: str, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(any_db)
    handle = await client.start_workflow(Stubborn.run, "Ada", id="stubborn-run", task_queue="q")
    with caplog.at_level(logging.WARNING):
        async with Worker(client, task_queue="q", workflows=[Stubborn],
                          activities=[always_fails]):
            await wait_until_async(
                lambda: len(lines_about(caplog, "stubborn-run", "always_fails", "retrying",
                                        "backend down for Ada")) >= 3,
                "three logged retries")
            await handle.cancel()
    client.durable.close()


def run_info(client: Client, run_id: str) -> Any:
    return client.durable.get(run_id)
