"""Regime sweep: how the experiment's size decides whether "defense vs undefended" means anything.

For each setting (dataset, image size, members, training steps, UNet width, learning rate, random horizontal flip)
the sweep runs the package's own stages through `python -m dualmd` (data, split, baseline, both teachers,
DistillMD student, held-out loss, samples and FID, white-box attacks) in a folder of its own, with the default
config for every other key, and records one row per setting:

* held-out loss (the report's utility axis) of the baseline, both teachers and the student, with 95 % intervals,
  and the ratio student / baseline;
* FID (with its interval) of the baseline, teacher and student samplers on `FID_IMAGES` DDIM samples each,
  against the features of the dataset's images (digits: all 1,797; Fashion-MNIST: the pool the split draws
  from), and the ratio student / baseline;
* AUC (with interval) and TPR at 1 % FPR of the loss, SecMI-stat, PIA and SimA attacks on the baseline and on the
  student, with each model's best AUC;
* whether the setting meets the target: student held-out loss and FID within 20 % of the baseline's, and the
  baseline's best white-box AUC >= 0.90 (leakage worth defending against);
* the training time of its four models and the wall time of every stage, one thread each.

Non-members are always 384 images, so AUCs are comparable across settings. Fashion-MNIST settings draw members
and non-members from the first `FASHION_POOL` images (training-file order), so the settings at one image size
share one FID reference, computed once under `<out>/references/`.

Resumable: the folder keeps every stage's output (`<out>/<setting>/`) and a finished stage is not rerun (an
interrupted training resumes from its saved state); a finished setting keeps its `row.json` and is skipped.
After each setting, `<out>/sweep.csv` is rewritten atomically with the row of every finished setting, so an
interrupted sweep continues where it stopped.

A setting is written `[dataset,][<N>px,]members,steps,WxW,lr[,flip]`, e.g. `fashion_mnist,16px,1024,4800,32x64,
1e-3,flip`; the dataset defaults to digits, the size to the dataset's native one (digits 8, Fashion-MNIST 28).
Usage: OMP_NUM_THREADS=1 python benchmarks/sweep_regime.py --out sweep --jobs 2 [--setting 256,2400,32x64,1e-3 ...]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from dualmd import metrics
from dualmd.config.evaluation import MetricsConfig
from dualmd.files import write_bytes_atomic, write_json
from dualmd.scores import load_scores

ROOT = Path(__file__).parents[1]
NUM_NONMEMBERS = 384
#: Native pixels per side of each dataset (a setting without "<N>px" uses it).
NATIVE_SIZE = {"digits": 8, "fashion_mnist": 28}
#: Fashion-MNIST images a split draws from: the first ones, enough for 4,096 members and the non-members.
FASHION_POOL = 5000
FID_IMAGES = 512  # generated images per sampler for FID (the default run uses 256)
ATTACKS = ("loss", "secmi_stat", "pia", "sima")
MODELS = ("baseline", "teacher1", "teacher2", "student")  # held-out loss and FID
ATTACKED = ("baseline", "student")
TARGET_RATIO = 1.2  # student / baseline held-out loss and FID at most this
TARGET_AUC = 0.9  # the baseline's best white-box AUC at least this
#: Settings of the default sweep, cheapest first. The trailing comment is the estimated CPU time of the setting
#: on one core (about 0.09 s per training step at 8 px, 0.27 s at 16 px, the student 1.3 training steps per step;
#: plus about 5 min of samples, FID and attacks). Two series: digits at 8 px (at most 1,797 images) and
#: Fashion-MNIST at 4,800 steps and 8 px, members 1,024 to 4,096 (images per teacher against utility, epochs
#: against leakage), with and without the paper's flip; two Fashion-MNIST rows at 16 px check the size. About
#: 6.5 CPU-hours in all, with about 0.5 h more for the FID references (Inception runs at ~6 images/s per core).
DEFAULT_GRID = (
    "digits,8px,128,1200,32x64,1e-3",  # the default run; ~13 min
    "fashion_mnist,8px,512,2400,32x64,1e-3",  # 300 epochs; ~21 min
    "digits,8px,512,2400,32x64,1e-3",  # 256 per teacher, 300 epochs; ~21 min
    "digits,8px,512,4800,32x64,1e-3",  # 600 epochs; ~37 min
    "fashion_mnist,8px,1024,4800,32x64,1e-3",  # 300 epochs; ~37 min
    "fashion_mnist,8px,1024,4800,32x64,1e-3,flip",  # ~37 min
    "fashion_mnist,8px,2048,4800,32x64,1e-3",  # 150 epochs; ~37 min
    "fashion_mnist,8px,4096,4800,32x64,1e-3",  # 2,048 per teacher, 75 epochs; ~37 min
    "fashion_mnist,16px,512,2400,32x64,1e-3,flip",  # ~52 min
    "fashion_mnist,16px,1024,2400,32x64,1e-3,flip",  # ~52 min
)
SETTING_SYNTAX = "[dataset,][<N>px,]members,steps,WxW,lr[,flip]"


@dataclass(frozen=True)
class Setting:
    members: int
    steps: int
    width: tuple[int, ...]
    lr: float
    dataset: str = "digits"
    image_size: int = 8
    flip: bool = False

    @classmethod
    def parse(cls, text: str) -> Setting:
        """ "fashion_mnist,16px,1024,4800,32x64,1e-3,flip" -> Setting(1024, 4800, (32, 64), 0.001,
        "fashion_mnist", 16, True); "256,2400,32x64,1e-3" -> digits at 8 px without flip."""
        tokens = text.split(",")
        dataset = tokens.pop(0) if tokens and tokens[0] in NATIVE_SIZE else "digits"
        size = NATIVE_SIZE[dataset]
        if tokens and tokens[0].endswith("px"):
            size = int(tokens.pop(0).removesuffix("px"))
        flip = bool(tokens) and tokens[-1] == "flip"
        if flip:
            tokens.pop()
        if len(tokens) != 4:
            raise argparse.ArgumentTypeError(f"setting {text!r} is not {SETTING_SYNTAX}")
        members, steps, width, lr = tokens
        return cls(
            int(members), int(steps), tuple(int(w) for w in width.split("x")), float(lr), dataset, size, flip
        )

    @property
    def text(self) -> str:
        """The `--setting` string that reruns this setting."""
        flip = ",flip" if self.flip else ""
        core = f"{self.members},{self.steps},{'x'.join(map(str, self.width))},{self.lr:g}"
        return f"{self.dataset},{self.image_size}px,{core}{flip}"

    @property
    def name(self) -> str:
        """Folder name; digits at 8 px without flip keep the earlier sweep's names."""
        core = f"m{self.members}_s{self.steps}_w{'x'.join(map(str, self.width))}_lr{self.lr:g}"
        if (self.dataset, self.image_size, self.flip) == ("digits", 8, False):
            return core
        return f"{self.dataset}_{self.image_size}px_{core}{'_flip' if self.flip else ''}"

    def config(self, feature_net: str = "inception") -> dict:
        """The default config with this setting's keys replaced."""
        cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
        cfg["dataset"].update(name=self.dataset, image_size=self.image_size)
        if self.dataset == "fashion_mnist":
            cfg["dataset"]["max_images"] = FASHION_POOL
        total = self.members + NUM_NONMEMBERS
        cfg["split"].update(num_images=total, member_fraction=self.members / total)
        cfg["train"].update(num_train_steps=self.steps, lr=self.lr, hflip=self.flip)
        cfg["model"]["block_out_channels"] = list(self.width)
        cfg["attack"]["names"] = list(ATTACKS)
        cfg["sample"]["num_images"] = FID_IMAGES
        cfg["utility"].update(num_images=FID_IMAGES, reference="dataset", feature_net=feature_net)
        return cfg


