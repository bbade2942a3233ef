"""Figures of the report: ROC curves (log-log), t-error histograms, training loss curves, image grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

if TYPE_CHECKING:
    from torch import Tensor


def plot_roc(roc: pd.DataFrame, *, attack: str, out: str | Path) -> None:
    """One log-log ROC plot with a curve per target (LiRA style: the low-FPR corner is visible).

    Args:
        roc: long table with columns target, fpr, tpr.
        attack: attack name for the title.
        out: PNG path.
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    floor = 1.0
    for _, df in roc.groupby("target", sort=False):
        positive = df["fpr"] > 0
        if positive.any():  # the smallest non-zero FPR is 1 / number of non-members
            floor = min(floor, float(df.loc[positive, "fpr"].min()))
        ax.plot(df["fpr"].clip(lower=1e-4), df["tpr"].clip(lower=1e-4), label=str(df["target"].iloc[0]))
    lo = max(min(floor, 1e-3), 1e-4)
    ax.plot([lo, 1], [lo, 1], "k:", lw=0.8, label="chance")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, 1),
        ylim=(lo, 1.02),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"ROC: {attack}",
    )
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, out)


#: x-axis label of each utility axis of the frontier (`dualmd.frontier.Axis.name`).
AXIS_LABELS = {"heldout": "held-out loss (lower = better)", "fid": "FID (lower = better)"}


def plot_frontier(table: pd.DataFrame, *, tpr_column: str, out: str | Path, columns: int = 4) -> None:
    """Privacy against utility as a grid readable at page width: one panel per attack and utility axis (the
    held-out loss panels first, then the FID ones, each axis starting a row), `columns` panels per row; x the
    utility, y TPR at the FPR bound (log axis), or the AUC where the non-members are too few to resolve that TPR.

    The checkpoints of the undefended model and the model itself are one line in training order; every other
    target is a point; bars are the 95 % intervals. TPR 0 is drawn at the floor of the axis.

    Args:
        table: `dualmd.frontier.frontier_table` rows (target, model, step, axis, utility, attack, <tpr_column>
            and their _low / _high).
        tpr_column: e.g. "tpr_at_fpr_0.01".
        out: PNG path.
        columns: panels per row.
    """
    panels = [] if table.empty else list(dict.fromkeys(zip(table["axis"], table["attack"], strict=True)))
    rows_of = {}  # axis -> its panels, each axis starting a row
    for axis, attack in panels:
        rows_of.setdefault(axis, []).append(attack)
    layout = [
        (axis, attacks[i : i + columns])
        for axis, attacks in rows_of.items()
        for i in range(0, len(attacks), columns)
    ]
    ncols = min(columns, max([len(a) for _, a in layout], default=1))
    fig, grid = plt.subplots(
        max(1, len(layout)), ncols, figsize=(3.3 * ncols, 3.0 * max(1, len(layout))), squeeze=False
    )
    floor = 1e-3
    for row_axes, (axis, attacks) in zip(grid, layout, strict=False):
        for ax in row_axes[len(attacks) :]:
            ax.set_visible(False)
        for ax, attack in zip(row_axes, attacks, strict=False):
            df = table[(table["attack"] == attack) & (table["axis"] == axis)]
            ax.set(xlabel=AXIS_LABELS.get(axis, axis), title=attack)
            if df[tpr_column].notna().any():
                _frontier_panel(ax, df, tpr_column, floor)
                ax.set(yscale="log", ylim=(floor * 0.8, 1.1))
            else:  # no resolvable TPR: the AUC instead
                _frontier_panel(ax, df, "auc", 0.0)
                ax.set(ylim=(0.0, 1.02), title=f"{attack} (AUC)")
            if ax is row_axes[0] or not df[tpr_column].notna().any():
                ax.set_ylabel(
                    tpr_column.replace("tpr_at_fpr_", "TPR @ FPR ") if df[tpr_column].notna().any() else "AUC"
                )
    if layout:
        handles = {}
        for ax in grid.flat:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        fig.legend(
            handles.values(), handles.keys(), fontsize=8, loc="upper center", ncol=min(len(handles), 6)
        )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / max(1, len(layout))))
    _save(fig, out, tight=False)


