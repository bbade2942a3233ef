"""Stage functions behind the CLI: read a stage's input files, call the library, return or write its outputs.

Which images count as members depends on the target: a teacher's members are its own half, every other model
(and the DualMD sampler, whose teachers together saw all members) uses the whole member set. Non-members are
always the split's non-member set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dualmd.config import TRAIN_SUBSETS, load_config
from dualmd.data.datasets import load_images, to_model_range
from dualmd.data.splits import Split

#: The split subset whose images are the members of each model or sampler.
MEMBER_SUBSET = {**TRAIN_SUBSETS, "student": "members", "dualmd": "members"}


def member_subset(target: str) -> str:
    if target not in MEMBER_SUBSET:
        raise ValueError(f"unknown model or sampler {target!r}; known: {sorted(MEMBER_SUBSET)}")
    return MEMBER_SUBSET[target]


def evaluation_set(
    images_path: str | Path, split: Split, target: str
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Members of `target` followed by the non-members.

    Returns:
        images (M + K, C, H, W) float in [-1, 1], sample_ids (M + K,) dataset indices, is_member (M + K,) bool.
    """
    members, nonmembers = split.subset(member_subset(target)), split.subset("nonmembers")
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError(f"{target}: empty member ({len(members)}) or non-member ({len(nonmembers)}) set")
    ids = np.concatenate([members, nonmembers]).astype(np.int64)
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    return to_model_range(load_dataset(images_path, split)[ids]), ids, is_member


def load_dataset(images_path: str | Path, split: Split) -> np.ndarray:
    """The dataset array, checked against the size the split was made for (a split from another dataset fails)."""
    images = load_images(images_path)
    expected = split.meta.get("num_dataset_images")
    if expected is not None and len(images) != expected:
        raise ValueError(
            f"{images_path} holds {len(images)} images but the split was made for {expected}: "
            "images and split come from different runs"
        )
    return images


def subset_images(data: np.ndarray, split: Split, subset: str, limit: int | None = None) -> torch.Tensor:
    """The first `limit` (default: all) images of one split subset of `data`, (N, C, H, W) in [-1, 1]."""
    return to_model_range(data[split.subset(subset)[:limit]])


# --- training ------------------------------------------------------------------------------------------------


def _probe(data: np.ndarray, split: Split, subset: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `limit` images of the model's members and of the non-members (fixed across models)."""
    return subset_images(data, split, subset, limit), subset_images(data, split, "nonmembers", limit)


def _provenance(split: Split, model_id: str, subset: str) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "subset": subset,
        "subset_sha256": split.sha256(subset),
        "split_fingerprint": split.fingerprint(),
    }


def train_stage(
    *,
    config: str | Path,
    images: str | Path,
    split: Split,
    model_id: str,
    out_dir: str | Path,
    state_dir: str | Path,
    num_threads: int,
) -> dict:
    """Train baseline / teacher1 / teacher2 on its subset and write the model directory."""
    from dualmd.train import train_model

    cfg = load_config(config)
    subset = TRAIN_SUBSETS[model_id]
    data = load_dataset(images, split)
    probe_members, probe_nonmembers = _probe(data, split, subset, cfg.train.probe_num_images)
    return train_model(
        images=subset_images(data, split, subset),
        probe_members=probe_members,
        probe_nonmembers=probe_nonmembers,
        model_cfg=cfg.model,
        diffusion_cfg=cfg.diffusion,
        train_cfg=cfg.train,
        out_dir=Path(out_dir),
        state_dir=Path(state_dir),
        metadata=_provenance(split, model_id, subset),
        num_threads=num_threads,
    )


def distill_stage(
    *,
    config: str | Path,
    images: str | Path,
    split: Split,
    teacher1: str | Path,
    teacher2: str | Path,
    out_dir: str | Path,
    state_dir: str | Path,
    num_threads: int,
) -> dict:
    """DistillMD: check the teachers against the split, then train the student and write its directory."""
    from dualmd.defense.distill import Teacher, distill_student

    cfg = load_config(config)
    data = load_dataset(images, split)
    probe_members, probe_nonmembers = _probe(data, split, "members", cfg.train.probe_num_images)
    return distill_student(
        half1=subset_images(data, split, "half1"),
        half2=subset_images(data, split, "half2"),
        teacher1=Teacher.load(teacher1, weights=cfg.distill.teacher_weights),
        teacher2=Teacher.load(teacher2, weights=cfg.distill.teacher_weights),
        half1_sha256=split.sha256("half1"),
        half2_sha256=split.sha256("half2"),
        split_fingerprint=split.fingerprint(),
        probe_members=probe_members,
        probe_nonmembers=probe_nonmembers,
        model_cfg=cfg.model,
        diffusion_cfg=cfg.diffusion,
        train_cfg=cfg.train,
        distill_cfg=cfg.distill,
        out_dir=Path(out_dir),
        state_dir=Path(state_dir),
        metadata=_provenance(split, "student", "members"),
        num_threads=num_threads,
    )


# --- attacks and metrics -------------------------------------------------------------------------------------


