"""Figures of the report: ROC curves (log-log), t-error histograms, training loss curves, the closest
generated / member pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dualmd.files import atomic_write  # noqa: E402

if TYPE_CHECKING:
    from torch import Tensor

_DPI = 120  # of every saved figure; `plot_copy_pairs` places its images in pixels at this resolution
_PAIRS_FONT_PT = 8
_LINE_SPACING = 1.3  # between the baselines of a label's lines, in units of the text height
_MARGIN_PX, _GAP_PX, _COL_GAP_PX = 8, 6, 14  # around the figure; between images and text; between pairs


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


def plot_copy_pairs(
    generated: Tensor,
    members: Tensor,
    labels: Sequence[str],
    *,
    caption: str,
    out: str | Path,
    pairs_per_row: int = 4,
    min_image_px: int = 64,
) -> None:
    """Generated images above their nearest members, `pairs_per_row` pairs a row, each pair's label under it.

    Images are placed pixel for pixel (no resampling), enlarged by the whole factor
    `dualmd.images.upscale_factor(H, min_image_px)`: 8 px digits at 8x, 28 px at 3x, 32 px at 2x. 64 px
    rather than the grids' 32 px because a column must be as wide as its label anyway ("ratio = 0.123" is
    about 90 px).
    Every row starts with the names of its two image rows, "generated" and "nearest member".

    Args:
        generated: (P, C, H, W) in [-1, 1], C in {1, 3}.
        members: (P, C, H, W): the nearest member of each generated image.
        labels: P texts ("\n" between lines) printed under the pairs, e.g. `dualmd.memorization.pair_labels`.
        caption: what the labels mean, wrapped to the figure's width under the pairs.
        out: PNG path.
        pairs_per_row: pairs side by side before the figure wraps to a new row.
        min_image_px: smallest side at which an image is shown.
    """
    from dualmd.images import upscale, upscale_factor

    if not (len(generated) == len(members) == len(labels) >= 1):
        raise ValueError(
            f"one label per pair: {len(generated)} generated, {len(members)} members, {len(labels)} labels"
        )
    factor = upscale_factor(min(generated.shape[-2:]), min_image_px)
    tiles = [_rgb_pixels(upscale(batch, factor)) for batch in (generated, members)]  # 2 x (P, h, w, 3)
    fig = plt.figure(dpi=_DPI)
    text = _TextMeasure(fig, _PAIRS_FONT_PT)
    grid = _PairsGrid.fit(text, tiles[0].shape[1:3], labels, caption, pairs_per_row)
    fig.set_size_inches(grid.width / _DPI, grid.height / _DPI)

    def put(s: str, x: float, y_top: float, **kwargs) -> None:  # pixel position from the top-left corner
        fig.text(x / grid.width, 1 - y_top / grid.height, s, fontsize=_PAIRS_FONT_PT, va="top", **kwargs)

    for row in range(grid.num_rows):
        for name, y in zip(("generated", "nearest member"), grid.image_tops(row), strict=True):
            put(name, grid.left - _GAP_PX, y + (grid.h - text.line_height) / 2, ha="right")
    for i, label in enumerate(labels):
        x, tops = grid.column_left(i), grid.image_tops(i // pairs_per_row)
        for tile, y in zip(tiles, tops, strict=True):
            # figimage places whole pixels, counted from the bottom-left corner
            fig.figimage(
                tile[i], xo=x + (grid.col_w - grid.w) // 2, yo=grid.height - y - grid.h, origin="upper"
            )
        put(label, x + grid.col_w / 2, tops[1] + grid.h + _GAP_PX, ha="center", linespacing=_LINE_SPACING)
    put("\n".join(grid.caption_lines), _MARGIN_PX, grid.caption_top, linespacing=_LINE_SPACING)
    _save(fig, out)


@dataclass(frozen=True)
class _PairsGrid:
    """Where `plot_copy_pairs` puts things, in pixels from the figure's top-left corner.

    Each row of pairs: the generated images, under them their nearest members, under those the labels; the row
    names ("nearest member" the widest) in a left column; the caption under all rows.
    """

    h: int  # shown image height
    w: int  # shown image width
    col_w: int  # one pair's column: the image or its widest label line
    row_h: int
    left: int  # x of the first column
    num_cols: int
    num_rows: int
    pairs_per_row: int
    caption_lines: tuple[str, ...]
    line_height: int

    @classmethod
    def fit(
        cls,
        text: _TextMeasure,
        image_hw: tuple[int, int],
        labels: Sequence[str],
        caption: str,
        pairs_per_row: int,
    ) -> _PairsGrid:
        h, w = image_hw
        col_w = max(w, *(text.width(line) for label in labels for line in label.split("\n")))
        num_cols = min(len(labels), pairs_per_row)
        left = _MARGIN_PX + max(text.width("generated"), text.width("nearest member")) + _GAP_PX
        width = left + num_cols * col_w + (num_cols - 1) * _COL_GAP_PX + _MARGIN_PX
        return cls(
            h=h,
            w=w,
            col_w=col_w,
            row_h=2 * h + 2 * _GAP_PX + max(label.count("\n") + 1 for label in labels) * text.line_height,
            left=left,
            num_cols=num_cols,
            num_rows=-(-len(labels) // pairs_per_row),
            pairs_per_row=pairs_per_row,
            caption_lines=tuple(text.wrap(caption, width - 2 * _MARGIN_PX)),
            line_height=text.line_height,
        )

    @property
    def width(self) -> int:
        return self.left + self.num_cols * self.col_w + (self.num_cols - 1) * _COL_GAP_PX + _MARGIN_PX

    @property
    def caption_top(self) -> int:
        return _MARGIN_PX + self.num_rows * (self.row_h + _COL_GAP_PX)

    @property
    def height(self) -> int:
        return self.caption_top + len(self.caption_lines) * self.line_height + _MARGIN_PX

    def column_left(self, pair: int) -> int:
        return self.left + (pair % self.pairs_per_row) * (self.col_w + _COL_GAP_PX)

    def image_tops(self, row: int) -> tuple[int, int]:
        """Top edges of the generated and of the member images in `row`."""
        top = _MARGIN_PX + row * (self.row_h + _COL_GAP_PX)
        return top, top + self.h + _GAP_PX


class _TextMeasure:
    """Widths and line height of text in pixels, as `fig` will draw it at `size_pt`."""

    def __init__(self, fig, size_pt: float) -> None:
        from matplotlib.font_manager import FontProperties

        self._renderer = fig.canvas.get_renderer()
        self._font = FontProperties(size=size_pt)
        # "lp" spans ascent to descent; matplotlib spaces lines by a multiple of it (an upper bound here)
        _, lp_height, _ = self._renderer.get_text_width_height_descent("lp", self._font, ismath=False)
        self.line_height = int(np.ceil(_LINE_SPACING * lp_height))

    def width(self, line: str) -> int:
        w, _, _ = self._renderer.get_text_width_height_descent(line, self._font, ismath=False)
        return int(np.ceil(w))

    def wrap(self, paragraph: str, width_px: int) -> list[str]:
        """Greedy word wrap to lines no wider than `width_px` (a single longer word keeps its own line)."""
        lines: list[str] = []
        for word in paragraph.split():
            if lines and self.width(f"{lines[-1]} {word}") <= width_px:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        return lines


def _rgb_pixels(images: Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1], C in {1, 3} -> (N, H, W, 3) uint8, grey images repeated to RGB."""
    import torch

    pixels = ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(pixels.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy())


def _save(fig, out: str | Path, *, tight: bool = True) -> None:
    """Lay out `fig` (unless `tight` is False: the caller laid it out) and write it as a PNG, atomically (a killed
    job leaves no half-written figure); close it."""
    if tight:
        fig.tight_layout()
    atomic_write(out, lambda handle: fig.savefig(handle, format="png", dpi=_DPI))
    plt.close(fig)
