"""Mutation testing of the science-critical modules with mutmut 3.

Each module listed in `tools/mutation.toml` is mutated on its own, in a work folder of its own
(`.mutation/<module>/`, a copy of `src/`, `tests/` and `pyproject.toml` with a `[tool.mutmut]` section added), and its
mutants run against that module's tests only. mutmut first runs those tests once to record which test calls which
function, then runs each mutant against the tests that reach the mutated function, in a process forked from a warm
interpreter (no import of torch per mutant). The work folder is kept: a rerun checks the mutants of the functions
that changed since, and the survivors again when a test changed; `--fresh` checks every mutant again (the scores
in docs/testing.md come from fresh runs).

A mutant listed under `[[equivalent]]` in the TOML changes nothing observable; it is reported with its reason and
left out of the score. It is named by its module, function and the source line before and after the mutation,
so the list survives edits elsewhere in the module.

    python tools/mutation.py src/dualmd/replicates.py      # one module; prints its score and survivors
    python tools/mutation.py --all                         # every module in the TOML (hours on 2 cores)
    python tools/mutation.py --all --check                 # exit 1 where a module is under its target
    python tools/mutation.py --all --markdown              # the score table of docs/testing.md

`--check` fails a module whose score is below its group's target, or that has an equivalent entry matching no
mutant (a stale entry is a claim nobody checks).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "mutation.toml"
WORK = ROOT / ".mutation"
#: mutmut's status words; "timeout" and "killed" both mean a test noticed.
KILLED = {"killed", "timeout"}
RESULT_LINE = re.compile(r"^\s*(\S+): (.+)$")


@dataclass(frozen=True)
class Equivalent:
    module: str
    function: str
    before: str
    after: str
    reason: str


@dataclass
class Mutant:
    name: str
    status: str
    function: str = ""
    before: str = ""
    after: str = ""
    diff: str = ""


@dataclass
class Outcome:
    module: str
    group: str
    target: float
    mutants: list[Mutant] = field(default_factory=list)
    equivalent: list[tuple[Mutant, Equivalent]] = field(default_factory=list)
    stale: list[Equivalent] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(m.status in KILLED for m in self.mutants)

    @property
    def survivors(self) -> list[Mutant]:
        return [m for m in self.mutants if m.status not in KILLED]

    @property
    def score(self) -> float:
        """Killed share of the non-equivalent mutants (a mutant no test reaches counts as a survivor)."""
        return self.killed / len(self.mutants) if self.mutants else 1.0

    @property
    def passed(self) -> bool:
        return self.score >= self.target and not self.stale


def load_config(path: Path = CONFIG) -> tuple[dict, dict[str, float], list[Equivalent]]:
    """The modules (path -> {tests, group}), the target of each group and the equivalent mutants."""
    data = tomllib.loads(path.read_text())
    targets = {name: float(group["target"]) for name, group in data["groups"].items()}
    modules = data["modules"]
    for module, spec in modules.items():
        if spec.get("group") not in targets:
            raise SystemExit(
                f"{path}: module {module} has group {spec.get('group')!r}, not one of {sorted(targets)}"
            )
        missing = [p for p in [module, *spec["tests"]] if not (ROOT / p).exists()]
        if missing:
            raise SystemExit(f"{path}: module {module} names files that do not exist: {missing}")
    equivalents = [Equivalent(**entry) for entry in data.get("equivalent", [])]
    for entry in equivalents:
        if entry.module not in modules:
            raise SystemExit(f"{path}: equivalent mutant of {entry.module}, which is not a listed module")
    return modules, targets, equivalents


def prepare(module: str, tests: list[str]) -> Path:
    """The module's work folder with today's sources, tests and a mutmut section naming the module and tests."""
    work = WORK / module.replace("/", "_").removesuffix(".py")
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for folder in ("src", "tests"):
        shutil.rmtree(work / folder, ignore_errors=True)
        shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
    section = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["src"]',
            f"only_mutate = [{module!r}]",
            f"pytest_add_cli_args_test_selection = {tests!r}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
            'process_isolation = "forkserver"',  # torch is not fork-safe once initialised
            "",
        ]
    )
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + section)
    return work


def mutmut(work: Path, *args: str, quiet: bool = True) -> str:
    """Run `mutmut <args>` in `work` with one thread per process; its stdout (raises on failure)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    exe = Path(sys.executable).with_name("mutmut")
    proc = subprocess.run([str(exe), *args], cwd=work, env=env, capture_output=quiet, text=True)
    if proc.returncode != 0:
        detail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:] if quiet else ""
        raise SystemExit(f"`mutmut {' '.join(args)}` failed in {work} (exit {proc.returncode})\n{detail}")
    return proc.stdout or ""


def function_of(name: str) -> str:
    """'dualmd.replicates.x_summarize__mutmut_5' -> 'summarize'; methods 'xǁClassǁmethod__mutmut_2' -> 'Class.method'."""
    last = name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]
    if last.startswith("xǁ"):
        return ".".join(part for part in last.split("ǁ")[1:] if part)
    return last.removeprefix("x_")


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added source lines of a mutant's diff, each stripped and joined by ' / '."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    before = " / ".join(line[1:].strip() for line in lines if line.startswith("-"))
    after = " / ".join(line[1:].strip() for line in lines if line.startswith("+"))
    return before, after


