"""The copy score of generated images in SSCD's form (Pizzi et al., "A Self-Supervised Descriptor for Image Copy
Detection", CVPR 2022), as Somepalli et al. (2023b) and Wen et al. (ICLR 2024) measure memorization in Stable
Diffusion and the paper's Table 5 reports it: a descriptor network maps each image to a vector, and the score of
a pair is the cosine similarity of the two L2-normalised descriptors (1: the same image up to the
transformations SSCD ignores).

Per generation two scores: **own**, the similarity to the training image of the prompt that made it (Wen et al.'s
`SSCD_sim`), and **max**, the largest similarity to any image of the target's training set (with that image: a
generation may copy another member than its prompt's).

The network is a TorchScript file read from a local path (`memorization.copy_descriptor`; SSCD publishes its
models as TorchScript, e.g. ``sscd_disc_large.torchscript.pt``); nothing is downloaded, and without a path the
score is absent with `NO_DESCRIPTOR_REASON`; ``standin`` names the tiny run's stand-in
(`dualmd.text2image.standin_scorers`), whose scores are labelled as a stand-in's. Its input is prepared as in Wen
et al.'s `measure_SSCD_similarity`: the shorter side resized to 256 (bilinear, antialiased), a centre crop of 224,
values in [-1, 1] (their ``Normalize([0.5], [0.5])`` of [0, 1] pixels); one-channel images are repeated to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dualmd.config.evaluation import STANDIN, STANDIN_DESCRIPTOR_LABEL

#: Why the copy score is absent when no descriptor is configured.
NO_DESCRIPTOR_REASON = (
    "no copy descriptor: memorization.copy_descriptor is not set (a local TorchScript file, e.g. SSCD's "
    "sscd_disc_large.torchscript.pt; nothing is downloaded)"
)
#: Wen et al.'s SSCD input: shorter side resized to RESIZE, then a centre crop of CROP pixels.
RESIZE, CROP = 256, 224


def load_descriptor(path: str | Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript descriptor network at `path`, in eval mode on `device`.

    Raises:
        FileNotFoundError: nothing at `path`; ValueError: the file is not a TorchScript archive.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"memorization.copy_descriptor: {path} is not a file")
    try:
        model = torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise ValueError(f"memorization.copy_descriptor: {path} is not a TorchScript file ({err})") from err
    return model.eval()


def descriptor_name(copy_descriptor: str) -> str:
    """The report's name of the descriptor a `memorization.copy_descriptor` value names: the file's name, or the
    stand-in's label."""
    return STANDIN_DESCRIPTOR_LABEL if copy_descriptor == STANDIN else Path(copy_descriptor).name


def descriptor_inputs(images: Tensor) -> Tensor:
    """Images (N, 1|3, H, W) in [-1, 1] as the descriptor sees them: (N, 3, CROP, CROP) float32 in [-1, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1|3, H, W), got {tuple(images.shape)}")
    x = images.float().expand(-1, 3, -1, -1) if images.shape[1] == 1 else images.float()
    height, width = x.shape[-2:]
    scale = RESIZE / min(height, width)
    size = (max(RESIZE, round(height * scale)), max(RESIZE, round(width * scale)))
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    return x[:, :, top : top + CROP, left : left + CROP].clamp(-1, 1)


@torch.no_grad()
def descriptors(model, images: Tensor, *, batch_size: int = 32, device: str | torch.device = "cpu") -> Tensor:
    """L2-normalised descriptors (N, D) float64 on the CPU of images (N, C, H, W) in [-1, 1].

    Raises:
        ValueError: the network does not return one vector per image.
    """
    out = []
    for start in range(0, len(images), batch_size):
        x = descriptor_inputs(images[start : start + batch_size]).to(device)
        features = model(x)
        if not isinstance(features, Tensor) or features.dim() != 2 or len(features) != len(x):
            shape = tuple(getattr(features, "shape", ()))
            raise ValueError(f"the copy descriptor returned {shape} for {len(x)} images, not (N, D)")
        out.append(torch.nn.functional.normalize(features.double(), dim=1).cpu())
    return torch.cat(out)


def copy_similarities(generated: Tensor, own: Tensor, members: Tensor) -> dict[str, np.ndarray]:
    """The two copy scores of each generation from normalised descriptors.

    Args:
        generated: (G, D) descriptors of the generations; own: (G, D) of each generation's prompt image;
        members: (M, D) of the training set.
    Returns:
        "own" (G,) cosine with the prompt's image, "max" (G,) largest cosine over the members and "nearest"
        (G,) int64 the row of `members` attaining it.
    """
    if own.shape != generated.shape:
        raise ValueError(f"{tuple(own.shape)} prompt images for {tuple(generated.shape)} generations")
    similarity = generated @ members.T  # (G, M)
    best = similarity.max(dim=1)
    return {
        "own": (generated * own).sum(dim=1).numpy(),
        "max": best.values.numpy(),
        "nearest": best.indices.numpy().astype(np.int64),
    }