def dualmd(*args: str, cwd: Path, log: Path) -> None:
    """Run one stage in `cwd` with one thread, its output in `log`."""
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "dualmd", *args, "--threads", "1"]
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=out)
    if proc.returncode != 0:
        raise RuntimeError(f"`dualmd {' '.join(args)}` failed in {cwd}; see {log}")


class Stages:
    """Runs the stages of one setting folder, skipping those whose output exists, and times each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.timings_file = folder / "timings.json"
        self.timings = json.loads(self.timings_file.read_text()) if self.timings_file.is_file() else {}
        self.lock = threading.Lock()  # stages may finish side by side (--jobs > 1)

    def run(self, label: str, done: Path | list[Path], *args: str) -> None:
        """Run `dualmd <args>` unless every `done` path exists; its wall time is recorded under `label`."""
        if all(path.exists() for path in (done if isinstance(done, list) else [done])):
            return
        t0 = time.perf_counter()
        dualmd(*args, cwd=self.folder, log=self.logs / f"{label}.log")
        with self.lock:
            self.timings[label] = round(time.perf_counter() - t0, 1)
            write_json(self.timings_file, self.timings)
            print(f"  {self.folder.name}: {label} {self.timings[label]:.0f} s", flush=True)


COMMON = (
    "--config",
    "config.yaml",
    "--images",
    "images.npz",
    "--split",
    "split.npz",
    "--split-meta",
    "split.json",
)


def prepare(stages: Stages, out: Path) -> Path:
    """Data and split; returns the path of the dataset's shared FID reference (computed by `train_all`)."""
    folder = stages.folder
    data = ("--config", "config.yaml")
    stages.run(
        "data", folder / "images.json", "prepare-data", *data, "--out", "images.npz", "--meta", "images.json"
    )
    split = ("--images", "images.npz", "--out", "split.npz", "--meta", "split.json")
    stages.run("split", folder / "split.json", "split", *data, *split)
    meta = json.loads((folder / "images.json").read_text())
    name = meta["dataset"]["name"]
    net = yaml.safe_load((folder / "config.yaml").read_text())["utility"]["feature_net"]
    reference = out / "references" / f"{name}_{meta['shape'][-1]}px_{meta['sha256'][:12]}_{net}.npz"
    reference.parent.mkdir(parents=True, exist_ok=True)
    return reference