def tests_digest(work: Path) -> str:
    """Digest of every file under the work folder's tests/ (a changed test may kill an earlier survivor)."""
    digest = hashlib.sha256()
    for path in sorted((work / "tests").rglob("*.py")):
        digest.update(str(path.relative_to(work)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def statuses(work: Path) -> dict[str, str]:
    found = (RESULT_LINE.match(line) for line in mutmut(work, "results", "--all", "true").splitlines())
    return {m[1]: m[2].strip() for m in found if m}


def run_module(
    module: str, spec: dict, target: float, equivalents: list[Equivalent], jobs: int, fresh: bool = False
) -> Outcome:
    """Mutate `module`, run its mutants against its tests and sort the survivors from the equivalent ones.

    mutmut keeps a mutant's result until its function changes; when the tests changed since the last run, the
    survivors are run again by name (`fresh` reruns every mutant)."""
    work = prepare(module, spec["tests"])
    if fresh:
        shutil.rmtree(work / "mutants", ignore_errors=True)
    digest, stored = tests_digest(work), work / "tests.sha256"
    checked_before = (work / "mutants").is_dir()
    mutmut(work, "run", "--max-children", str(jobs))
    found = statuses(work)
    survivors = [name for name, status in found.items() if status not in KILLED]
    tests_changed = not stored.is_file() or stored.read_text() != digest
    # "no tests": mutmut's record of which test reaches which function predates the function (one that moved in
    # from another module); recording it again lets those mutants meet the tests that do reach them
    unreached = checked_before and any(found[name] == "no tests" for name in survivors)
    if unreached:
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    if survivors and checked_before and (tests_changed or unreached):
        mutmut(work, "run", "--max-children", str(jobs), *survivors)
    stored.write_text(digest)
    outcome = Outcome(module, spec["group"], target)
    listed = [e for e in equivalents if e.module == module]
    matched: set[Equivalent] = set()
    for name, status in statuses(work).items():
        mutant = Mutant(name, status, function_of(name))
        if mutant.status not in KILLED:
            mutant.diff = mutmut(work, "show", mutant.name).split("\n", 1)[-1]
            mutant.before, mutant.after = changed_lines(mutant.diff)
            entry = next(
                (
                    e
                    for e in listed
                    if (e.function, e.before, e.after) == (mutant.function, mutant.before, mutant.after)
                ),
                None,
            )
            if entry is not None:
                outcome.equivalent.append((mutant, entry))
                matched.add(entry)
                continue
        outcome.mutants.append(mutant)
    outcome.stale = [e for e in listed if e not in matched]
    return outcome


def report(outcome: Outcome) -> None:
    print(
        f"{outcome.module}: {outcome.killed}/{len(outcome.mutants)} killed = {outcome.score:.0%} "
        f"(target {outcome.target:.0%}), {len(outcome.equivalent)} equivalent",
        flush=True,
    )
    for mutant in outcome.survivors:
        print(f"  {mutant.status}: {mutant.name}\n    - {mutant.before}\n    + {mutant.after}")
    for entry in outcome.stale:
        print(f"  stale equivalent entry (matches no surviving mutant): {entry.function}: {entry.before!r}")


def markdown(outcomes: list[Outcome]) -> str:
    """The score table and the equivalent mutants with their reasons, as docs/testing.md shows them."""
    rows = [
        "| module | group | mutants | equivalent | killed | score | target |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        total = len(o.mutants) + len(o.equivalent)
        rows.append(
            f"| `{o.module}` | {o.group} | {total} | {len(o.equivalent)} | {o.killed} | {o.score:.0%} "
            f"| {o.target:.0%} |"
        )
    rows += ["", "| module | function | mutation | why it changes nothing |", "|---|---|---|---|"]
    for o in outcomes:
        for _, e in o.equivalent:
            change = f"`{e.before}` → `{e.after}`".replace("|", "\\|")
            rows.append(
                f"| `{o.module.removeprefix('src/dualmd/')}` | `{e.function}` | {change} | {e.reason} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths as listed in tools/mutation.toml")
    parser.add_argument("--all", action="store_true", help="every module in tools/mutation.toml")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run side by side")
    parser.add_argument("--check", action="store_true", help="exit 1 where a module misses its target")
    parser.add_argument(
        "--fresh", action="store_true", help="run every mutant again, not only the changed ones"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the score table as Markdown at the end"
    )
    args = parser.parse_args(argv)
    modules, targets, equivalents = load_config()
    chosen = list(modules) if args.all else args.modules
    unknown = [m for m in chosen if m not in modules]
    if unknown or not chosen:
        parser.error(f"name modules listed in {CONFIG.relative_to(ROOT)} (or --all); unknown: {unknown}")
    outcomes = []
    for module in chosen:
        spec = modules[module]
        outcome = run_module(module, spec, targets[spec["group"]], equivalents, args.jobs, args.fresh)
        report(outcome)
        outcomes.append(outcome)
    if args.markdown:
        print(markdown(outcomes))
    failed = [o.module for o in outcomes if not o.passed]
    if args.check and failed:
        print(f"under target or with stale equivalent entries: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
