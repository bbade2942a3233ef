"""Stages of `workflow/rules/evaluate.smk` on memorization: t-error separation per model, copy detection of every
sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.files import write_json
from dualmd.stage import stage


def load_t_errors(score_files: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model (file stem): SecMI's positive t-error (N,) and is_member (N,) from secmi_stat score files."""
    from dualmd.scores import load_scores

    t_errors = {}
    for path in score_files:
        result = load_scores(path)
        if "t_error" not in result.extra:
            raise ValueError(f"{path}: no per-sample t_error (expected a secmi_stat score file)")
        t_errors[Path(path).stem] = (result.extra["t_error"], result.is_member)
    return t_errors


def t_error_summary(t_errors: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Separation AUC and medians of member vs non-member t-error per model."""
    from dualmd.memorization import t_error_separation

    models = [
        {
            "model": model,
            "auc": t_error_separation(t_err[m], t_err[~m]),
            "member_median": float(np.median(t_err[m])),
            "nonmember_median": float(np.median(t_err[~m])),
        }
        for model, (t_err, m) in t_errors.items()
    ]
    return {"models": models}


@stage("t-error")
def t_error(*, scores: list[Path], out: Path, plot: Path) -> None:
    """Member / non-member t-error separation of every model (paper Eq. 8) and the histograms."""
    from dualmd.plots import plot_t_error

    t_errors = load_t_errors(scores)
    write_json(out, t_error_summary(t_errors))
    plot_t_error(t_errors, out=plot)


@stage("copies", config="memorization", sections=("memorization",))
def copies(
    *,
    config: Path,
    images: Path,
    split: Path,
    split_meta: Path,
    targets: dict[str, Path],
    out_dir: Path,
) -> None:
    """Copy detection of each sampler's images (targets: sampler -> samples .npz) against its members, to
    ``<out_dir>/<sampler>.json``, and its `memorization.num_pairs_shown` closest generated / member pairs,
    labelled with their distance and copy ratio, to ``<out_dir>/<sampler>_pairs.png``."""
    from dualmd.data.members import load_split_images, subset_images
    from dualmd.data.splits import load_split
    from dualmd.images import load_samples
    from dualmd.memorization import closest_pairs, copy_detection, pair_labels, pairs_caption
    from dualmd.plots import plot_copy_pairs

    cfg = load_config(config).memorization
    the_split = load_split(split, split_meta)
    dataset = load_split_images(images, the_split)
    for sampler, samples in targets.items():
        members = subset_images(dataset, the_split, catalog.member_subset(sampler))
        generated = load_samples(samples)
        result = copy_detection(
            generated, members, k_nearest=cfg.k_nearest, threshold=cfg.copy_threshold, rule=cfg.copy_rule
        )
        closest = closest_pairs(result, cfg.num_pairs_shown)
        plot_copy_pairs(
            generated[closest[:, 0]],
            members[closest[:, 1]],
            pair_labels(result, closest),
            caption=pairs_caption(result),
            out=out_dir / f"{sampler}_pairs.png",
        )
        write_json(
            out_dir / f"{sampler}.json",
            {
                "sampler": sampler,
                "copy_rate": result["memorization_rate"],
                "rule": result["rule"],
                "threshold": result["threshold"],
                "k_nearest": result["k_nearest"],
                "num_copies": int(result["is_copy"].sum()),
                "num_generated": int(len(generated)),
                "num_members": int(len(members)),
                "median_ratio": float(np.median(result["ratio"])),
                "closest_pairs": closest.tolist(),
            },
        )
