"""The regime map's figures and fits, from the `sweep.csv` that `sweep_regime.py` writes.

Two trends, one series per dataset (settings without flip at the dataset's smallest image size):

* the cost of splitting: student / baseline held-out loss and FID against images per teacher (members / 2),
  fitted as `ratio - 1 = c * n^b` (least squares on log-log, rows with ratio > 1);
* the baseline's leak: its best white-box AUC against its epochs (steps * batch / members), fitted as
  `logit(2 * AUC - 1) = a + b * log(epochs)` (AUC clipped to [0.501, 0.999]).

Each fit is read at the paper's regime (12,500 images per teacher; 780,000 steps of batch 128 on 25,000 images,
about 3,994 baseline epochs) and printed with the range of the same reading when one setting is left out. These
readings are extrapolations far outside the measured range, labelled so in the figures and the table.

Several `--sweep` files are read as one table (the union of their rows; a key a file lacks is empty), e.g. a
sweep's own `sweep.csv` and `docs/regime/recorded.csv`, the rows of earlier sweeps whose folders are gone, kept with
only the columns the report reads.

Usage: python benchmarks/regime_report.py --sweep sweep/sweep.csv [--sweep more.csv ...] --figures docs/figures
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PAPER_PER_TEACHER = 12_500
PAPER_EPOCHS = 780_000 * 128 / 25_000
RATIOS = (("heldout_ratio", "held-out loss"), ("fid_ratio", "FID"))


def read_rows(path: Path) -> list[dict]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            try:
                row[key] = float(value)
            except ValueError:
                pass
        row["flip"] = row["flip"] in ("True", "true", 1.0)
        row["per_teacher"] = row["members"] / 2
    return rows


def series(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows without flip at each dataset's smallest measured image size, by dataset."""
    out: dict[str, list[dict]] = {}
    for name in sorted({r["dataset"] for r in rows}):
        own = [r for r in rows if r["dataset"] == name and not r["flip"]]
        size = min(r["image_size"] for r in own) if own else None
        out[name] = [r for r in own if r["image_size"] == size]
    return out


def power_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(c, b) of y = c * x^b on y > 0, or None with fewer than two such points."""
    keep = y > 0
    if keep.sum() < 2 or len(set(x[keep])) < 2:
        return None
    b, log_c = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return math.exp(log_c), b


def logit_fit(x: np.ndarray, auc: np.ndarray) -> tuple[float, float] | None:
    """(a, b) of logit(2 AUC - 1) = a + b log x, or None with fewer than two distinct x."""
    if len(set(x)) < 2:
        return None
    p = np.clip(2 * auc - 1, 0.002, 0.998)
    b, a = np.polyfit(np.log(x), np.log(p / (1 - p)), 1)
    return a, b


def read_power(fit, x: float) -> float:
    return 1 + fit[0] * x ** fit[1]


def read_logit(fit, x: float) -> float:
    z = fit[0] + fit[1] * math.log(x)
    return 0.5 + 0.5 / (1 + math.exp(-z))


def leave_one_out(x, y, fit_fn, read_fn, at: float) -> tuple[float, float] | None:
    readings = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        fit = fit_fn(x[keep], y[keep])
        if fit is not None:
            readings.append(read_fn(fit, at))
    return (min(readings), max(readings)) if readings else None


def describe(fit, readings, loo, unit: str) -> str:
    if fit is None:
        return "too few points to fit"
    spread = f" (leave-one-out {loo[0]:.3g}–{loo[1]:.3g})" if loo else ""
    return f"{readings:.3g}{spread} {unit}".strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sweep",
        type=Path,
        action="append",
        help="a sweep.csv; repeat to combine (default: sweep/sweep.csv)",
    )
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    rows = [row for path in args.sweep or [Path("sweep/sweep.csv")] for row in read_rows(path)]
    settings = [r["setting"] for r in rows]
    repeated = sorted({s for s in settings if settings.count(s) > 1})
    if repeated:
        raise SystemExit(
            f"regime_report: settings appear in more than one --sweep file: {', '.join(repeated)}"
        )
    args.figures.mkdir(parents=True, exist_ok=True)
    by_dataset = series(rows)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, (key, label) in zip(axes, RATIOS, strict=True):
        for name, own in by_dataset.items():
            x = np.array([r["per_teacher"] for r in own])
            y = np.array([r[key] for r in own])
            points = ax.scatter(x, y, label=f"{name} (measured)")
            fit = power_fit(x, y - 1)
            if fit is not None:
                grid = np.geomspace(x.min(), PAPER_PER_TEACHER, 100)
                ax.plot(grid, [read_power(fit, g) for g in grid], "--", color=points.get_facecolor()[0])
                reading = read_power(fit, PAPER_PER_TEACHER)
                loo = leave_one_out(x, y - 1, power_fit, read_power, PAPER_PER_TEACHER)
                print(
                    f"{name}: {label} ratio at {PAPER_PER_TEACHER} per teacher: {describe(fit, reading, loo, '')}"
                )
                print(f"  fit: ratio - 1 = {fit[0]:.3g} * n^{fit[1]:.3f} on {len(x)} settings")
            else:
                print(f"{name}: {label} ratio: too few settings with ratio > 1 to fit")
        ax.axhline(1.2, color="grey", lw=0.8, ls=":", label="target (1.2)")
        ax.axvline(PAPER_PER_TEACHER, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set(xlabel="images per teacher", ylabel=f"student / baseline {label}", title=f"{label} ratio")
        ax.legend(fontsize=7, title="dashed: extrapolation", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(args.figures / "regime_utility.png", dpi=120)

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, own in by_dataset.items():
        x = np.array([r["baseline_epochs"] for r in own])
        auc = np.array([r["best_auc_baseline"] for r in own])
        points = ax.scatter(x, auc, label=f"{name} (measured)")
        fit = logit_fit(x, auc)
        if fit is not None:
            grid = np.geomspace(x.min(), PAPER_EPOCHS, 100)
            ax.plot(grid, [read_logit(fit, g) for g in grid], "--", color=points.get_facecolor()[0])
            reading = read_logit(fit, PAPER_EPOCHS)
            loo = leave_one_out(x, auc, logit_fit, read_logit, PAPER_EPOCHS)
            print(
                f"{name}: baseline best AUC at {PAPER_EPOCHS:.0f} epochs: {describe(fit, reading, loo, '')}"
            )
            print(f"  fit: logit(2 AUC - 1) = {fit[0]:.3g} + {fit[1]:.3f} log(epochs) on {len(x)} settings")
        else:
            print(f"{name}: baseline AUC: too few distinct epochs to fit")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":", label="target (0.90)")
    ax.axvline(PAPER_EPOCHS, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="baseline epochs", ylabel="baseline best white-box AUC", title="baseline leak")
    ax.legend(fontsize=7, title="dashed: extrapolation", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(args.figures / "regime_leak.png", dpi=120)

    print()
    print(
        "| setting | per teacher | epochs | held-out ratio | FID ratio | baseline AUC | student AUC | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| `{r['setting']}` | {r['per_teacher']:.0f} | {r['baseline_epochs']:.0f} | {r['heldout_ratio']:.2f} "
            f"| {r['fid_ratio']:.2f} | {r['best_auc_baseline']:.3f} | {r['best_auc_student']:.3f} "
            f"| {'met' if r['meets_target'] in (True, 'True', 1.0) else 'no'} |"
        )


if __name__ == "__main__":
    main()
