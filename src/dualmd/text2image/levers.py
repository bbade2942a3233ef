"""Memory and precision levers of text-to-image training, as diffusers' `train_text_to_image.py` names them.

* `gradient_checkpointing`: the trained UNet recomputes its activations in backward (`enable_gradient_checkpointing`).
* `gradient_accumulation_steps`: `train.batch_size` stays the effective batch; it runs in that many micro-batches
  (`dualmd.train.loop.fit`'s `accumulation_steps`), so the gradient is the big batch's.
* `adam_weight_decay`, `use_8bit_adam`: AdamW with decoupled weight decay, optionally bitsandbytes' 8-bit AdamW
  (CUDA only; refused with the reason where it cannot run). Weight decay 0 without 8-bit keeps the package's Adam.
* `weight_dtype`: dtype of the frozen modules (VAE, text encoder, DistillMD's teachers); the trained UNet stays
  fp32 (its forward follows `train.mixed_precision`). fp16 needs CUDA.
* `allow_tf32`: TF32 matmuls and cuDNN convolutions (Ampere and later GPUs; no effect on the CPU).

Latents and caption states are computed on the training device, in batches of `encode_batch_size`, and cached
on disk (`DiskCache`) under a key of what was encoded and the frozen module's weights and dtype: the models of
one run that train on the same images (a teacher and the student, a model and its prompt-diversified variant)
encode them once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dualmd.config.text2image import Text2ImageConfig
from dualmd.train.checkpoint import run_hash, tensor_sha256

log = logging.getLogger(__name__)

#: The lever keys of the text2image section (their values enter a trained model's run hash and metadata).
LEVER_KEYS = (
    "gradient_checkpointing",
    "gradient_accumulation_steps",
    "adam_weight_decay",
    "use_8bit_adam",
    "weight_dtype",
    "allow_tf32",
    "encode_batch_size",
)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def weight_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype of `text2image.weight_dtype` on `device`; fp16 off CUDA is refused (CPU kernels for
    fp16 convolutions are missing or slow), as `train.mixed_precision: fp16` is."""
    if name not in DTYPES:
        raise ValueError(f"text2image.weight_dtype: {name!r} is not one of {sorted(DTYPES)}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"text2image.weight_dtype: fp16 needs a CUDA device, not {device}; use bf16 or fp32")
    return DTYPES[name]


def apply_tf32(enabled: bool) -> None:
    """Allow TF32 in CUDA matmuls and cuDNN convolutions when `enabled`; otherwise leave PyTorch's defaults."""
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def prepare_unet(unet: nn.Module, cfg: Text2ImageConfig) -> nn.Module:
    """`unet` with gradient checkpointing turned on if the config asks for it (in place; returned for chaining)."""
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet


def optimizer_factory(
    cfg: Text2ImageConfig, *, lr: float, device: torch.device
) -> Callable[[list[Tensor]], torch.optim.Optimizer] | None:
    """What `fit` builds its optimiser with: None (the package's Adam) unless weight decay or 8-bit AdamW is on.

    Raises:
        RuntimeError: use_8bit_adam without bitsandbytes installed or without a CUDA device.
    """
    if cfg.use_8bit_adam:
        AdamW8bit = _bitsandbytes_adamw(device)  # noqa: N806 (a class)
        return lambda params: AdamW8bit(params, lr=lr, weight_decay=cfg.adam_weight_decay)
    if cfg.adam_weight_decay > 0:
        return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=cfg.adam_weight_decay)
    return None


def _bitsandbytes_adamw(device: torch.device) -> Any:
    if device.type != "cuda":
        raise RuntimeError(
            f"text2image.use_8bit_adam: bitsandbytes' 8-bit AdamW runs on CUDA only, and training runs on {device}; "
            "set use_8bit_adam: false"
        )
    try:
        import bitsandbytes
    except ImportError as err:
        raise RuntimeError(
            "text2image.use_8bit_adam: bitsandbytes is not installed (pip install bitsandbytes); "
            "or set use_8bit_adam: false"
        ) from err
    return bitsandbytes.optim.AdamW8bit


def freeze(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """`module` in eval mode without gradients, on `device` in `dtype` (in place)."""
    return module.eval().requires_grad_(False).to(device=device, dtype=dtype)


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of `module`'s first parameter (the dtype its inputs must have)."""
    return next(module.parameters()).dtype


def module_digest(module: nn.Module) -> str:
    """SHA-256 over `module`'s weights (names and values): which frozen module a cached tensor came from."""
    return run_hash({k: tensor_sha256(v) for k, v in module.state_dict().items()})


@contextlib.contextmanager
def bf16_autocast(device: torch.device | str, enabled: bool) -> Iterator[None]:
    """bf16 autocast on `device` when `enabled` (sample / attack `mixed_precision: bf16`), else nothing.

    Raises:
        ValueError: enabled on a device without bf16 (a CUDA GPU older than Ampere, or another device type).
    """
    device = torch.device(device)
    if not enabled:
        yield
        return
    supported = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not supported:
        raise ValueError(f"mixed_precision: bf16 is not supported on {device}; set mixed_precision: 'no'")
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


@dataclass(frozen=True)
class DiskCache:
    """Tensors computed once and kept as `<folder>/<name>-<key>.pt` (a dict of CPU tensors), written atomically
    so that concurrent jobs computing the same entry do not see a partial file."""

    folder: Path

    def path(self, name: str, key: dict[str, Any]) -> Path:
        return Path(self.folder) / f"{name}-{run_hash(key)[:16]}.pt"

    def get(
        self, name: str, key: dict[str, Any], compute: Callable[[], dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """The tensors stored under (name, key), computed by `compute` and stored first if absent."""
        path = self.path(name, key)
        if path.is_file():
            log.info("cache hit: %s", path)
            return torch.load(path, map_location="cpu", weights_only=True)
        value = {k: v.detach().cpu() for k, v in compute().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(value, tmp)
        os.replace(tmp, path)
        log.info("cache written: %s", path)
        return value
