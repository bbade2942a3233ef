"""Report figures on degenerate inputs: each still writes a readable PNG, and what it draws is checked by hand."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dualmd import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _open_png(path) -> Image.Image:
    """The PNG at `path`, after checking its signature and that it is a plausible figure size."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    assert all(100 <= side <= 3000 for side in image.size), image.size
    assert np.asarray(image.convert("L")).std() > 0  # something was drawn on the white canvas
    return image


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plot functions save, captured just before it is written and closed."""
    saved = []
    save = plots._save

    def capture(fig, out, **kwargs):
        saved.append(fig)
        save(fig, out, **kwargs)

    monkeypatch.setattr(plots, "_save", capture)
    return saved


@pytest.mark.parametrize(
    ("fpr", "tpr", "lower_limit"),
    [
        # No non-zero FPR to set the floor: the axes start at the default 1e-3.
        ([0.0, 0.0, 0.0], [0.0, 0.5, 1.0], 1e-3),
        ([0.0], [0.0], 1e-3),
        # A single point at FPR 1/5000: the floor goes down to it.
        ([2e-4], [0.5], 2e-4),
        # 1/100000 is below the lowest drawn FPR, 1e-4.
        ([0.0, 1e-5, 1.0], [0.0, 0.5, 1.0], 1e-4),
    ],
    ids=["all_fpr_zero", "single_point_at_origin", "single_point", "fpr_below_1e-4"],
)
def test_roc_of_degenerate_curve_is_a_png_with_log_axes_from_the_floor(
    tmp_path, figures, fpr, tpr, lower_limit
):
    roc = pd.DataFrame({"attack": "loss", "target": "baseline", "fpr": fpr, "tpr": tpr})
    out = tmp_path / "sub" / "roc.png"
    plots.plot_roc(roc, attack="loss", out=out)
    _open_png(out)
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlim() == pytest.approx((lower_limit, 1.0))
    assert ax.get_ylim() == pytest.approx((lower_limit, 1.02))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", "chance"]
    assert ax.get_title() == "ROC: loss"


@pytest.mark.parametrize("value", [0.0, 0.3], ids=["all_zero", "constant"])
def test_t_error_of_constant_values_is_one_full_bin_per_group(tmp_path, figures, value):
    is_member = np.array([True, False, True, False, True, False])
    t_errors = {"teacher1": (np.full(6, value), is_member), "teacher2": (np.full(4, value), is_member[:4])}
    out = tmp_path / "t_error.png"
    plots.plot_t_error(t_errors, out=out)
    image = _open_png(out)
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["teacher1", "teacher2"]
    for ax in axes:
        # numpy widens a zero range to [value - 0.5, value + 0.5]; 30 bins of width 1/30. With density=True all
        # of a group's mass sits in one bin, so that bar is 1 / (1/30) = 30 high, and the others are empty.
        heights = sorted(p.get_height() for p in ax.patches)
        assert len(heights) == 2 * 30
        assert heights[-2:] == pytest.approx([30.0, 30.0]) and heights[:-2] == pytest.approx([0.0] * 58)
        assert ax.get_xlim()[0] <= value - 0.5 and ax.get_xlim()[1] >= value + 0.5
    # One panel per model: the single-model figure is half as wide.
    plots.plot_t_error({"teacher1": t_errors["teacher1"]}, out=tmp_path / "one.png")
    assert _open_png(tmp_path / "one.png").size[0] * 2 == image.size[0]


@pytest.mark.filterwarnings("ignore:No artists with labels found")  # an empty legend is the expected outcome
@pytest.mark.parametrize(
    "metadata",
    [
        [{"model_id": "baseline", "loss_curve": []}],
        [{"model_id": "baseline"}],
        [],
    ],
    ids=["empty_curve", "no_curve_key", "no_models"],
)
def test_loss_curves_without_history_is_an_empty_log_plot(tmp_path, figures, metadata):
    out = tmp_path / "loss.png"
    plots.plot_loss_curves(metadata, out=out)
    _open_png(out)
    (ax,) = figures[0].axes
    assert ax.get_lines() == [] and ax.get_yscale() == "log"


def test_loss_curves_draw_only_models_with_history(tmp_path, figures):
    metadata = [
        {"model_id": "baseline", "loss_curve": []},
        {"model_id": "teacher1", "loss_curve": [[10, 0.5]]},  # a single logged point
    ]
    plots.plot_loss_curves(metadata, out=tmp_path / "loss.png")
    _open_png(tmp_path / "loss.png")
    (line,) = figures[0].axes[0].get_lines()
    assert line.get_label() == "teacher1"
    assert line.get_xdata().tolist() == [10.0] and line.get_ydata().tolist() == [0.5]


def test_grid_of_one_image_maps_minus_one_to_black_and_zero_to_grey(tmp_path):
    image = torch.zeros(1, 1, 8, 8)
    image[..., :4] = -3.0  # clamped to -1 first
    out = tmp_path / "grid" / "one.png"
    plots.save_grid(image, out, nrow=1)
    grid = _open_png(out)
    # torchvision returns a single image without padding: 8 px, upscaled by 256 // 8 = 32.
    assert grid.size == (256, 256)
    pixels = np.asarray(grid.convert("RGB"))
    # Image column 2 (left half, -3 -> -1 -> 0) and column 6 (0 -> 0.5 -> 128), each 32 px wide.
    assert pixels[128, 2 * 32 + 16].tolist() == [0, 0, 0]
    assert pixels[128, 6 * 32 + 16].tolist() == [128, 128, 128]
    assert pixels[0, 255].tolist() == [128, 128, 128]  # no white padding frame around a single image


def test_grid_of_two_images_is_framed_in_white_padding(tmp_path):
    plots.save_grid(torch.full((2, 3, 8, 8), -1.0), tmp_path / "two.png", nrow=2)
    grid = _open_png(tmp_path / "two.png")
    # Two 8 px images in a row, 1 px padding around each: 19 x 10 px, upscaled by 256 // 19 = 13.
    assert grid.size == (19 * 13, 10 * 13)
    pixels = np.asarray(grid.convert("RGB"))
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[5 * 13, 9 * 13 + 6].tolist() == [255, 255, 255]
    assert pixels[5 * 13, 5 * 13].tolist() == [0, 0, 0]


def _frontier_rows(axis, attack):
    """A curve of two checkpoints and the final baseline, and the student, on one axis for one attack."""
    rows = [("baseline@10", "baseline", 10, 2.0, 0.5), ("baseline", "baseline", None, 1.0, 0.2)]
    rows.append(("student", "student", None, 1.5, 0.05))
    return [
        {
            "target": t,
            "model": m,
            "step": s,
            "axis": axis,
            "attack": attack,
            "utility": u,
            "tpr_at_fpr_0.01": y,
        }
        | {"utility_low": u - 0.1, "utility_high": u + 0.1, "tpr_at_fpr_0.01_low": y / 2}
        | {"tpr_at_fpr_0.01_high": min(1.0, 2 * y)}
        for t, m, s, u, y in rows
    ]


def test_frontier_is_a_grid_of_four_columns_with_each_axis_starting_a_row(tmp_path, figures):
    """Five attacks on the held-out axis fill a row of four and one more; the FID axis's two start a row of
    their own. Each panel is titled by its attack and labelled by its axis; unused cells are hidden."""
    heldout = ["loss", "secmi_stat", "pia", "pian", "sima"]
    rows = [r for a in heldout for r in _frontier_rows("heldout", a)]
    rows += [r for a in ("nn_distance", "recon") for r in _frontier_rows("fid", a)]
    out = tmp_path / "frontier.png"
    plots.plot_frontier(pd.DataFrame(rows), tpr_column="tpr_at_fpr_0.01", out=out)
    image = _open_png(out)
    assert image.size == (round(3.3 * 4 * 120), round(3.0 * 3 * 120))  # 4 columns, 3 rows at 120 dpi
    shown = [ax for ax in figures[0].axes if ax.get_visible()]
    assert [(ax.get_title(), ax.get_xlabel()) for ax in shown] == [
        *((a, plots.AXIS_LABELS["heldout"]) for a in heldout),
        *((a, plots.AXIS_LABELS["fid"]) for a in ("nn_distance", "recon")),
    ]
    assert len(figures[0].axes) - len(shown) == 3 + 2  # the rest of the second and third rows
    assert {ax.get_xscale() for ax in shown} == {"linear"}  # a bias-corrected FID interval may reach below 0
    legend = figures[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["baseline", "student"]


def test_a_frontier_of_one_attack_is_one_panel_wide(tmp_path, figures):
    out = tmp_path / "frontier.png"
    plots.plot_frontier(
        pd.DataFrame(_frontier_rows("heldout", "loss")), tpr_column="tpr_at_fpr_0.01", out=out
    )
    assert _open_png(out).size == (round(3.3 * 120), round(3.0 * 120))
    assert len(figures[0].axes) == 1


def test_a_frontier_panel_without_a_resolvable_tpr_shows_the_auc(tmp_path, figures):
    """Too few non-members for the TPR's bound (the column is NaN): the panel plots the AUC on a linear axis."""
    rows = [
        r | {"auc": 0.5 + r["tpr_at_fpr_0.01"] / 2, "auc_low": 0.4, "auc_high": 0.9}
        for r in _frontier_rows("fid", "recon")
    ]
    table = pd.DataFrame(rows).assign(
        **{c: np.nan for c in ("tpr_at_fpr_0.01", "tpr_at_fpr_0.01_low", "tpr_at_fpr_0.01_high")}
    )
    plots.plot_frontier(table, tpr_column="tpr_at_fpr_0.01", out=tmp_path / "f.png")
    (ax,) = figures[0].axes
    assert ax.get_title() == "recon (AUC)" and ax.get_ylabel() == "AUC" and ax.get_yscale() == "linear"
    line = ax.get_lines()[0]  # the undefended curve: baseline@10 then the final baseline
    assert line.get_ydata().tolist() == [0.75, 0.6]
