"""The run page of large runs, this tree against a baseline commit (main by default).

Prints one JSON line. Runs of about 1,000 and 10,000 operations (tests/apps/big_app.py: a gather
of 200 or 2,000 documents, each with a child run, one failed), made through the real engine on
one SQLite file; then, for this tree and for the baseline (its `src/` from `git archive`, run
with this virtualenv's interpreter), a real `durable server` on loopback over a copy of that
file, and per run:

- `page_bytes`: the run page's HTML;
- `server_ms`: median time to answer GET /runs/<id> (--repeats requests, after one warm-up);
- `first_render_ms`: median first contentful paint in headless Chromium (/usr/bin/chromium),
  null without it;
- `live_poll_bytes`: what an open page of the run fetches per refresh when nothing happened
  (the baseline refetches its whole live fragment; this tree asks for the events after the
  last it shows).

    python benchmarks/ui.py
    python benchmarks/ui.py --repeats 5 --baseline none
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.apps import big_app  # noqa: E402  # the same run the UI tests open

CHROMIUM = "/usr/bin/chromium"
SIZES = {"1k": 200, "10k": 2000}  # documents: 5 operations each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def baseline_src(ref: str, into: Path) -> Path:
    """The baseline's package, unpacked from git: nothing of it is installed."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


@contextmanager
def server(db: str, src: Path, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "durable.cli", "server", "--port", str(port), "--db", db],
            cwd=ROOT, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/api/workflows", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the server did not answer: see {log}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def first_render(url: str, repeats: int) -> float | None:
    if not Path(CHROMIUM).exists():
        return None
    from playwright.sync_api import sync_playwright
    paints = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1366, "height": 850})
            page.goto(url)
            paints.append(page.wait_for_function(
                "() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
            ).json_value())
            page.close()
        browser.close()
    return round(statistics.median(paints), 1)


def live_poll_bytes(http: httpx.Client, run_id: str, baseline: bool) -> int:
    if baseline:
        return len(http.get(f"/ui/runs/{run_id}").content)
    page = http.get(f"/runs/{run_id}").text
    after = page.split('data-after="', 1)[1].split('"', 1)[0]
    return len(http.get(f"/ui/runs/{run_id}/updates", params={"after": after}).content)


def measure(url: str, run_id: str, repeats: int, baseline: bool) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=120) as http:
        size = len(http.get(f"/runs/{run_id}").content)  # also the warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            http.get(f"/runs/{run_id}").raise_for_status()
            times.append(time.perf_counter() - t)
        operations = len(http.get(f"/api/runs/{run_id}").json()["operations"])
        poll = live_poll_bytes(http, run_id, baseline)
    return {"operations": operations, "page_bytes": size,
            "server_ms": round(statistics.median(times) * 1000, 1),
            "first_render_ms": first_render(f"{url}/runs/{run_id}", min(repeats, 3)),
            "live_poll_bytes": poll}


def copy(source: Path, target: Path) -> None:
    """Through SQLite's backup: the file alone may miss what its write-ahead log still holds."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", default="main",
                        help="git ref to compare with, or 'none'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="durable-ui-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        built = tmp / "runs.db"
        started = time.perf_counter()
        for label, n in SIZES.items():
            big_app.build(f"sqlite:///{built}", f"docs-{label}", n, n // 2)
        build_s = time.perf_counter() - started
        trees = {"this": ROOT / "src"}
        if args.baseline != "none":
            trees["baseline"] = baseline_src(args.baseline, tmp / "baseline")
        out: dict[str, Any] = {"bench": "ui", "build_s": round(build_s, 1),
                               "baseline_ref": args.baseline, "repeats": args.repeats}
        for name, src in trees.items():
            db = tmp / f"{name}.db"
            copy(built, db)
            with server(f"sqlite:///{db}", src, tmp / f"{name}.log") as url:
                out[name] = {label: measure(url, f"docs-{label}", args.repeats,
                                            name == "baseline") for label in SIZES}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
