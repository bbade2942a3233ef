"""The text-to-image reports: the paper's Table 3 (white-box attacks against the undefended fine-tuned model and
DistillMD, with and without prompt diversification, plus DualMD's teachers), Table 4 (the black-box attack of
Pang & Wang against the samplers: undefended, DualMD, DistillMD) and the Pokemon columns of Table 1 (FID and KID
of each sampler's images generated from training prompts, with the Inception Score and Table 5's CLIP score where
they can be computed, `utility_table`).

The inputs are the metrics files of the evaluate stage (`dualmd.stages.metrics.evaluate`: AUC, ASR and TPR at
each FPR bound with their 95 % bootstrap intervals, `dualmd.metrics.summarize`), one per attack, whose rows name
their target; a target's name says whether it was trained with prompt diversification (`catalog.PD_SUFFIX`).
Pure pandas: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dualmd import catalog
from dualmd.metrics import tpr_key

#: Table 3's rows per attack: target -> method, in report order (DualMD is scored through its teachers).
METHODS = {
    "baseline": "No defense",
    "student": "DistillMD",
    "teacher1": "DualMD teacher 1",
    "teacher2": "DualMD teacher 2",
}
#: Table 4's rows: sampler -> method, in report order.
SAMPLER_METHODS = {"baseline": "No defense", "dualmd": "DualMD", "student": "DistillMD"}
#: Attacks in the paper's order and spelling; others follow under their registry name.
ATTACK_LABELS = {
    "secmi_stat": "SecMI",
    "secmi_nn": "SecMI-NN",
    "pia": "PIA",
    "pian": "PIAN",
    "loss": "Loss",
    "pang_wang": "Pang & Wang",
}


def _base_name(target: str) -> str:
    return target.removesuffix(catalog.PD_SUFFIX) if catalog.target(target).prompt_diversification else target


def table3(metric_files: Sequence[str | Path], methods: dict[str, str] = METHODS) -> pd.DataFrame:
    """One row per (attack, target) of Table 3 (or, with `methods=SAMPLER_METHODS`, Table 4) with its metrics
    and their intervals.

    Args:
        metric_files: evaluate-stage JSON files ({"attack": name, "rows": [{"target": ..., "auc": ...}]}).
        methods: target (without "_pd") -> method label, in report order.
    Returns:
        Columns attack, method, prompt_diversification, target, then the metric columns of the files (auc,
        auc_low, auc_high, asr, ..., tpr_at_fpr_<alpha>..., num_members, num_nonmembers); rows by attack (paper
        order), method, then without before with prompt diversification. Targets outside `methods` are left out.
    """
    rows = []
    for path in metric_files:
        metrics = json.loads(Path(path).read_text())
        for row in metrics["rows"]:
            base = _base_name(row["target"])
            if base not in methods:
                continue
            flat = {k: v for k, v in row.items() if not isinstance(v, dict | list)}
            rows.append(
                {
                    "attack": metrics["attack"],
                    "method": methods[base],
                    "prompt_diversification": catalog.target(row["target"]).prompt_diversification,
                    **flat,
                }
            )
    if not rows:
        raise ValueError(f"no target of {list(methods)} in {[str(p) for p in metric_files]}")
    df = pd.DataFrame(rows)
    attack_rank = {a: i for i, a in enumerate(ATTACK_LABELS)}
    method_rank = {m: i for i, m in enumerate(methods.values())}
    df = df.assign(
        _a=df["attack"].map(lambda a: attack_rank.get(a, len(attack_rank))),
        _m=df["method"].map(method_rank),
    )
    df = df.sort_values(["_a", "attack", "_m", "prompt_diversification"], kind="stable")
    return df.drop(columns=["_a", "_m"]).reset_index(drop=True)


def _cell(row: pd.Series, key: str) -> str:
    value, low, high = row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high")
    if value is None or pd.isna(value):
        return "n/a"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _markdown_rows(table: pd.DataFrame, max_fpr: float) -> list[str]:
    """A row per (attack, method): AUC, ASR and TPR at `max_fpr` with their 95 % intervals for each
    prompt-diversification variant in the table ("w/o PD", "w/ PD")."""
    variants = sorted(table["prompt_diversification"].unique())
    metrics = [("auc", "AUC"), ("asr", "ASR"), (tpr_key(max_fpr), f"TPR@{max_fpr:.0%}FPR")]
    header = ["Attack", "Method"] + [
        f"{label} ({'w/' if pd_ else 'w/o'} PD)" for pd_ in variants for _, label in metrics
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (attack, method), group in table.groupby(["attack", "method"], sort=False):
        by_variant = {bool(r["prompt_diversification"]): r for _, r in group.iterrows()}
        cells = [
            _cell(by_variant[v], key) if v in by_variant else "–" for v in variants for key, _ in metrics
        ]
        lines.append("| " + " | ".join([ATTACK_LABELS.get(attack, attack), method, *cells]) + " |")
    return lines


def table3_markdown(table: pd.DataFrame, max_fpr: float) -> str:
    """Table 3 as Markdown (`_markdown_rows`) with a note on the sets scored."""
    lines = _markdown_rows(table, max_fpr)
    first = table.iloc[0]
    note = (
        f"\n{int(first['num_nonmembers'])} non-members; members: every member for No defense and DistillMD, "
        "each teacher's half for DualMD's teachers. Intervals: 95 % stratified bootstrap. "
        "AUC near 0.5 and a low TPR mean a weaker attack (a better defense). PD: prompt diversification.\n"
    )
    return "# Text-to-image: white-box attacks (paper Table 3)\n\n" + "\n".join(lines) + "\n" + note


def write_table3(
    metric_files: Sequence[str | Path], max_fpr: float, csv: str | Path, markdown: str | Path
) -> None:
    """`table3` as CSV (numbers, one row per attack and target) and Markdown (the paper's layout)."""
    table = table3(metric_files)
    table.to_csv(csv, index=False)
    Path(markdown).write_text(table3_markdown(table, max_fpr))


def table4_markdown(table: pd.DataFrame, max_fpr: float) -> str:
    """Table 4 as Markdown (`_markdown_rows`) with a note on the candidates scored."""
    first = table.iloc[0]
    note = (
        f"\nScored: the candidates outside the labelled slice that fits the two Gaussians ({int(first['num_members'])} "
        f"members, {int(first['num_nonmembers'])} non-members per sampler); each is prompted with its original "
        "caption. Intervals: 95 % stratified bootstrap. AUC near 0.5 and a low TPR mean a weaker attack (a better "
        "defense). PD: prompt diversification.\n"
    )
    rows = "\n".join(_markdown_rows(table, max_fpr))
    return "# Text-to-image: black-box attack of Pang & Wang (paper Table 4)\n\n" + rows + "\n" + note


def write_table4(
    metric_files: Sequence[str | Path], max_fpr: float, csv: str | Path, markdown: str | Path
) -> None:
    """Table 4 (`table3` over the samplers, SAMPLER_METHODS) as CSV and Markdown."""
    table = table3(metric_files, SAMPLER_METHODS)
    table.to_csv(csv, index=False)
    Path(markdown).write_text(table4_markdown(table, max_fpr))


#: Columns of the utility stage's files copied into the utility table after FID and KID.
UTILITY_EXTRA = (
    "kid_se",
    "inception_score",
    "inception_score_std",
    "is_absent_reason",
    "clip_score",
    "clip_score_low",
    "clip_score_high",
    "clip_model",
    "clip_absent_reason",
    "num_images",
    "num_reference",
)


def utility_table(utility_files: Sequence[str | Path]) -> pd.DataFrame:
    """One row per sampler (SAMPLER_METHODS, with and without prompt diversification) of the utility stage's
    files (`dualmd.stages.utility.utility`: FID with its bootstrap interval, KID with its standard error, the
    Inception Score where the feature network has a classifier head, the CLIP score where a CLIP model is
    configured; each absent one with the reason).

    Returns:
        Columns method, prompt_diversification, sampler, fid, fid_low, fid_high, kid, kid_low, kid_high
        (kid -+ 1.96 standard errors), then UTILITY_EXTRA and feature_net; rows in SAMPLER_METHODS order,
        without before with prompt diversification.
    """
    rows = []
    for path in utility_files:
        record = json.loads(Path(path).read_text())
        base = _base_name(record["sampler"])
        if base not in SAMPLER_METHODS:
            continue
        se = record["kid_se"]
        rows.append(
            {
                "method": SAMPLER_METHODS[base],
                "prompt_diversification": catalog.target(record["sampler"]).prompt_diversification,
                **{k: record.get(k) for k in ("sampler", "fid", "fid_low", "fid_high", "kid")},
                "kid_low": record["kid"] - 1.96 * se,
                "kid_high": record["kid"] + 1.96 * se,
                **{k: record.get(k) for k in UTILITY_EXTRA},
                "feature_net": record.get("feature_net"),
            }
        )
    if not rows:
        raise ValueError(f"no sampler of {list(SAMPLER_METHODS)} in {[str(p) for p in utility_files]}")
    df = pd.DataFrame(rows)
    rank = {m: i for i, m in enumerate(SAMPLER_METHODS.values())}
    df = df.assign(_m=df["method"].map(rank)).sort_values(["_m", "prompt_diversification"], kind="stable")
    return df.drop(columns=["_m"]).reset_index(drop=True)


def _inception_score_cell(row: pd.Series) -> str:
    value, std = row.get("inception_score"), row.get("inception_score_std")
    if value is None or pd.isna(value):
        return "absent"
    return f"{value:.2f}" if std is None or pd.isna(std) else f"{value:.2f} ± {std:.2f}"


def _absent_notes(table: pd.DataFrame) -> list[str]:
    """One sentence per metric absent from some row, with each distinct reason the stage gave."""
    notes = []
    for value, reason, label in (
        ("inception_score", "is_absent_reason", "Inception Score"),
        ("clip_score", "clip_absent_reason", "CLIP score"),
    ):
        missing = table[value].isna()
        if missing.any():
            reasons = table.loc[missing, reason].dropna().unique()
            notes.append(f"{label} absent: {'; '.join(reasons) if len(reasons) else 'not computed'}.")
    return notes


def utility_markdown(table: pd.DataFrame) -> str:
    """The utility table as Markdown: FID and KID with their 95 % intervals, the Inception Score (mean ± std
    over splits) and the CLIP score with its 95 % interval per method and variant; absent ones with the reason.
    A stand-in CLIP's score (`dualmd.config.evaluation.is_standin_label`) is headed and captioned as one."""
    from dualmd.config.evaluation import is_standin_label

    clip_model = table["clip_model"].dropna()
    standin = any(map(is_standin_label, clip_model))
    clip_header = "CLIP score (stand-in, not OpenAI's CLIP)" if standin else "CLIP score"
    lines = [f"| Method | PD | FID | KID | IS | {clip_header} |", "|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        pd_ = "w/" if row["prompt_diversification"] else "w/o"
        clip = _cell(row, "clip_score") if pd.notna(row.get("clip_score")) else "absent"
        lines.append(
            f"| {row['method']} | {pd_} | {_cell(row, 'fid')} | {_cell(row, 'kid')} | "
            f"{_inception_score_cell(row)} | {clip} |"
        )
    first = table.iloc[0]
    note = (
        f"\n{int(first['num_images'])} images per sampler, generated from the members' original captions, "
        f"against {int(first['num_reference'])} reference images; features: {first['feature_net']}. FID: 95 % "
        "bootstrap interval over the generated images; KID: +-1.96 jackknife standard errors; lower is better. "
        "IS (higher is better): mean ± std over 10 splits. CLIP score (higher is better): 100 x the mean cosine "
        "of each image's and its prompt's CLIP embeddings, clipped at 0, with its 95 % bootstrap interval"
        + (f" ({clip_model.iloc[0]})" if len(clip_model) else "")
        + ". PD: prompt diversification.\n"
    )
    if standin:
        note += (
            "\nThe CLIP score is the tiny run's stand-in's (`dualmd.text2image.standin_scorers`): a tiny CLIP trained "
            "on the images outside the split and their captions, not comparable with the paper's CLIP ViT-L/14 "
            "numbers.\n"
        )
    absent = _absent_notes(table)
    if absent:
        note += "\n" + " ".join(absent) + "\n"
    return (
        "# Text-to-image: utility of each sampler (paper Table 1, Pokemon)\n\n"
        + "\n".join(lines)
        + "\n"
        + note
    )


def write_utility_table(utility_files: Sequence[str | Path], csv: str | Path, markdown: str | Path) -> None:
    """`utility_table` as CSV and Markdown."""
    table = utility_table(utility_files)
    table.to_csv(csv, index=False)
    Path(markdown).write_text(utility_markdown(table))