def _frontier_panel(ax, df: pd.DataFrame, tpr_column: str, floor: float) -> None:
    """One attack on one axis: the undefended curve as a line, every other target as a point with its bars; y is
    column `tpr_column` (its _low / _high the bars), drawn at `floor` where lower."""
    curve = df[df["model"] == "baseline"].sort_values("step", na_position="last")
    ax.plot(curve["utility"], curve[tpr_column].clip(lower=floor), "-o", color="0.4", ms=3, label="baseline")
    for _, row in curve.iterrows():
        ax.annotate(
            str(int(row["step"])) if pd.notna(row["step"]) else "final",
            (row["utility"], max(row[tpr_column], floor)),
            fontsize=6,
        )
    for name, row in df[df["model"] != "baseline"].set_index("target").iterrows():
        y = max(row[tpr_column], floor)
        ax.errorbar(
            row["utility"],
            y,
            xerr=[[row["utility"] - row["utility_low"]], [row["utility_high"] - row["utility"]]],
            yerr=[
                [y - max(row[f"{tpr_column}_low"], floor)],
                [max(row[f"{tpr_column}_high"], floor) - y],
            ],
            fmt="o",
            ms=4,
            capsize=2,
            label=name,
        )


def plot_t_error(t_errors: Mapping[str, tuple[np.ndarray, np.ndarray]], *, out: str | Path) -> None:
    """Histograms of member vs non-member t-error, one panel per model.

    Args:
        t_errors: model -> (t-error (N,), is_member (N,) bool), as `dualmd.pipeline.load_t_errors` returns.
        out: PNG path.
    """
    plot_group_histograms(t_errors, labels=("members", "non-members"), xlabel="t-error", out=out)


def plot_group_histograms(
    values: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    labels: tuple[str, str],
    xlabel: str,
    out: str | Path,
    bins: int = 30,
) -> None:
    """Histograms of one value in two groups, one panel per entry (at most 5 panels a row).

    Args:
        values: panel title -> (values (N,), is_first_group (N,) bool).
        labels: legend of the first group (True) and of the second.
        xlabel: what the values are.
        out: PNG path.
    """
    cols = min(len(values), 5)
    rows = -(-len(values) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (title, (value, first)) in zip(axes.flat, values.items(), strict=False):
        edges = np.histogram_bin_edges(value, bins=bins)
        ax.hist(value[first], bins=edges, alpha=0.6, density=True, label=labels[0])
        ax.hist(value[~first], bins=edges, alpha=0.6, density=True, label=labels[1])
        ax.set(title=title, xlabel=xlabel)
        ax.locator_params(axis="x", nbins=4)  # tiny values (t-errors ~1e-4) need room for their labels
    for ax in list(axes.flat)[len(values) :]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=8)
    _save(fig, out)


def plot_loss_curves(metadata: Sequence[dict], *, out: str | Path) -> None:
    """Training loss per step of every model, on one plot."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for meta in metadata:
        # As in the report's training table, a model without a loss history is left out, not an error.
        curve = np.asarray(meta.get("loss_curve") or [], dtype=float)
        if curve.size:
            ax.plot(curve[:, 0], curve[:, 1], label=meta["model_id"], lw=1)
    ax.set(yscale="log", xlabel="optimiser step", ylabel="loss")
    ax.legend(fontsize=8)
    _save(fig, out)


def save_grid(images: Tensor, out: str | Path, *, nrow: int) -> None:
    """Save images (N, C, H, W) in [-1, 1] as one PNG grid, upscaled so tiny images stay visible."""
    import torch
    from torchvision.utils import make_grid, save_image

    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=1, pad_value=1.0)
    scale = max(1, 256 // max(grid.shape[-1], 1))
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out)


def _save(fig, out: str | Path, *, tight: bool = True) -> None:
    """Write the figure as PNG; `tight`: lay it out first (off when the caller has laid it out itself)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
