"""The light install: `pip install durable-serverless` brings the embedded engine, the SDK,
`durable.lambda_handler` and the CLI's embedded commands, nothing of the extras; a feature of a
missing extra says in one line what to install; a Lambda zip of examples/serverless stays
under 4 MB. The `install` tests build the real wheel and install it in a fresh venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tests.kit import ROOT

EXTRAS_ONLY = ("fastapi", "starlette", "uvicorn", "jinja2", "httpx", "psycopg", "psycopg_pool",
               "boto3", "botocore", "opentelemetry")
"""Top-level modules of the extras (rich, the [cli] extra's, is checked in the fresh venv)."""

ZIP_LIMIT = 4 * 1024 * 1024

NAP = '''
from datetime import timedelta
from durable import Context, workflow

def double(x: int) -> int:
    return 2 * x

@workflow
async def nap(ctx: Context, x: int) -> int:
    y = await ctx.step(double, x)
    await ctx.sleep(timedelta(milliseconds=200))
    return y + 1
'''


def modules_after(code: str, *flags: str) -> set[str]:
    """The modules loaded once `code` has run in a fresh interpreter."""
    probe = f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, *flags, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def imported_after(code: str, *flags: str) -> set[str]:
    """The top-level modules loaded once `code` has run in a fresh interpreter."""
    return {name.partition(".")[0] for name in modules_after(code, *flags)}


def test_the_sdk_a_lambda_module_and_the_cli_import_no_extra() -> None:
    # examples/serverless/app.py exports both durable.serve(...) and durable.lambda_handler(...)
    loaded = imported_after("import durable\nimport examples.serverless.app as app\n"
                            "assert callable(app.handler)\nfrom durable.cli import main")
    assert loaded.isdisjoint(EXTRAS_ONLY), sorted(loaded & set(EXTRAS_ONLY))


COLD_START_FREE = ("fastapi", "starlette", "uvicorn", "jinja2", "psycopg", "opentelemetry",
                   "click", "pydantic", "pydantic_core", "croniter", "prometheus_client",
                   "zoneinfo", "http", "email")
"""What a serverless function's cold start does without (benchmarks/coldstart.py times it): the
server, PostgreSQL, telemetry, the CLI, metrics, the schedules' cron and time-zone libraries, and
what the first invocation loads when it needs them: pydantic (the serializer) and http.client
(a checkpoint over HTTP)."""

ENGINE_SIDE = ("durable.client", "durable.engine", "durable.store", "durable.cli",
               "durable.server", "durable.views")


def test_importing_durable_and_a_lambda_module_loads_no_server_database_telemetry_or_cli() -> None:
    modules = modules_after("import durable\nimport examples.serverless.app as app\n"
                            "assert callable(app.handler)")
    top = {name.partition(".")[0] for name in modules}
    assert top.isdisjoint(COLD_START_FREE), sorted(top & set(COLD_START_FREE))
    engine = sorted(name for name in modules if name.startswith(ENGINE_SIDE))
    assert not engine, f"a Lambda function imports no engine, store or front end: {engine}"


def test_every_public_name_is_importable_from_durable_in_a_fresh_process() -> None:
    # The client, the worker and the function hosts load on first lookup; each name must still
    # be the object its home module defines, listed by dir(), and a typo an AttributeError.
    modules_after("""
import durable
import importlib
assert set(durable.__all__) <= set(dir(durable)), set(durable.__all__) - set(dir(durable))
for name in durable.__all__:
    exec(f"from durable import {name}")
for name, home in durable._LAZY.items():
    assert getattr(durable, name) is getattr(importlib.import_module(home), name), name
try:
    durable.Clinet
except AttributeError as e:
    assert "Clinet" in str(e)
else:
    raise AssertionError("durable.Clinet resolved")
""")


# -- the wheel, installed ---------------------------------------------------------------------

def run(*args: str | Path, cwd: Path = ROOT,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT)
    (built,) = out.glob("durable_serverless-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and no extra; returns its bin directory."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", root)
    run(root / "bin" / "pip", "install", "-q", wheel)
    return root / "bin"


@pytest.mark.install
def test_the_wheel_ships_the_node_host_script(wheel: Path) -> None:
    # `durable functions add --node` runs it with node from the installed package
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("durable/invoke/node_host.cjs").decode()
    assert shipped == (ROOT / "src" / "durable" / "invoke" / "node_host.cjs").read_text()


@pytest.mark.install
def test_the_core_install_runs_an_embedded_workflow_from_the_cli(venv: Path,
                                                                 tmp_path: Path) -> None:
    assert run(venv / "durable", "--version").stdout.strip().endswith("0.1.0")
    (tmp_path / "nap.py").write_text(NAP)
    db = f"sqlite:///{tmp_path / 'd.db'}"
    done = run(venv / "durable", "run", "nap.py:nap", "--input", "20", "--id", "nap-1",
               "--db", db, cwd=tmp_path)
    assert done.stdout.strip() == "41"
    assert "run succeeded" in done.stderr
    shown = run(venv / "durable", "show", "nap-1", "--db", db, cwd=tmp_path).stdout
    assert "SUCCEEDED" in shown and "double" in shown and "sleep" in shown.lower()
    listed = run(venv / "durable", "ls", "--db", db, cwd=tmp_path).stdout.splitlines()
    assert listed[0].split() == ["run", "id", "workflow", "status", "created", "elapsed",
                                 "compute"]
    assert listed[1].split()[:3] == ["nap-1", "nap", "SUCCEEDED"]


@pytest.mark.install
def test_the_core_install_has_no_extra_and_names_the_one_a_command_needs(venv: Path,
                                                                         tmp_path: Path) -> None:
    for module in (*EXTRAS_ONLY, "rich"):
        assert run(venv / "python", "-c", f"import {module}", check=False).returncode == 1
    server = run(venv / "durable", "server", "--db", f"sqlite:///{tmp_path / 'd.db'}",
                 check=False)
    assert (server.returncode, server.stderr) == (2, (
        "error: durable server needs the server extra: "
        "pip install 'durable-serverless[server]'\n"))
    pg = run(venv / "durable", "ls", "--db", "postgresql://127.0.0.1/test", check=False)
    assert (pg.returncode, pg.stderr) == (2, (
        "error: a postgresql:// database needs the postgres extra: "
        "pip install 'durable-serverless[postgres]'\n"))
    # the function registry is the core's: push.py invokes over the standard library
    assert run(venv / "durable", "functions", "ls", cwd=tmp_path).stdout == ""


@pytest.mark.install
def test_a_lambda_zip_of_the_serverless_example_stays_under_4_mb(wheel: Path,
                                                                 tmp_path: Path) -> None:
    # As the README packages it, but for this interpreter's version (the README's says 3.13)
    # so that the package can be imported here with nothing else on the path.
    build = tmp_path / "build"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    run(sys.executable, "-m", "pip", "install", "-q", "--platform", "manylinux2014_x86_64",
        "--only-binary=:all:", "--python-version", version, "--no-compile",
        "--target", build, wheel)
    shutil.copy(ROOT / "examples" / "serverless" / "app.py", build / "app.py")
    shutil.rmtree(build / "bin")  # console scripts: no use on Lambda
    archive = tmp_path / "function.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(build.rglob("*")):
            z.write(path, path.relative_to(build))
        sizes = Counter[str]()
        for info in z.infolist():
            sizes[info.filename.partition("/")[0].split("-")[0]] += info.compress_size
    breakdown = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in sizes.most_common(8))
    size = archive.stat().st_size
    print(f"function.zip: {size / 1e6:.2f} MB ({breakdown})")
    assert size < ZIP_LIMIT, f"function.zip is {size / 1e6:.2f} MB: {breakdown}"
    # The package alone, without this venv's site-packages (-S): the handler loads, and so does
    # pydantic_core's compiled part, which the handler's first checkpoint encodes with.
    loaded = imported_after(f"import sys; sys.path.insert(0, {str(build)!r})\n"
                            "import app\nassert app.handler.workflow.name == 'checkout'\n"
                            "from durable import JsonSerializer\n"
                            "assert JsonSerializer().encode({'a': b'1'}) == '{\"a\":\"MQ==\"}'",
                            "-I", "-S")
    assert "pydantic_core" in loaded and loaded.isdisjoint(EXTRAS_ONLY)
