"""Resumable training state: one self-describing file per run, replaced atomically.

A state holds everything that decides the rest of a run (model, EMA, optimiser, learning-rate schedule, the
step, the random generators, the loss curve so far) plus `run_hash`, a hash of the resolved config and the
training data. A run resumes only from a state with the same hash; any other state is ignored (and replaced at
the next checkpoint), so changing a hyper-parameter or the split never continues a stale run (nanoGPT-style
checkpoints that describe themselves).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


def tensor_sha256(x: Tensor) -> str:
    """sha256 of a tensor's values (dtype and shape included), e.g. of the training images (N, C, H, W)."""
    x = x.detach().cpu().contiguous()
    h = hashlib.sha256(f"{x.dtype}{tuple(x.shape)}".encode())
    h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()


def run_hash(description: Mapping[str, Any]) -> str:
    """sha256 of a JSON-serialisable description of a run (resolved config, data hashes, teachers...)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def save_state(state_dir: Path, state: dict[str, Any]) -> Path:
    """Write `state` to `state_dir/state.pt` atomically and return the path.

    The new state is written to a temporary file first and then renamed over the old one, so a job killed
    at any moment leaves either the previous complete state or the new one, never a torn file.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    for stale in state_dir.glob(f".{STATE_FILE}.*.tmp"):  # left by a job killed while saving
        stale.unlink(missing_ok=True)
    tmp = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(state_dir: Path, expected_hash: str) -> dict[str, Any] | None:
    """The saved state of this run, or None (logging why) when there is none or it belongs to another run."""
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        # weights_only=False: the state holds RNG byte tensors, lists and floats written by save_state only.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a corrupt state must not stop a fresh start
        log.warning("ignoring unreadable training state %s (%s); starting from step 0", path, err)
        return None
    if state.get("run_hash") != expected_hash:
        log.warning(
            "ignoring training state %s: it was written for another config or data (run hash %s, expected %s);"
            " starting from step 0",
            path,
            str(state.get("run_hash"))[:12],
            expected_hash[:12],
        )
        return None
    log.info("resuming from %s at step %d", path, state["step"])
    return state
