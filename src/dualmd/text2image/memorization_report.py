"""The memorization-on-prompts report (paper §3.6: the shape of Fig. 3 and Table 5) from the per-generation rows
of `dualmd.text2image.prompt_memorization.score_target`, one CSV per target.

* `detector_table`: per target and detector, the AUC with which the detector separates the memorized prompts
  (positive) from the other prompts, with a 95 % bootstrap interval (`dualmd.metrics.bootstrap_ci`: memorized and
  other prompts resampled separately), the counts and each group's median value. A detector's score is "higher =
  more memorized": the negated t-error (SecMI's Eq. 8), the noise magnitude (Wen et al., ICLR 2024) as it is.
* `copy_table`: per target, mitigation (none, or Wen et al.'s inference-time mitigation) and group (memorized,
  other, and all prompts together), the copy rate of the generations under the unconditional workflow's copy
  rule, how often the nearest member is the prompt's own image, the mean distances, and the paper's Table 5:
  the mean copy score in SSCD's form (to the prompt's own image and the largest over the members) and the CLIP
  score of the generations with their prompts, each absent with its reason where no network was given.
* `write_prompt_memorization`: both tables as CSV, a Markdown summary and one histogram per detector (memorized
  vs other prompts, one panel per target). The detectors read the unmitigated generations only.

Pure pandas and matplotlib: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dualmd import catalog
from dualmd.metrics import auc, bootstrap_ci
from dualmd.text2image.memorized import GROUPS

#: Values of the rows' `mitigation` column and their labels (`dualmd.text2image.prompt_memorization`).
MITIGATION_LABELS = {"none": "", "wen": ", Wen et al."}
#: The copy table's groups: each group of prompts, then all of them (Table 5 over every prompt).
COPY_GROUPS = (*GROUPS, "all")

#: Detector -> (label, sign, axis label): the score is sign x the per-prompt value, higher = more memorized.
DETECTORS = {
    "t_error": ("SecMI t-error (Eq. 8)", -1.0, "t-error"),  # memorized pairs have the lower round-trip error
    "noise_magnitude": (
        "text-conditional noise magnitude (Wen et al. 2024)",
        1.0,
        "||eps(x, c) - eps(x, '')||, mean over steps",
    ),
}
#: Targets in report order and their labels (DualMD: the teachers alternating; it has no t-error).
TARGET_LABELS = {
    "baseline": "No defense",
    "teacher1": "DualMD teacher 1",
    "teacher2": "DualMD teacher 2",
    "dualmd": "DualMD",
    "student": "DistillMD",
}
#: Columns of a per-target score file (one row per generation of a prompt).
ROW_COLUMNS = (
    "image_id",
    "group",
    "prompt",
    "generation",
    "mitigation",
    "noise_magnitude",
    "t_error",
    "copy_ratio",
    "is_copy",
    "nearest_member",
    "nearest_distance",
    "own_distance",
    "sscd_own",
    "sscd_max",
    "sscd_nearest_member",
    "clip_cosine",
    "sscd_model",
    "clip_model",
    "sscd_absent_reason",
    "clip_absent_reason",
)


def _rank(target: str) -> tuple[bool, int]:
    """Without before with prompt diversification, then TARGET_LABELS order."""
    spec = catalog.target(target)
    base = target.removesuffix(catalog.PD_SUFFIX) if spec.prompt_diversification else target
    return spec.prompt_diversification, list(TARGET_LABELS).index(base)


def load_rows(score_files: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """Target (file stem) -> its rows, in report order; a file without the score columns raises ValueError."""
    rows = {}
    for path in score_files:
        table = pd.read_csv(path)
        missing = [c for c in ROW_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: not a prompt-memorization score file (no {missing})")
        rows[Path(path).stem] = table
    return dict(sorted(rows.items(), key=lambda item: _rank(item[0])))


def prompt_values(rows: pd.DataFrame) -> pd.DataFrame:
    """Per prompt (image_id): its group and each detector's value (noise magnitude averaged over generations),
    from the unmitigated generations (a mitigation lowers the noise magnitude on purpose)."""
    grouped = rows[rows["mitigation"] == "none"].groupby("image_id", sort=False)
    return pd.DataFrame(
        {
            "group": grouped["group"].first(),
            "t_error": grouped["t_error"].first(),
            "noise_magnitude": grouped["noise_magnitude"].mean(),
        }
    ).reset_index()


def detector_table(rows: Mapping[str, pd.DataFrame], *, num_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per target and detector: auc, auc_low, auc_high (95 % bootstrap), num_memorized, num_other (prompts),
    memorized_median, other_median (the detector's values). A detector without values for a target (the
    t-error of the DualMD pair) gives no row; without resamples (num_bootstrap 0) the interval is NaN."""
    out = []
    for target, table in rows.items():
        values = prompt_values(table)
        is_memorized = (values["group"] == GROUPS[0]).to_numpy()
        for detector, (_name, sign, _axis) in DETECTORS.items():
            value = values[detector].to_numpy(dtype=float)
            if np.isnan(value).all():
                continue
            score = sign * value
            low, high = (
                bootstrap_ci(score, is_memorized, auc, num_bootstrap, seed)
                if num_bootstrap > 0
                else (np.nan, np.nan)
            )
            out.append(
                {
                    "target": target,
                    "detector": detector,
                    "auc": auc(score, is_memorized),
                    "auc_low": low,
                    "auc_high": high,
                    "num_memorized": int(is_memorized.sum()),
                    "num_other": int((~is_memorized).sum()),
                    "memorized_median": float(np.median(value[is_memorized])),
                    "other_median": float(np.median(value[~is_memorized])),
                }
            )
    return pd.DataFrame(out)


