"""The key-value store from outside a workflow: `durable kv` and /api/kv, on a real server
process and the real console script."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import durable
from tests.kit import DURABLE, ROOT
from tests.serverkit import Server


def kv_cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DURABLE, "kv", *args, "--db", db], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_cli_sets_reads_lists_and_deletes_keys(any_db: str) -> None:
    assert kv_cli(any_db, "set", "cfg/limit", "10").returncode == 0
    assert kv_cli(any_db, "set", "cfg/flags", '{"beta": true}').returncode == 0
    assert kv_cli(any_db, "set", "other", '"x"').returncode == 0
    assert kv_cli(any_db, "get", "cfg/flags").stdout.strip() == '{"beta":true}'
    listed = json.loads(kv_cli(any_db, "ls", "--prefix", "cfg/", "--json").stdout)
    assert [(e["key"], e["value"], e["version"]) for e in listed] == [
        ("cfg/flags", {"beta": True}, 1), ("cfg/limit", 10, 1)]
    table = kv_cli(any_db, "ls").stdout
    assert "cfg/limit" in table and "other" in table
    deleted = kv_cli(any_db, "delete", "cfg/limit")
    assert deleted.returncode == 0 and "deleted cfg/limit" in deleted.stdout
    client = durable.Client(any_db)
    try:
        assert client.kv.keys() == ["cfg/flags", "other"]
    finally:
        client.close()


@pytest.mark.parametrize(("args", "says"), [
    (("set", "k", "{not json"), "not valid JSON"),
    (("set", "", "1"), "a key is a non-empty string"),
    (("get", "missing"), "no value under key 'missing'"),
    (("delete", "missing"), "no value under key 'missing'"),
    (("ls", "--limit", "0"), "--limit"),
])
def test_bad_cli_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...],
                                              says: str) -> None:
    done = kv_cli(f"sqlite:///{tmp_path / 'kv.db'}", *args)
    assert done.returncode == 2, done
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


TOKEN = "kv-api-token-long-enough-to-pass"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path, TOKEN) as s:
        yield s


def test_the_api_lists_reads_sets_and_deletes_keys_behind_the_token(server: Server) -> None:
    with server.client() as api:
        put = api.put("/api/kv/team/a/count", json={"value": 3})
        assert put.status_code == 200 and put.json()["value"] == 3
        assert put.json()["version"] == 1
        api.put("/api/kv/team/b", json={"value": {"on": False}})
        api.put("/api/kv/solo", json={"value": None})
        got = api.get("/api/kv/team/a/count").json()
        assert (got["key"], got["value"]) == ("team/a/count", 3)
        page = api.get("/api/kv", params={"prefix": "team/", "limit": 1}).json()
        assert [e["key"] for e in page["entries"]] == ["team/a/count"]
        rest = api.get("/api/kv", params={"prefix": "team/", "after": page["next_after"]}).json()
        assert [e["key"] for e in rest["entries"]] == ["team/b"] and rest["next_after"] is None
        assert api.delete("/api/kv/team/b").status_code == 200
        missing = api.get("/api/kv/team/b")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
        assert api.delete("/api/kv/team/b").status_code == 404
        assert api.put("/api/kv/x", json={"nope": 1}).status_code == 422
        assert api.put("/api/kv/x", content=b'{"value": NaN}',
                       headers={"Content-Type": "application/json"}).status_code in (400, 422)
        paths = api.get("/openapi.json").json()["paths"]
        assert {"/api/kv", "/api/kv/{key}"} <= set(paths)
        assert set(paths["/api/kv/{key}"]) == {"get", "put", "delete"}
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.get("/api/kv").status_code == 401
        assert anonymous.put("/api/kv/solo", json={"value": 1}).status_code == 401
    client = durable.Client(server.db)
    try:
        assert client.kv.keys() == ["solo", "team/a/count"]
    finally:
        client.close()
