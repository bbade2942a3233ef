"""Stage of `workflow/rules/attack.smk`: an attack's metrics with intervals, its ROC curves and their plot."""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.files import write_json
from dualmd.stage import stage


def _sweep_point(values, is_member, alpha: float) -> dict[str, float]:
    """AUC and TPR at FPR bound `alpha` of one sweep entry; the TPR is NaN when the bound is below
    1 / (number of non-members), as in `dualmd.metrics.summarize`."""
    from dualmd.metrics import auc, is_resolvable, tpr_at_fpr, tpr_key

    resolvable = is_resolvable(alpha, int((~is_member).sum()))
    return {
        "auc": auc(values, is_member),
        tpr_key(alpha): tpr_at_fpr(values, is_member, alpha) if resolvable else float("nan"),
    }


def _sweep(result, cfg) -> dict[str, dict[str, float]]:
    """`_sweep_point` at the first FPR bound at each timestep of a sweep (extra arrays named "t<step>")."""
    return {
        key[1:]: _sweep_point(values, result.is_member, cfg.tpr_at_fpr[0])
        for key, values in result.extra.items()
        if key.startswith("t") and key[1:].isdigit()
    }


def _strength_sweep(result, cfg) -> list[dict[str, float]]:
    """`_sweep_point` of each image-to-image strength and number of queries (extra arrays named by
    `dualmd.scores.strength_key`), in the order the attack wrote them."""
    from dualmd.scores import parse_strength_key

    points = []
    for key, values in result.extra.items():
        setting = parse_strength_key(key)
        if setting is not None:
            point = _sweep_point(values, result.is_member, cfg.tpr_at_fpr[0])
            points.append({"strength": setting[0], "num_queries": setting[1], **point})
    return points


def _halves(result, target: str, the_split, cfg) -> dict:
    """Metrics of D1's members and of D2's, each against every non-member, for DualMD's targets
    (`catalog.reports_halves`); {} for any other target or without a split."""
    import numpy as np

    from dualmd import catalog
    from dualmd.metrics import summarize_halves

    if the_split is None or not catalog.reports_halves(target):
        return {}
    in_half = {
        half: result.is_member & np.isin(result.sample_ids, the_split.subset(half))
        for half in ("half1", "half2")
    }
    return summarize_halves(result.scores, result.is_member, in_half, cfg)


@stage("evaluate", config="metrics", sections=("metrics",))
def evaluate(
    *,
    config: Path,
    attack: str,
    scores: list[Path],
    out: Path,
    roc: Path,
    plot: Path,
    split: Path | None = None,
    split_meta: Path | None = None,
) -> None:
    """Metrics of one attack on every target (score file stem = target), its ROC curves as one long table,
    and the log-log ROC plot.

    Each row holds the metrics (`dualmd.metrics.summarize`), the timestep sweep ("sweep"), the sweep over
    strength and queries ("strength_sweep", when the attack wrote one) and, given the split, DualMD's targets'
    metrics per member half ("halves": "half1" and "half2", each half's members against every non-member).

    Args:
        split, split_meta: the run's split (split.npz and its sidecar), which says which member is in D1 and which
            in D2; without it no row has "halves".
    """
    import pandas as pd

    from dualmd.data.splits import load_split
    from dualmd.metrics import roc as roc_curve
    from dualmd.metrics import summarize
    from dualmd.plots import plot_roc
    from dualmd.scores import load_scores

    cfg = load_config(config).metrics
    the_split = load_split(split, split_meta) if split is not None else None
    rows, curves = [], []
    for path in scores:
        target = Path(path).stem
        result = load_scores(path)
        row = {
            "target": target,
            **summarize(result.scores, result.is_member, cfg),
            "sweep": _sweep(result, cfg),
        }
        if strength_sweep := _strength_sweep(result, cfg):
            row["strength_sweep"] = strength_sweep
        if halves := _halves(result, target, the_split, cfg):
            row["halves"] = halves
        rows.append(row)
        fpr, tpr = roc_curve(result.scores, result.is_member)
        curves.append(pd.DataFrame({"attack": attack, "target": target, "fpr": fpr, "tpr": tpr}))
    table = pd.concat(curves, ignore_index=True)
    write_json(out, {"attack": attack, "rows": rows})
    table.to_csv(roc, index=False)
    plot_roc(table, attack=attack, out=plot)