def train_all(stages: Stages, reference: Path, jobs: int) -> None:
    """The FID reference (unless another setting made it), both teachers and the baseline, side by side with
    jobs > 1; then the student."""
    folder = stages.folder

    def train(model: str) -> None:
        if model == "reference":
            stages.run("reference", reference, "reference-features", *COMMON, "--out", str(reference))
            return
        args = ("--model", model, "--out", f"models/{model}", "--state-dir", f"state/{model}")
        stages.run(model, folder / "models" / model, "train", *COMMON, *args)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(train, ("reference", "teacher1", "teacher2", "baseline")))
    teachers = ("--teachers", "teacher1=models/teacher1", "--teachers", "teacher2=models/teacher2")
    args = ("--model", "student", *teachers, "--out", "models/student", "--state-dir", "state/student")
    stages.run("student", folder / "models/student", "distill", *COMMON, *args)


def evaluate(stages: Stages, reference: Path, jobs: int) -> None:
    """Held-out loss of every model, samples and FID of every sampler, white-box attacks on baseline and student."""
    folder = stages.folder
    targets = [arg for m in MODELS for arg in ("--targets", f"{m}=models/{m}")]
    stages.run("heldout", folder / "heldout.json", "heldout-loss", *COMMON, *targets, "--out", "heldout.json")

    def fid(model: str) -> None:
        samples = f"samples/{model}"
        files = (
            "--out",
            f"{samples}/samples.npz",
            "--info",
            f"{samples}/info.json",
            "--grid",
            f"{samples}/grid.png",
        )
        sample = ("--config", "config.yaml", "--sampler", model, "--models", f"{model}=models/{model}")
        stages.run(f"sample_{model}", folder / samples / "info.json", "sample", *sample, *files)
        inputs = (
            "--reference",
            str(reference),
            "--samples",
            f"{samples}/samples.npz",
            "--info",
            f"{samples}/info.json",
        )
        args = ("--config", "config.yaml", *inputs, "--sampler", model, "--out", f"utility/{model}.json")
        stages.run(f"fid_{model}", folder / "utility" / f"{model}.json", "utility", *args)

    def attack(name: str) -> None:
        done = [folder / "scores" / name / f"{m}.npz" for m in ATTACKED]
        attacked = [arg for m in ATTACKED for arg in ("--targets", f"{m}=models/{m}")]
        stages.run(name, done, "attack", "--attack", name, *COMMON, *attacked, "--out-dir", f"scores/{name}")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(fid, MODELS))
        list(pool.map(attack, ATTACKS))


