"""PostgreSQL multi-worker throughput, A/B against another revision of Durable in the same run.

Runs `benchmarks/steps.py --db postgresql://... --workers W --concurrency C` for each W (1, 2
and 4 by default), once per repeat, for this checkout ("this") and, with --ab REF, for the code
of git revision REF ("base", e.g. main) exported into a temporary directory with `git archive`
and run with the same interpreter (its `src/` first on PYTHONPATH). The two alternate within each
repeat, so a noisy machine slows both alike. Each steps.py run makes and drops its own database.

Prints one JSON line per steps.py run as it ends, then a summary line: median steps/s per
(code, W), each W's ratio to this code's single worker, and with --ab each figure's ratio to the
base's (the median of each repeat's pair's ratio) and this code's single worker over the base's
single worker (issue 19's target: >= 1.5).

    python benchmarks/pg_workers.py --ab main                       # 1, 2, 4 workers, 3 repeats
    python benchmarks/pg_workers.py --ab main --workers 1 --repeats 1 --workflows 300  # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql://root@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def exported(ref: str) -> Iterator[Path]:
    """The tree of git revision `ref` in a temporary directory, removed after."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src", "benchmarks"],
                             check=True, capture_output=True).stdout
    directory = Path(tempfile.mkdtemp(prefix="durable-ab-"))
    try:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(directory, filter="data")
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def steps_run(tree: Path, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """One steps.py run with the code of `tree`; its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, str(tree / "benchmarks" / "steps.py"), "--db", args.pg,
               "--workers", str(workers), "--concurrency", str(args.concurrency),
               "--workflows", str(args.workflows), "--steps", str(args.steps)]
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"pg_workers.py: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def summarize(results: dict[tuple[str, int], list[float]], workers: list[int]
              ) -> dict[str, Any]:
    median = {key: statistics.median(values) for key, values in results.items()}
    codes = sorted({code for code, _ in median}, key=lambda code: code != "this")
    summary: dict[str, Any] = {"benchmark": "pg_workers", "steps_per_s": {}, "ranges": {}}
    for code in codes:
        summary["steps_per_s"][code] = {str(w): round(median[code, w], 1) for w in workers}
        summary["ranges"][code] = {str(w): [round(min(results[code, w]), 1),
                                            round(max(results[code, w]), 1)] for w in workers}
    if 1 in workers:
        summary["over_own_single_worker"] = {
            code: {str(w): round(median[code, w] / median[code, 1], 2) for w in workers}
            for code in codes}
    if "base" in codes:
        # The ratio of each repeat's pair (run back to back), then their median: on a shared
        # machine whose load drifts, steadier than the ratio of the two medians.
        paired = {w: statistics.median(t / b for t, b in zip(
            results["this", w], results["base", w], strict=True)) for w in workers}
        summary["this_over_base"] = {str(w): round(paired[w], 2) for w in workers}
        if 1 in workers:
            single = paired[1]
            summary["single_worker_this_over_base"] = round(single, 2)
            summary["target_single_worker_over_base"] = 1.5
            summary["target_met"] = single >= 1.5
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=DEFAULT_PG, metavar="URL",
                        help="a server where steps.py may create and drop databases")
    parser.add_argument("--ab", metavar="REF", help="also measure git revision REF (e.g. main)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], metavar="W")
    parser.add_argument("--concurrency", type=int, default=64, metavar="C")
    parser.add_argument("--workflows", type=int, default=1000, metavar="N")
    parser.add_argument("--steps", type=int, default=10, metavar="M")
    parser.add_argument("--repeats", type=int, default=3, metavar="R")
    args = parser.parse_args()
    if min(*args.workers, args.concurrency, args.workflows, args.steps, args.repeats) < 1:
        parser.error("--workers, --concurrency, --workflows, --steps, --repeats: at least 1")
    results: dict[tuple[str, int], list[float]] = {}
    with contextlib.ExitStack() as stack:
        trees = {"this": ROOT}
        if args.ab:
            trees["base"] = stack.enter_context(exported(args.ab))
        for repeat in range(args.repeats):
            for workers in args.workers:
                # Alternate which code goes first, so neither always meets a warmer server.
                order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
                for code, tree in order:
                    result = steps_run(tree, args, workers)
                    results.setdefault((code, workers), []).append(float(result["steps_per_s"]))
                    print(json.dumps({"code": code, "ref": args.ab if code == "base" else "HEAD",
                                      "repeat": repeat, **result}), flush=True)
    summary = summarize(results, args.workers)
    summary.update({"concurrency": args.concurrency, "workflows": args.workflows,
                    "steps": args.steps, "repeats": args.repeats, "base_ref": args.ab,
                    "cpus": os.cpu_count()})
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
