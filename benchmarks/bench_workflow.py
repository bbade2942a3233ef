"""Where the wall time of a workflow run goes, per rule, from Snakemake's `benchmark:` files.

Every rule writes `results/benchmarks/.../<rule>/....tsv` (wall seconds `s` and `cpu_time` of its job). This
script sums them per rule and, with `--run`, first runs the default pipeline from scratch in a fresh clone of
this repository (no `.snakemake/`, no `results/`) and times it, `--repeat` times.

    python benchmarks/bench_workflow.py                       # summarise ./results/benchmarks
    python benchmarks/bench_workflow.py --run --repeat 3      # the wall time in docs/performance.md
    python benchmarks/bench_workflow.py --run --configfile config/before-controls.yaml   # another config
    python benchmarks/bench_workflow.py --run --import-time   # also the seconds each rule's jobs spend importing

With `--import-time` every job runs with PYTHONPROFILEIMPORTTIME=1, so its log (which holds the job's stderr)
lists its imports; the table then adds per rule the seconds spent importing modules, and the run's compute
floor: the job-seconds without those imports, divided by the cores (the wall time if start-up cost nothing and
the cores never idled).

Goals, as ratios that do not depend on the host's speed: the default run's job-seconds at most 20x its mean
`train_model` job, its wall time at most 12x that job.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rule_of(path: Path, benchmarks: Path) -> str:
    """The rule a benchmark file belongs to: the folder after the optional replicate folder."""
    parts = path.relative_to(benchmarks).parts
    parts = parts[1:] if parts[0].startswith("rep") else parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def summarise(benchmarks: Path) -> dict[str, dict[str, float]]:
    """Rule -> {jobs, wall_s, cpu_s, max_s} over every benchmark file under `benchmarks`."""
    table: dict[str, dict[str, float]] = defaultdict(
        lambda: {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "max_s": 0.0}
    )
    for path in sorted(benchmarks.rglob("*.tsv")):
        with path.open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        entry = table[rule_of(path, benchmarks)]
        wall = float(row["s"])
        entry["jobs"] += 1
        entry["wall_s"] += wall
        entry["cpu_s"] += float(row.get("cpu_time") or 0.0)
        entry["max_s"] = max(entry["max_s"], wall)
    return dict(table)


def log_import_seconds(log: Path) -> float:
    """Seconds a job spent importing, from the `-X importtime` lines of its log: the sum of the cumulative times
    of the top-level imports (nested ones are inside them)."""
    total_us = 0
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line.split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # the header line
        if not fields[2].startswith("  "):  # one space before a top-level name, three or more when nested
            total_us += int(fields[1])
    return total_us / 1e6


def import_seconds(logs: Path) -> dict[str, float]:
    """Rule -> seconds its jobs spent importing, over every job log under `logs` (0 where none was profiled)."""
    table: dict[str, float] = defaultdict(float)
    for path in sorted(logs.rglob("*.log")):
        table[rule_of(path, logs)] += log_import_seconds(path)
    return dict(table)


def print_table(
    table: dict[str, dict[str, float]],
    wall: float | None,
    cores: int,
    imports: dict[str, float] | None = None,
) -> None:
    total = sum(e["wall_s"] for e in table.values())
    extra = f" {'import-s':>8s}" if imports is not None else ""
    print(f"{'rule':24s} {'jobs':>5s} {'job-s':>8s} {'share':>6s} {'cpu-s':>8s} {'max-s':>7s}{extra}")
    for rule, e in sorted(table.items(), key=lambda kv: -kv[1]["wall_s"]):
        extra = f" {imports.get(rule, 0.0):8.1f}" if imports is not None else ""
        print(
            f"{rule:24s} {e['jobs']:5d} {e['wall_s']:8.1f} {e['wall_s'] / total:6.1%} "
            f"{e['cpu_s']:8.1f} {e['max_s']:7.1f}{extra}"
        )
    total_imports = sum(imports.get(rule, 0.0) for rule in table) if imports is not None else None
    extra = f" {' ':6s} {' ':8s} {' ':7s} {total_imports:8.1f}" if total_imports is not None else ""
    print(f"{'all jobs':24s} {sum(e['jobs'] for e in table.values()):5d} {total:8.1f}{extra}")
    if wall is not None:
        print(
            f"wall time {wall:.1f} s on {cores} cores; job-seconds / (cores x wall) = {total / (cores * wall):.1%}"
        )
    train = table.get("train_model")
    if train and train["jobs"]:  # ratios to the run's own mean training job: independent of the host's speed
        mean = train["wall_s"] / train["jobs"]
        walls = f", wall / train_model = {wall / mean:.1f}x" if wall is not None else ""
        print(f"mean train_model job {mean:.1f} s; job-seconds / train_model = {total / mean:.1f}x{walls}")
    if total_imports is not None:
        print(
            f"imports {total_imports:.1f} job-s ({total_imports / total:.1%}); compute floor "
            f"(job-s without imports) / {cores} cores = {(total - total_imports) / cores:.1f} s"
        )


def fresh_run(cores: str, configfile: str | None = None, profile_imports: bool = False) -> tuple[float, Path]:
    """Clone this repository into a temporary folder, run `snakemake --cores <cores>` there (with `configfile`,
    a path inside the repository, when given; every job's imports profiled into its log with `profile_imports`),
    return the wall time."""
    workdir = Path(tempfile.mkdtemp(prefix="dualmd-bench-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(workdir / "p")], check=True)
    project = workdir / "p"
    # the clone's own package, not an editable install of another checkout
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": f"{project / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
    }
    if profile_imports:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    command = [sys.executable, "-m", "snakemake", "--cores", cores, "--quiet", "all"]
    if configfile:
        command += ["--configfile", configfile]
    start = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{proc.stderr[-4000:]}")
    return wall, project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder to summarise")
    parser.add_argument(
        "--logs", type=Path, default=Path("logs"), help="job logs of that run (import times, if profiled)"
    )
    parser.add_argument(
        "--import-time", action="store_true", help="profile every job's imports (with --run) and report them"
    )
    parser.add_argument("--run", action="store_true", help="run the default pipeline in a fresh clone first")
    parser.add_argument("--repeat", type=int, default=1, help="fresh runs (with --run)")
    parser.add_argument("--cores", default="all")
    parser.add_argument("--keep", action="store_true", help="keep the fresh clones")
    parser.add_argument(
        "--configfile", help="config file of the run, relative to the repository (default: none)"
    )
    args = parser.parse_args()
    cores = os.cpu_count() if args.cores == "all" else int(args.cores)
    if not args.run:
        imports = import_seconds(args.logs) if args.import_time else None
        print_table(summarise(args.results / "benchmarks"), None, cores, imports)
        return
    walls = []
    for i in range(args.repeat):
        wall, project = fresh_run(args.cores, args.configfile, args.import_time)
        walls.append(wall)
        print(f"run {i + 1}/{args.repeat}: {wall:.1f} s", flush=True)
        imports = import_seconds(project / "logs") if args.import_time else None
        print_table(summarise(project / "results/benchmarks"), wall, cores, imports)
        if not args.keep:
            shutil.rmtree(project.parent, ignore_errors=True)
    print(f"wall time over {len(walls)} run(s): min {min(walls):.1f} s, max {max(walls):.1f} s")


if __name__ == "__main__":
    main()
