"""Report figures on degenerate inputs: each still writes a readable PNG, and what it draws is checked by hand."""

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
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


RED, BLUE = (255, 0, 0), (0, 0, 255)


def solid(color: tuple[int, int, int], num: int, size_px: int = 8) -> torch.Tensor:
    """`num` images (num, 3, size_px, size_px) of one RGB colour, in [-1, 1]."""
    value = torch.tensor(color, dtype=torch.float32) / 255 * 2 - 1
    return value.view(1, 3, 1, 1).expand(num, 3, size_px, size_px).clone()


def runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    return (edges[1::2] - edges[::2]).tolist()


def test_copy_pairs_show_generated_above_members_at_64_px(tmp_path, figures):
    labels = [f"d = {d:.3f}" for d in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)]
    out = tmp_path / "pairs" / "baseline_pairs.png"
    plots.plot_copy_pairs(solid(RED, 6), solid(BLUE, 6), labels, caption="d: l2 distance.", out=out)
    pixels = np.asarray(_open_png(out).convert("RGB"))
    red, blue = (pixels == RED).all(axis=2), (pixels == BLUE).all(axis=2)
    # 6 pairs, 4 a row: 8 px images enlarged 8x, drawn pixel for pixel (no blurred edges).
    assert red.sum() == blue.sum() == 6 * 64 * 64
    assert runs(red.any(axis=0)) == [64] * 4 and runs(red.any(axis=1)) == [64, 64]  # 4 columns, 2 rows
    assert runs(red[np.flatnonzero(red.any(axis=1))[-1]]) == [64, 64]  # the second row holds pairs 5 and 6
    red_rows, blue_rows = np.flatnonzero(red.any(axis=1)), np.flatnonzero(blue.any(axis=1))
    assert red_rows[0] < blue_rows[0] < red_rows[64] < blue_rows[64]  # generated above its member, per row
    assert (red.any(axis=0) == blue.any(axis=0)).all()  # the member stands right under its generated image
    texts = [t.get_text() for t in figures[0].texts]
    assert labels == [t for t in texts if t.startswith("d = ")]
    assert texts.count("generated") == texts.count("nearest member") == 2 and "d: l2 distance." in texts


def test_copy_pairs_figure_grows_down_not_across_with_more_pairs(tmp_path):
    sizes = {}
    for num_pairs in (1, 4, 5, 16):
        out = tmp_path / f"{num_pairs}.png"
        labels = ["d = 1.000\nratio = 0.500"] * num_pairs
        plots.plot_copy_pairs(solid(RED, num_pairs), solid(BLUE, num_pairs), labels, caption="c", out=out)
        sizes[num_pairs] = _open_png(out).size
    assert sizes[1][0] < sizes[4][0] == sizes[5][0] == sizes[16][0]  # at most 4 pairs a row
    assert sizes[1][1] == sizes[4][1] < sizes[5][1] < sizes[16][1]  # a row more for pairs 5 and 13
    assert sizes[4][0] > sizes[4][1] and sizes[16][1] > sizes[16][0]  # one row is wide, four are tall


def test_copy_pairs_text_stays_inside_the_figure_and_off_the_images(tmp_path, figures):
    labels = ["d = 123.456\nratio = 0.021\ncopy", "d = 0.500\nratio = 0.900"]
    caption = "A caption long enough to need wrapping: " + "word " * 40
    plots.plot_copy_pairs(
        solid(RED, 2, 32), solid(BLUE, 2, 32), labels, caption=caption, out=tmp_path / "p.png"
    )
    fig = figures[0]
    renderer = FigureCanvasAgg(fig).get_renderer()  # closing the figure detached its own canvas
    width, height = fig.bbox.width, fig.bbox.height
    boxes = [(im.ox, im.oy, im.ox + im.get_size()[1], im.oy + im.get_size()[0]) for im in fig.images]
    assert [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes] == [(64, 64)] * 4  # 32 px shown at 64 px
    for text in fig.texts:
        box = text.get_window_extent(renderer)
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, text.get_text()
        for x0, y0, x1, y1 in boxes:
            assert box.x1 <= x0 or box.x0 >= x1 or box.y1 <= y0 or box.y0 >= y1, text.get_text()
    assert len(fig.texts[-1].get_text().split("\n")) > 1  # the caption was wrapped to the figure's width


def test_copy_pairs_need_one_label_per_pair(tmp_path):
    with pytest.raises(ValueError, match="one label per pair"):
        plots.plot_copy_pairs(solid(RED, 2), solid(BLUE, 2), ["d = 1"], caption="", out=tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


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