def attack_stage(
    *,
    config: str | Path,
    attack: str,
    images: str | Path,
    split: Split,
    model_id: str,
    model_dir: str | Path | None,
    samples: str | Path | None,
    out: str | Path,
    device: torch.device,
) -> None:
    """Score the members of `model_id` and the non-members with one attack; write the per-sample scores."""
    from dualmd.attacks import (
        attack_model,
        attack_samples,
        build_attack,
        check_model_matches_split,
        save_scores,
    )
    from dualmd.models.adapter import load_metadata, load_predictor
    from dualmd.sample import load_samples

    cfg = load_config(config).attack
    x, ids, is_member = evaluation_set(images, split, model_id)
    if build_attack(attack, cfg).requires == "model":
        if model_dir is None:
            raise ValueError(f"attack {attack!r} is white-box: pass --model")
        subset = member_subset(model_id)
        check_model_matches_split(
            load_metadata(model_dir), expected_subset=subset, expected_sha256=split.sha256(subset)
        )
        predictor, schedule = load_predictor(model_dir, cfg.weights, device)
        result = attack_model(
            attack, cfg, predictor=predictor, schedule=schedule, images=x, sample_ids=ids, is_member=is_member
        )
    else:
        if samples is None:
            raise ValueError(f"attack {attack!r} is black-box: pass --samples")
        result = attack_samples(
            attack, cfg, generated=load_samples(samples), images=x, sample_ids=ids, is_member=is_member
        )
    save_scores(result, out)


def _sweep(result, cfg) -> dict[str, dict[str, float]]:
    """AUC and TPR at the first FPR bound at each timestep of a sweep (extra arrays named "t<step>")."""
    from dualmd.metrics import auc, tpr_at_fpr, tpr_key

    alpha = cfg.tpr_at_fpr[0]
    return {
        key[1:]: {
            "auc": auc(values, result.is_member),
            tpr_key(alpha): tpr_at_fpr(values, result.is_member, alpha),
        }
        for key, values in result.extra.items()
        if key.startswith("t") and key[1:].isdigit()
    }


def evaluate_stage(*, config: str | Path, attack: str, score_files: list[Path]) -> tuple[dict, pd.DataFrame]:
    """Metrics of one attack on every target (file stem = target) and their ROC curves as one long table."""
    from dualmd.attacks import load_scores
    from dualmd.metrics import roc, summarize

    cfg = load_config(config).metrics
    rows, curves = [], []
    for path in score_files:
        target = Path(path).stem
        result = load_scores(path)
        rows.append(
            {
                "target": target,
                **summarize(result.scores, result.is_member, cfg),
                "sweep": _sweep(result, cfg),
            }
        )
        fpr, tpr = roc(result.scores, result.is_member)
        curves.append(pd.DataFrame({"attack": attack, "target": target, "fpr": fpr, "tpr": tpr}))
    return {"attack": attack, "rows": rows}, pd.concat(curves, ignore_index=True)


# --- memorization and utility --------------------------------------------------------------------------------


def load_t_errors(score_files: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model (file stem): SecMI's positive t-error (N,) and is_member (N,) from secmi_stat score files."""
    from dualmd.attacks import load_scores

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


def copies_stage(
    *,
    config: str | Path,
    images: str | Path,
    split: Split,
    samples: str | Path,
    sampler: str,
    pairs_png: str | Path,
) -> dict:
    """Copy detection of one sampler's images against its members; draws the closest pairs."""
    from dualmd.memorization import closest_pairs, copy_detection
    from dualmd.plots import save_grid
    from dualmd.sample import load_samples

    cfg = load_config(config).memorization
    members = subset_images(load_dataset(images, split), split, member_subset(sampler))
    generated = load_samples(samples)
    result = copy_detection(generated, members, k_nearest=cfg.k_nearest, threshold=cfg.copy_threshold)
    pairs = closest_pairs(result, cfg.num_pairs_shown)
    # Two rows per block: generated images above, their nearest members below.
    grid = torch.cat([generated[pairs[:, 0]], members[pairs[:, 1]]])
    save_grid(grid, pairs_png, nrow=len(pairs))
    return {
        "sampler": sampler,
        "copy_rate": result["memorization_rate"],
        "threshold": result["threshold"],
        "k_nearest": result["k_nearest"],
        "num_copies": int(result["is_copy"].sum()),
        "num_generated": int(len(generated)),
        "num_members": int(len(members)),
        "median_ratio": float(np.median(result["ratio"])),
        "closest_pairs": pairs.tolist(),
    }


def reference_stage(
    *, config: str | Path, images: str | Path, split: Split, out: str | Path, device: torch.device
) -> None:
    """Features of every member image under the configured FID network, saved once for all samplers."""
    from dualmd.utility import ReferenceStats, compute_features, feature_net_name, save_reference

    cfg = load_config(config).utility
    members = subset_images(load_dataset(images, split), split, "members")
    features = compute_features(members, cfg, device)
    save_reference(out, ReferenceStats.from_features(features, feature_net_name(cfg, device)))


def utility_stage(
    *,
    config: str | Path,
    reference: str | Path,
    samples: str | Path,
    info: str | Path,
    sampler: str,
    device: torch.device,
) -> dict:
    """FID / IS of one sampler's images against the member features, with the sampler's settings."""
    import json

    from dualmd.sample import load_samples
    from dualmd.utility import compute_utility, load_reference

    cfg = load_config(config).utility
    sampling = json.loads(Path(info).read_text())
    summary = compute_utility(load_samples(samples), load_reference(reference), cfg, device=device)
    return {
        "sampler": sampler,
        **summary,
        "scheduler": sampling["scheduler"],
        "num_inference_steps": sampling["num_inference_steps"],
    }