def _first(part: pd.DataFrame, column: str) -> str | None:
    """The first value of the rows' text `column` (a reason a score is absent, a network's name), None if none."""
    values = part[column].dropna()
    return str(values.iloc[0]) if len(values) else None


def copy_table(rows: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per target, mitigation and group (COPY_GROUPS): num_prompts, num_generations, copies and copy_rate (the
    copy rule), the rate at which a generation's nearest member is the prompt's own image, mean nearest-member and
    own-image distances; Table 5's sscd_own_mean, sscd_max_mean (copy score in SSCD's form) and clip_score
    (max(100 x mean cosine, 0), `dualmd.clip_score`), NaN where absent, the networks' names (sscd_model,
    clip_model: a stand-in's says so), and sscd_absent_reason and clip_absent_reason (None where present)."""
    from dualmd.clip_score import clip_score

    out = []
    for target, table in rows.items():
        for mitigation in MITIGATION_LABELS:
            mitigated = table[table["mitigation"] == mitigation]
            if mitigated.empty:
                continue
            for group in COPY_GROUPS:
                part = mitigated if group == "all" else mitigated[mitigated["group"] == group]
                sscd_reason = _first(part, "sscd_absent_reason")
                clip_reason = _first(part, "clip_absent_reason")
                out.append(
                    {
                        "target": target,
                        "mitigation": mitigation,
                        "group": group,
                        "num_prompts": int(part["image_id"].nunique()),
                        "num_generations": len(part),
                        "copies": int(part["is_copy"].sum()),
                        "copy_rate": float(part["is_copy"].mean()),
                        "nearest_is_own_rate": float((part["nearest_member"] == part["image_id"]).mean()),
                        "mean_nearest_distance": float(part["nearest_distance"].mean()),
                        "mean_own_distance": float(part["own_distance"].mean()),
                        "sscd_own_mean": np.nan if sscd_reason else float(part["sscd_own"].mean()),
                        "sscd_max_mean": np.nan if sscd_reason else float(part["sscd_max"].mean()),
                        "clip_score": np.nan if clip_reason else clip_score(part["clip_cosine"].to_numpy()),
                        "sscd_model": _first(part, "sscd_model"),
                        "clip_model": _first(part, "clip_model"),
                        "sscd_absent_reason": sscd_reason,
                        "clip_absent_reason": clip_reason,
                    }
                )
    return pd.DataFrame(out)


def _label(target: str, mitigation: str = "none") -> str:
    spec = catalog.target(target)
    base = target.removesuffix(catalog.PD_SUFFIX) if spec.prompt_diversification else target
    pd_label = ", PD" if spec.prompt_diversification else ""
    return TARGET_LABELS[base] + MITIGATION_LABELS[mitigation] + pd_label


def prompt_memorization_markdown(detectors: pd.DataFrame, copies: pd.DataFrame) -> str:
    """Both tables as Markdown: AUC [95 % interval] per detector and target, copy rates per group."""
    lines = ["# Text-to-image: memorization on prompts (paper Fig. 3 and Table 5)", ""]
    lines += ["## Detectors: AUC of memorized vs other prompts [95 % interval]", ""]
    lines += ["| target | " + " | ".join(label for label, _sign, _axis in DETECTORS.values()) + " |"]
    lines += ["|:--" * (len(DETECTORS) + 1) + "|"]
    for target, part in detectors.groupby("target", sort=False):
        cells = []
        for detector in DETECTORS:
            row = part[part["detector"] == detector]
            cells.append(
                "n/a"
                if row.empty
                else "{:.2f} [{:.2f}, {:.2f}]".format(*row.iloc[0][["auc", "auc_low", "auc_high"]])
            )
        lines.append(f"| {_label(str(target))} | " + " | ".join(cells) + " |")
    first = detectors.iloc[0]
    lines += [
        "",
        f"AUC of memorized ({first['num_memorized']}) vs other ({first['num_other']}) training prompts of the same "
        "half, higher score = memorized (t-error negated), 95 % bootstrap interval. DualMD has no t-error: it has "
        "no weights of its own. PD: prompt diversification.",
        "",
        "## Copies of the generations from the prompts",
        "",
        "| target | copy rate, memorized | copy rate, other | nearest = own image, memorized | "
        "nearest = own image, other |",
        "|:--|:--|:--|:--|:--|",
    ]
    for (target, mitigation), part in copies.groupby(["target", "mitigation"], sort=False):
        by_group = part.set_index("group")
        cells = [
            f"{by_group.loc[g, 'copy_rate']:.2f} ({by_group.loc[g, 'copies']}/{by_group.loc[g, 'num_generations']})"
            for g in GROUPS
        ]
        cells += [f"{by_group.loc[g, 'nearest_is_own_rate']:.2f}" for g in GROUPS]
        lines.append(f"| {_label(str(target), str(mitigation))} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Copies of the generations from each prompt under the copy rule of the unconditional workflow (against the "
        "target's members); \"nearest = own image\": the generation's nearest member is the image the prompt "
        "captions. Wen et al.: sampled with their inference-time mitigation.",
        "",
    ]
    return "\n".join(lines + table5_markdown(copies))