def summarize(setting: Setting, folder: Path, timings: dict[str, float]) -> dict:
    """The setting's row: utility and leakage of each model, the ratios and the target check."""
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    row: dict = {"setting": setting.text, "dataset": setting.dataset, "image_size": setting.image_size}
    row |= {"members": setting.members, "steps": setting.steps, "width": "x".join(map(str, setting.width))}
    row |= {"lr": setting.lr, "flip": setting.flip, "feature_net": cfg["utility"]["feature_net"]}
    row["baseline_epochs"] = round(setting.steps * cfg["train"]["batch_size"] / setting.members, 1)
    heldout = json.loads((folder / "heldout.json").read_text())["models"]
    for m in MODELS:
        utility = json.loads((folder / "utility" / f"{m}.json").read_text())
        for key, value in (("mean", "heldout"), ("low", "heldout_low"), ("high", "heldout_high")):
            row[f"{value}_{m}"] = round(heldout[m][key], 5)
        for key in ("fid", "fid_low", "fid_high"):
            row[f"{key}_{m}"] = round(utility[key], 2)
    row["heldout_ratio"] = round(row["heldout_student"] / row["heldout_baseline"], 3)
    row["fid_ratio"] = round(row["fid_student"] / row["fid_baseline"], 3)
    metric_cfg = MetricsConfig.from_mapping({**cfg["metrics"], "tpr_at_fpr": [0.01]})
    for m in ATTACKED:
        for a in ATTACKS:
            result = load_scores(folder / "scores" / a / f"{m}.npz")
            summary = metrics.summarize(result.scores, result.is_member, metric_cfg)
            for key in ("auc", "auc_low", "auc_high"):
                row[f"{key}_{a}_{m}"] = round(summary[key], 3)
            row[f"tpr1_{a}_{m}"] = round(summary[metrics.tpr_key(0.01)], 3)
        row[f"best_auc_{m}"] = max(row[f"auc_{a}_{m}"] for a in ATTACKS)
    row["meets_target"] = bool(
        row["heldout_ratio"] <= TARGET_RATIO
        and row["fid_ratio"] <= TARGET_RATIO
        and row["best_auc_baseline"] >= TARGET_AUC
    )
    train_s = sum(
        json.loads((folder / "models" / m / "metadata.json").read_text())["wall_time_s"] for m in MODELS
    )
    row["train_s"] = round(train_s)
    row["stages_s"] = round(sum(timings.values()))
    return row


def run_setting(setting: Setting, out: Path, jobs: int, feature_net: str = "inception") -> dict:
    """Every stage of one setting (those already done are kept) and its row, stored as `row.json`."""
    folder = out / setting.name
    if (folder / "row.json").is_file():
        return json.loads((folder / "row.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_dump(setting.config(feature_net))
    if (folder / "config.yaml").is_file() and (folder / "config.yaml").read_text() != config:
        raise RuntimeError(
            f"{folder / 'config.yaml'} differs from the setting's config; move the folder away"
        )
    write_bytes_atomic(folder / "config.yaml", config.encode())
    stages = Stages(folder)
    reference = prepare(stages, out)
    train_all(stages, reference, jobs)
    evaluate(stages, reference, jobs)
    row = summarize(setting, folder, stages.timings)
    write_bytes_atomic(folder / "row.json", json.dumps(row, indent=1).encode())  # keys in column order
    return row


def write_table(out: Path, order: list[Setting]) -> Path:
    """Rewrite `<out>/sweep.csv` atomically from every finished setting's row, in `order` first."""
    rows = {path.parent.name: json.loads(path.read_text()) for path in sorted(out.glob("*/row.json"))}
    names = [s.name for s in order if s.name in rows] + [n for n in rows if n not in {s.name for s in order}]
    fields = list(dict.fromkeys(key for n in names for key in rows[n]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows[n] for n in names)
    write_bytes_atomic(out / "sweep.csv", text.getvalue().encode())
    return out / "sweep.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sweep"))
    parser.add_argument("--jobs", type=int, default=2, help="stages run side by side (one thread each)")
    parser.add_argument("--setting", action="append", type=Setting.parse, help=SETTING_SYNTAX)
    parser.add_argument(
        "--feature-net",
        choices=("inception", "pixels"),
        default="inception",
        help="FID features; pixels only checks the sweep quickly (its numbers are not FID)",
    )
    args = parser.parse_args()
    settings = args.setting or [Setting.parse(text) for text in DEFAULT_GRID]
    out = args.out.resolve()
    failed = []
    for setting in settings:
        t0 = time.perf_counter()
        print(f"setting {setting.text} -> {out / setting.name}", flush=True)
        try:
            row = run_setting(setting, out, args.jobs, args.feature_net)
        except RuntimeError as err:  # one failed stage stops its setting, not the sweep
            print(f"FAILED {setting.text}: {err}", flush=True)
            failed.append(setting.text)
            continue
        print(json.dumps({**row, "wall_s": round(time.perf_counter() - t0)}), flush=True)
        print(f"wrote {write_table(out, settings)}", flush=True)
    if failed:
        sys.exit(f"failed settings: {failed}")


if __name__ == "__main__":
    main()
