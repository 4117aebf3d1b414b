"""Cold start: what importing Durable adds to a fresh Python process.

A serverless function pays for its imports on every new instance, before its first invocation.
This times, in fresh interpreters, alternating the cases within each repeat:

- `python -c pass`, the baseline every other case is measured against;
- `import asyncio`, the floor of any asyncio library (Durable's SDK is one);
- `import durable`;
- the import of examples/serverless/app.py, a workflow exported as `durable.lambda_handler(...)`
  (and `durable.serve(...)`), what AWS Lambda imports before a Durable function's first event;
- the same, then what its first checkpoint loads (encoding a value, the HTTP client) and what
  its first invocation loads besides (decoding its input to the workflow's parameter type):
  what the import leaves to the first invocation (pydantic, http.client), before any I/O;
- the peer: the same kind of module written with AWS's SDK (aws-durable-execution-sdk-python,
  `@durable_execution`), what Lambda imports before a function of AWS's own SDK runs.

Each child times its own import (`perf_counter` around it); the parent times the whole process
and reads its CPU time. Two bytecode modes, each case run in both:

- `compiled`: bytecode compiled once into a cache of this run's own (by a warm-up run of every
  case), as in a deployment package that pip installed with its default compile step;
- `source`: Durable (a copy of src/ without __pycache__) compiled from source at every start,
  the standard library and the dependencies from their installed bytecode: a Lambda zip built
  with `pip install --no-compile`, whose read-only /var/task keeps Python from caching any.

Prints one JSON line: per mode, each case's medians and min-max, and its process time over the
baseline's (the ratio and the difference: what the import adds to a cold start).

    python benchmarks/coldstart.py                   # 11 repeats of each, about 2 min here
    python benchmarks/coldstart.py --repeats 31
    python benchmarks/coldstart.py --ref main        # also Durable as of a git ref, same run
    python benchmarks/coldstart.py --ref 84fea10 --out docs/coldstart.jsonl
    python benchmarks/coldstart.py --report docs/coldstart.jsonl   # the tables again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 100.0

AWS_FUNCTION = """
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
from aws_durable_execution_sdk_python.types import StepContext

@durable_step
def reserve(step_context: StepContext, sku: str) -> str:
    return f"reservation-{sku}"

@durable_execution
def handler(event: dict, context: DurableContext) -> str:
    return context.step(reserve(event["sku"]))