def table5_markdown(copies: pd.DataFrame) -> list[str]:
    """The Markdown lines of Table 5 (copy score in SSCD's form and CLIP score per target and mitigation), a score
    that could not be computed shown as "absent" with its reason under the table. Where a stand-in network gave a
    score (`dualmd.config.evaluation.is_standin_label`), its columns and the caption say so."""
    from dualmd.config.evaluation import is_standin_label

    def cell(row: pd.Series, column: str, digits: int) -> str:
        return "absent" if pd.isna(row[column]) else f"{row[column]:.{digits}f}"

    names = {column: copies[column].dropna().unique().tolist() for column in ("sscd_model", "clip_model")}
    standin = {column: any(map(is_standin_label, found)) for column, found in names.items()}
    sscd = "stand-in copy score (not SSCD)" if standin["sscd_model"] else "SSCD"
    clip = "stand-in CLIP score (not OpenAI's CLIP)" if standin["clip_model"] else "CLIP score"
    lines = [
        "## Table 5: copy score and prompt alignment of the generations",
        "",
        f"| target | {sscd} to own image, memorized | {sscd} to own image, other | {sscd} to own image, all | "
        f"{sscd} max over members, all | {clip}, all |",
        "|:--|:--|:--|:--|:--|:--|",
    ]
    reasons: dict[str, str] = {}
    for (target, mitigation), part in copies.groupby(["target", "mitigation"], sort=False):
        by_group = part.set_index("group")
        cells = [cell(by_group.loc[g], "sscd_own_mean", 3) for g in COPY_GROUPS]
        cells += [cell(by_group.loc["all"], "sscd_max_mean", 3), cell(by_group.loc["all"], "clip_score", 2)]
        lines.append(f"| {_label(str(target), str(mitigation))} | " + " | ".join(cells) + " |")
        for name, column in (("SSCD", "sscd_absent_reason"), ("CLIP score", "clip_absent_reason")):
            if not pd.isna(by_group.loc["all", column]):
                reasons[name] = str(by_group.loc["all", column])
    lines += [
        "",
        "Mean over the generations of the descriptor cosine with the prompt's training image and of the largest "
        "cosine over the target's members (lower: fewer copies; the paper's SSCD column), and the CLIP score of "
        "the generations with their prompts (100 x mean cosine; higher: better prompt alignment).",
    ]
    for label, column in (("Copy descriptor", "sscd_model"), ("CLIP model", "clip_model")):
        if names[column]:
            lines.append(f"{label}: {'; '.join(names[column])}.")
    if standin["sscd_model"] or standin["clip_model"]:
        lines.append(
            "Stand-ins (`dualmd.text2image.standin_scorers`) measure the same things on the tiny images; their "
            "values are not comparable with the paper's SSCD and CLIP ViT-L/14 numbers."
        )
    lines += [f"{name} absent: {reason}." for name, reason in reasons.items()]
    return [*lines, ""]


def write_prompt_memorization(
    score_files: Sequence[str | Path],
    *,
    num_bootstrap: int,
    seed: int,
    table: str | Path,
    copies: str | Path,
    markdown: str | Path,
    plots: Mapping[str, str | Path],
) -> None:
    """Detector and copy tables as CSV, their Markdown, and the histogram of each detector in `plots`
    (detector -> PNG path; every detector of DETECTORS needs one)."""
    from dualmd.plots import plot_group_histograms

    rows = load_rows(score_files)
    detectors = detector_table(rows, num_bootstrap=num_bootstrap, seed=seed)
    copy_rows = copy_table(rows)
    detectors.to_csv(table, index=False)
    copy_rows.to_csv(copies, index=False)
    Path(markdown).write_text(prompt_memorization_markdown(detectors, copy_rows))
    for detector, (_name, _sign, axis) in DETECTORS.items():
        panels = {}
        for target, part in rows.items():
            values = prompt_values(part)
            if not values[detector].isna().all():
                panels[_label(target)] = (
                    values[detector].to_numpy(dtype=float),
                    (values["group"] == GROUPS[0]).to_numpy(),
                )
        plot_group_histograms(
            panels, labels=("memorized", "other"), xlabel=axis, out=plots[detector], bins=12
        )
