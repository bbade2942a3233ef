"""Stage of `workflow/rules/attack.smk`: an attack's metrics with intervals, its ROC curves and their plot."""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.files import write_json
from dualmd.stage import stage


def _sweep(result, cfg) -> dict[str, dict[str, float]]:
    """AUC and TPR at the first FPR bound at each timestep of a sweep (extra arrays named "t<step>"); the TPR is
    NaN when the bound is below 1 / (number of non-members), as in `dualmd.metrics.summarize`."""
    from dualmd.metrics import auc, is_resolvable, tpr_at_fpr, tpr_key

    alpha = cfg.tpr_at_fpr[0]
    resolvable = is_resolvable(alpha, int((~result.is_member).sum()))
    return {
        key[1:]: {
            "auc": auc(values, result.is_member),
            tpr_key(alpha): tpr_at_fpr(values, result.is_member, alpha) if resolvable else float("nan"),
        }
        for key, values in result.extra.items()
        if key.startswith("t") and key[1:].isdigit()
    }


@stage("evaluate", config="metrics", sections=("metrics",))
def evaluate(*, config: Path, attack: str, scores: list[Path], out: Path, roc: Path, plot: Path) -> None:
    """Metrics of one attack on every target (score file stem = target), its ROC curves as one long table,
    and the log-log ROC plot."""
    import pandas as pd

    from dualmd.metrics import roc as roc_curve
    from dualmd.metrics import summarize
    from dualmd.plots import plot_roc
    from dualmd.scores import load_scores

    cfg = load_config(config).metrics
    rows, curves = [], []
    for path in scores:
        target = Path(path).stem
        result = load_scores(path)
        rows.append(
            {
                "target": target,
                **summarize(result.scores, result.is_member, cfg),
                "sweep": _sweep(result, cfg),
            }
        )
        fpr, tpr = roc_curve(result.scores, result.is_member)
        curves.append(pd.DataFrame({"attack": attack, "target": target, "fpr": fpr, "tpr": tpr}))
    table = pd.concat(curves, ignore_index=True)
    write_json(out, {"attack": attack, "rows": rows})
    table.to_csv(roc, index=False)
    plot_roc(table, attack=attack, out=plot)
