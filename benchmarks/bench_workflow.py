"""Where the wall time of a workflow run goes, per rule, from Snakemake's `benchmark:` files.

Every rule writes `results/benchmarks/.../<rule>/....tsv` (wall seconds `s` and `cpu_time` of its job). This
script sums them per rule and, with `--run`, first runs the default pipeline from scratch in a fresh clone of
this repository (no `.snakemake/`, no `results/`) and times it, `--repeat` times.

    python benchmarks/bench_workflow.py                       # summarise ./results/benchmarks
    python benchmarks/bench_workflow.py --run --repeat 3      # the README's wall-time figure
    python benchmarks/bench_workflow.py --run --configfile config/before-controls.yaml   # another config

Goal: the default `snakemake --cores all` in <= 480 s on 2 cores.
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


def print_table(table: dict[str, dict[str, float]], wall: float | None, cores: int) -> None:
    total = sum(e["wall_s"] for e in table.values())
    print(f"{'rule':24s} {'jobs':>5s} {'job-s':>8s} {'share':>6s} {'cpu-s':>8s} {'max-s':>7s}")
    for rule, e in sorted(table.items(), key=lambda kv: -kv[1]["wall_s"]):
        print(
            f"{rule:24s} {e['jobs']:5d} {e['wall_s']:8.1f} {e['wall_s'] / total:6.1%} "
            f"{e['cpu_s']:8.1f} {e['max_s']:7.1f}"
        )
    print(f"{'all jobs':24s} {sum(e['jobs'] for e in table.values()):5d} {total:8.1f}")
    if wall is not None:
        print(
            f"wall time {wall:.1f} s on {cores} cores; job-seconds / (cores x wall) = {total / (cores * wall):.1%}"
        )


def fresh_run(cores: str, configfile: str | None = None) -> tuple[float, Path]:
    """Clone this repository into a temporary folder, run `snakemake --cores <cores>` there (with `configfile`,
    a path inside the repository, when given), return the wall time."""
    workdir = Path(tempfile.mkdtemp(prefix="dualmd-bench-"))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(workdir / "p")], check=True)
    project = workdir / "p"
    # the clone's own package, not an editable install of another checkout
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": f"{project / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
    }
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
        print_table(summarise(args.results / "benchmarks"), None, cores)
        return
    walls = []
    for i in range(args.repeat):
        wall, project = fresh_run(args.cores, args.configfile)
        walls.append(wall)
        print(f"run {i + 1}/{args.repeat}: {wall:.1f} s", flush=True)
        print_table(summarise(project / "results/benchmarks"), wall, cores)
        if not args.keep:
            shutil.rmtree(project.parent, ignore_errors=True)
    print(f"wall time over {len(walls)} run(s): min {min(walls):.1f} s, max {max(walls):.1f} s")


if __name__ == "__main__":
    main()
