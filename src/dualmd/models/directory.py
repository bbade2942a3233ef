"""The model directory: the contract between training and every later stage.

    <model>/
        unet/            raw weights       (UNet2DModel.save_pretrained, safetensors)
        unet_ema/        EMA weights       (a plain UNet2DModel too)
        scheduler/       DDPMScheduler.save_pretrained
        metadata.json    provenance (`provenance`), resolved config, loss curve, member/non-member probe
        checkpoints/<step>/   the same layout for the weights kept during training (optional)

Written by `write_model_dir` (atomically: a killed job never leaves a complete-looking directory), read by
`load_unet` / `load_predictor` / `load_metadata`, and checked against the current split by
`check_trained_on` before anything scores a model's members.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from dualmd.data.splits import Split
    from dualmd.models.adapter import Schedule, UNetPredictor

WEIGHT_DIRS = {"raw": "unet", "ema": "unet_ema"}
METADATA = "metadata.json"
CHECKPOINTS = "checkpoints"


def target_dir(name: str, model_dir: str | Path) -> Path:
    """The directory of target `name` given its model's directory: the model itself, or for a checkpoint
    "<name>@<step>" its ``checkpoints/<step>`` (the workflow passes the model directory, which it tracks)."""
    from dualmd.catalog import split_checkpoint

    _, step = split_checkpoint(name)
    return Path(model_dir) if step is None else Path(model_dir) / CHECKPOINTS / str(step)


def provenance(split: Split, model_id: str, subset: str) -> dict[str, Any]:
    """The metadata keys that say which images a model learnt from: its subset of which split."""
    return {
        "model_id": model_id,
        "subset": subset,
        "subset_sha256": split.sha256(subset),
        "split_fingerprint": split.fingerprint(),
    }


def write_model_dir(
    out_dir: Path,
    *,
    unet: UNet2DModel,
    ema_unet: UNet2DModel,
    scheduler: DDPMScheduler,
    metadata: dict[str, Any],
    checkpoints: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Write unet/, unet_ema/, scheduler/ and metadata.json, then move the directory into place.

    `checkpoints` maps a training step to {"unet", "ema_unet", "metadata"} written as ``checkpoints/<step>/``
    with the same scheduler. Everything goes to a temporary sibling first, so a killed job never leaves a
    complete-looking `out_dir`.
    """
    out_dir = Path(out_dir)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # left by a job killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    for folder, parts in [(tmp, {"unet": unet, "ema_unet": ema_unet, "metadata": metadata})] + [
        (tmp / CHECKPOINTS / str(step), parts) for step, parts in (checkpoints or {}).items()
    ]:
        parts["unet"].save_pretrained(folder / WEIGHT_DIRS["raw"])
        parts["ema_unet"].save_pretrained(folder / WEIGHT_DIRS["ema"])
        scheduler.save_pretrained(folder / "scheduler")
        (folder / METADATA).write_text(json.dumps(parts["metadata"], indent=1) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a rerun replaces the old model (Snakemake deletes it beforehand anyway)
    os.replace(tmp, out_dir)


def load_unet(
    model_dir: str | Path, weights: Literal["raw", "ema"] = "ema", device: str | torch.device = "cpu"
) -> UNet2DModel:
    """Load the raw or EMA UNet of a model directory."""
    from diffusers import UNet2DModel

    path = Path(model_dir) / WEIGHT_DIRS[weights]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no {weights} UNet in {model_dir} (expected {path}/config.json)")
    return UNet2DModel.from_pretrained(path).to(device).eval()


def load_schedule(model_dir: str | Path) -> Schedule:
    """The noise schedule a model was trained with (its `scheduler/` folder)."""
    from diffusers import DDPMScheduler

    from dualmd.models.adapter import Schedule

    return Schedule.from_scheduler(DDPMScheduler.from_pretrained(Path(model_dir) / "scheduler"))


def load_predictor(
    model_dir: str | Path,
    weights: Literal["raw", "ema"] = "ema",
    device: str | torch.device = "cpu",
    *,
    compile: bool = False,
    mixed_precision: str = "no",
) -> tuple[UNetPredictor, Schedule]:
    """A trained model as (NoisePredictor, Schedule); `compile`, `mixed_precision` as in `UNetPredictor`."""
    from dualmd.models.adapter import UNetPredictor

    unet = load_unet(model_dir, weights, device)
    return UNetPredictor(unet, compile=compile, mixed_precision=mixed_precision), load_schedule(model_dir)


def load_metadata(model_dir: str | Path) -> dict:
    """The `metadata.json` written next to a model's weights."""
    path = Path(model_dir) / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"model metadata missing: {path}")
    return json.loads(path.read_text())


def check_model_matches_split(model_metadata: dict, *, expected_subset: str, expected_sha256: str) -> None:
    """Raise ValueError unless the model was trained on the split subset whose images are scored as members.

    Args:
        model_metadata: the model's metadata.json (needs "subset" and "subset_sha256").
        expected_subset: "members", "half1" or "half2": the subset whose images are scored as members.
        expected_sha256: `subset_sha256` of that subset's index array in the current split.
    """
    model_id = model_metadata.get("model_id", "<unknown model>")
    missing = [k for k in ("subset", "subset_sha256") if k not in model_metadata]
    if missing:
        raise ValueError(
            f"model {model_id}: metadata lacks {missing}; cannot check which split it was trained on"
        )
    if model_metadata["subset"] != expected_subset:
        raise ValueError(
            f"model {model_id} was trained on subset {model_metadata['subset']!r}, but the attack "
            f"scores subset {expected_subset!r} as members"
        )
    if model_metadata["subset_sha256"] != expected_sha256:
        raise ValueError(
            f"model {model_id} was trained on a different split: its {expected_subset!r} indices have sha256 "
            f"{model_metadata['subset_sha256'][:12]}..., the current split's have {expected_sha256[:12]}...; "
            "retrain the model or use the split it was trained on"
        )


def check_trained_on(model_dir: str | Path, split: Split, subset: str) -> dict:
    """The model's metadata, after checking that it learnt exactly `subset` of `split` (ValueError if not)."""
    metadata = load_metadata(model_dir)
    check_model_matches_split(metadata, expected_subset=subset, expected_sha256=split.sha256(subset))
    return metadata