"""

FIRST_CHECKPOINT = """import examples.serverless.app as app
from durable import JsonSerializer
from durable.invoke import keepalive
JsonSerializer().encode({"sku": "book", "quantity": 1})"""

CASES: dict[str, str] = {
    "baseline": "pass",
    "asyncio": "import asyncio",
    "durable": "import durable",
    "lambda_module": "import examples.serverless.app as app; assert callable(app.handler)",
    # What a function's first invocation loads on top, before any I/O: its first checkpoint
    # encodes a step's result (pydantic_core) and sends it over HTTP to `durable server`
    # (http.client, the connection pool); decoding the input to the workflow's parameter type
    # (`order: dict[str, Any]`) loads pydantic's models.
    "lambda_module_first_checkpoint": FIRST_CHECKPOINT,
    "lambda_module_first_invocation": FIRST_CHECKPOINT + "\nfrom typing import Any\n"
                                      "JsonSerializer().decode('{\"sku\": \"book\"}', "
                                      "dict[str, Any])",
    "aws_sdk_module": AWS_FUNCTION,
}

PROBE = """import time as _t
_began = _t.perf_counter()
exec(compile({code!r}, "<case>", "exec"))
print((_t.perf_counter() - _began) * 1000)
"""


def child_env(mode: str, cache: Path, src: Path) -> dict[str, str]:
    """The environment of a case's process: Durable from `src`, bytecode as `mode` says."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(ROOT)])  # ROOT: examples.serverless
    if mode == "compiled":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)  # this run's own: written by the warm-up
    else:  # Durable compiled from source at every start: the copy has no __pycache__
        env.pop("PYTHONPYCACHEPREFIX", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def once(code: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(import ms as the child timed it, process wall ms, process CPU ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    wall = (time.perf_counter() - began) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"case failed: {code!r}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return float(done.stdout.split()[-1]), wall, cpu


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1)}


def source_tree(ref: str | None, into: Path) -> Path:
    """A copy of `src/` without bytecode: the working tree's, or Durable's at git `ref`."""
    if ref is None:
        shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")
    return into / "src"


Plan = list[tuple[str, str, str, dict[str, str]]]  # (mode, case, code, env)


def plan_for(modes: list[str], ref: str | None, tmp: Path) -> Plan:
    here = source_tree(None, tmp / "here")
    old = source_tree(ref, tmp / "ref") if ref is not None else None
    plan: Plan = []
    for mode in modes:
        env = child_env(mode, tmp / "pycache", here)
        # The peer's package is installed with its bytecode either way: it runs compiled only.
        plan += [(mode, name, code, env) for name, code in CASES.items()
                 if mode == "compiled" or name != "aws_sdk_module"]
        if old is not None:
            old_env = child_env(mode, tmp / "pycache", old)
            plan += [(mode, f"{name}@{ref}", CASES[name], old_env)
                     for name in ("durable", "lambda_module")]
    return plan


def measure(repeats: int, modes: list[str], ref: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="durable-coldstart-") as tmp:
        plan = plan_for(modes, ref, Path(tmp))
        for _mode, _name, code, env in plan:  # warm-up (compiled mode: writes the bytecode)
            once(code, env)
        samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {
            (mode, name): [] for mode, name, _, _ in plan}
        load = os.getloadavg()[0]
        for _ in range(repeats):
            for mode, name, code, env in plan:
                samples[(mode, name)].append(once(code, env))
        load_after = os.getloadavg()[0]
    out: dict[str, Any] = {"benchmark": "coldstart", "repeats": repeats,
                           "target_import_ms": TARGET_MS}
    for mode in modes:
        base_wall = statistics.median(s[1] for s in samples[(mode, "baseline")])
        cases: dict[str, Any] = {}
        for (m, name), rows in samples.items():
            if m != mode:
                continue
            wall = statistics.median(r[1] for r in rows)
            cases[name] = {
                "import_ms": summary([r[0] for r in rows]),
                "process_ms": summary([r[1] for r in rows]),
                "cpu_ms": summary([r[2] for r in rows]),
                "process_over_baseline_ms": round(wall - base_wall, 1),
                "process_ratio_vs_baseline": round(wall / base_wall, 2),
            }
        durable = cases["durable"]["import_ms"]["median"]
        handler = cases["lambda_module"]["import_ms"]["median"]
        out[mode] = {"durable_import_ms": durable, "lambda_module_import_ms": handler,
                     "target_met": durable < TARGET_MS and handler < TARGET_MS, "cases": cases}
        if ref is not None:  # how many times longer the import took at `ref`
            out[mode]["ref_over_now"] = {
                name: round(cases[f"{name}@{ref}"]["import_ms"]["median"]
                            / cases[name]["import_ms"]["median"], 2)
                for name in ("durable", "lambda_module")}
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                      "load_avg_1m": [round(load, 2), round(load_after, 2)]}
    return out


LABELS = {
    "baseline": "`python -c pass` (baseline)",
    "asyncio": "`import asyncio`",
    "durable": "`import durable`",
    "lambda_module": "examples/serverless/app.py (`durable.lambda_handler`)",
    "lambda_module_first_checkpoint": "the same + its first checkpoint's libraries",
    "lambda_module_first_invocation": "the same + its first invocation's libraries",
    "aws_sdk_module": "AWS's SDK, the same kind of module",
}


def report(result: dict[str, Any]) -> str:
    """The run as Markdown tables, one per mode (what docs/benchmarks.md shows)."""
    out = []
    for mode in ("compiled", "source"):
        if mode not in result:
            continue
        out += [f"{mode}:", "",
                "| case | import ms | min-max | process CPU ms | process over baseline, ms "
                "| process / baseline |", "|---|---|---|---|---|---|"]
        for name, c in result[mode]["cases"].items():
            base, _, ref = name.partition("@")
            label = LABELS[base] + (f", at `{ref}`" if ref else "")
            imp = c["import_ms"]
            out.append(f"| {label} | {imp['median']:.1f} | {imp['min']:.1f}-{imp['max']:.1f} "
                       f"| {c['cpu_ms']['median']:.1f} | {c['process_over_baseline_ms']:.1f} "
                       f"| {c['process_ratio_vs_baseline']:.2f}x |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11,
                        help="fresh processes per case (default 11)")
    parser.add_argument("--modes", default="compiled,source",
                        help="comma-separated: compiled (bytecode cached, as pip installs it), "
                             "source (Durable compiled at every start, as from a zip built "
                             "with --no-compile); default both")
    parser.add_argument("--out", help="also append the JSON line to this file")
    parser.add_argument("--report", metavar="FILE",
                        help="print the last run in FILE as Markdown tables, measure nothing")
    parser.add_argument("--ref", help="also time `import durable` and the Lambda module at "
                                      "this git ref (e.g. main), in the same run")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text().splitlines()[-1])))
        return
    modes = args.modes.split(",")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not modes or set(modes) - {"compiled", "source"}:
        parser.error(f"--modes takes compiled and/or source, not {args.modes!r}")
    line = json.dumps(measure(args.repeats, modes, args.ref))
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
