"""Regime sweep: how the default experiment's size decides whether "defense vs undefended" means anything.

For each setting (members, training steps, UNet width, learning rate) on the built-in digits, the sweep runs the
package's own stages through `python -m dualmd` (data, split, baseline, both teachers, DistillMD student,
held-out loss, white-box attacks) in a folder of its own, with the default config for every other key, and prints
one row per setting:

* held-out loss (the report's utility axis) of the baseline and the student, and their ratio;
* AUC of the loss, SecMI-stat and PIA attacks on the baseline and on the student, with the baseline's best;
* whether the setting meets the target: student held-out loss within 20 % of the baseline's, and the baseline's
  best white-box AUC >= 0.90 (leakage worth defending against);
* the training time of its four models, one thread each (the bulk of a default run's cost).

Non-members are always 384 images, so AUCs are comparable across settings. The folder keeps every stage's output
(`<out>/<setting>/`); a finished stage is not rerun, so an interrupted sweep continues where it stopped.
Usage: OMP_NUM_THREADS=1 python benchmarks/sweep_regime.py --out sweep --jobs 2 [--setting 256,2400,32x64,1e-3 ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from dualmd import metrics
from dualmd.scores import load_scores

ROOT = Path(__file__).parents[1]
NUM_NONMEMBERS = 384
ATTACKS = ("loss", "secmi_stat", "pia")
MODELS = ("baseline", "student")
#: Settings of the default sweep: (members, steps, block_out_channels, lr); the first is the default run.
DEFAULT_GRID = (
    (128, 1200, (32, 64), 1e-3),
    (128, 2400, (32, 64), 1e-3),
    (256, 1200, (32, 64), 1e-3),
    (256, 2400, (32, 64), 1e-3),
    (256, 2400, (32, 64), 2e-3),
    (512, 2400, (32, 64), 1e-3),
)


@dataclass(frozen=True)
class Setting:
    members: int
    steps: int
    width: tuple[int, ...]
    lr: float

    @classmethod
    def parse(cls, text: str) -> Setting:
        """ "256,2400,32x64,1e-3" -> Setting(256, 2400, (32, 64), 0.001)."""
        members, steps, width, lr = text.split(",")
        return cls(int(members), int(steps), tuple(int(w) for w in width.split("x")), float(lr))

    @property
    def name(self) -> str:
        return f"m{self.members}_s{self.steps}_w{'x'.join(map(str, self.width))}_lr{self.lr:g}"

    def config(self) -> dict:
        """The default config with this setting's keys replaced."""
        cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
        total = self.members + NUM_NONMEMBERS
        cfg["split"].update(num_images=total, member_fraction=self.members / total)
        cfg["train"].update(num_train_steps=self.steps, lr=self.lr)
        cfg["model"]["block_out_channels"] = list(self.width)
        cfg["attack"]["names"] = list(ATTACKS)
        return cfg


def dualmd(*args: str, cwd: Path, log: Path) -> None:
    """Run one stage in `cwd` with one thread, its output in `log`."""
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "dualmd", *args, "--threads", "1"]
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=out)
    if proc.returncode != 0:
        raise RuntimeError(f"`dualmd {' '.join(args)}` failed in {cwd}; see {log}")


def run_setting(setting: Setting, out: Path, jobs: int) -> dict:
    folder = out / setting.name
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(setting.config()))
    common = [
        "--config",
        "config.yaml",
        "--images",
        "images.npz",
        "--split",
        "split.npz",
        "--split-meta",
        "split.json",
    ]
    logs = folder / "logs"
    if not (folder / "split.npz").is_file():
        dualmd(
            "prepare-data",
            "--config",
            "config.yaml",
            "--out",
            "images.npz",
            "--meta",
            "images.json",
            cwd=folder,
            log=logs / "data.log",
        )
        dualmd(
            "split",
            "--config",
            "config.yaml",
            "--images",
            "images.npz",
            "--out",
            "split.npz",
            "--meta",
            "split.json",
            cwd=folder,
            log=logs / "split.log",
        )

    def train(model: str) -> None:
        if not (folder / "models" / model).is_dir():
            args = ["--model", model, "--out", f"models/{model}", "--state-dir", f"state/{model}"]
            dualmd("train", *common, *args, cwd=folder, log=logs / f"{model}.log")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(train, ("teacher1", "teacher2", "baseline")))
    if not (folder / "models/student").is_dir():
        teachers = ["--teachers", "teacher1=models/teacher1", "--teachers", "teacher2=models/teacher2"]
        args = ["--model", "student", *teachers, "--out", "models/student", "--state-dir", "state/student"]
        dualmd("distill", *common, *args, cwd=folder, log=logs / "student.log")
    # each model's own training time (one thread), from its metadata
    train_s = sum(
        json.loads((folder / "models" / m / "metadata.json").read_text())["wall_time_s"]
        for m in ("baseline", "teacher1", "teacher2", "student")
    )
    targets = [arg for m in MODELS for arg in ("--targets", f"{m}=models/{m}")]
    if not (folder / "heldout.json").is_file():
        dualmd(
            "heldout-loss", *common, *targets, "--out", "heldout.json", cwd=folder, log=logs / "heldout.log"
        )

    def attack(name: str) -> None:
        if not all((folder / "scores" / name / f"{m}.npz").is_file() for m in MODELS):
            dualmd(
                "attack",
                "--attack",
                name,
                *common,
                *targets,
                "--out-dir",
                f"scores/{name}",
                cwd=folder,
                log=logs / f"{name}.log",
            )

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(attack, ATTACKS))
    heldout = json.loads((folder / "heldout.json").read_text())["models"]
    row = {
        "members": setting.members,
        "steps": setting.steps,
        "width": "x".join(map(str, setting.width)),
        "lr": setting.lr,
        "train_s": round(train_s),
    }
    for m in MODELS:
        row[f"heldout_{m}"] = round(heldout[m]["mean"], 4)
    row["heldout_ratio"] = round(row["heldout_student"] / row["heldout_baseline"], 3)
    for m in MODELS:
        for a in ATTACKS:
            result = load_scores(folder / "scores" / a / f"{m}.npz")
            row[f"auc_{a}_{m}"] = round(metrics.auc(result.scores, result.is_member), 3)
    row["best_auc_baseline"] = max(row[f"auc_{a}_baseline"] for a in ATTACKS)
    row["meets_target"] = row["heldout_ratio"] <= 1.2 and row["best_auc_baseline"] >= 0.9
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sweep"))
    parser.add_argument("--jobs", type=int, default=2, help="stages run side by side (one thread each)")
    parser.add_argument("--setting", action="append", type=Setting.parse, help="members,steps,WxW,lr")
    args = parser.parse_args()
    settings = args.setting or [Setting(m, s, w, lr) for m, s, w, lr in DEFAULT_GRID]
    rows = []
    for setting in settings:
        t0 = time.perf_counter()
        rows.append(run_setting(setting, args.out.resolve(), args.jobs))
        print(json.dumps({**rows[-1], "wall_s": round(time.perf_counter() - t0)}), flush=True)
    with (args.out / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out / 'sweep.csv'}")


if __name__ == "__main__":
    main()
