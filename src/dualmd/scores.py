"""Per-sample attack scores on disk: what an attack writes and what metrics, memorization and the report read.

Torch-free, so that the stages that only read scores start quickly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dualmd.files import atomic_write


@dataclass(frozen=True)
class AttackResult:
    """Per-sample output of one attack run.

    Attributes:
        sample_ids: (N,) int64 ids of the scored samples (secmi_nn and gsa return only their held-out 80 %).
        is_member: (N,) bool ground truth, aligned with `sample_ids`.
        scores: (N,) float64, higher = more likely a member.
        extra: named (N,) arrays aligned with `sample_ids`: per-timestep scores of a sweep ("t20", ...;
            higher = member), per-setting scores of a sweep over strength and queries ("s0.1_q2", `strength_key`)
            or diagnostics such as SecMI's positive round-trip error ("t_error").
        attack: name of the attack that produced the scores.
    """

    sample_ids: np.ndarray
    is_member: np.ndarray
    scores: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    attack: str = ""

    def __post_init__(self) -> None:
        n = len(self.sample_ids)
        for key, arr in {"is_member": self.is_member, "scores": self.scores, **self.extra}.items():
            if np.ndim(arr) != 1 or len(arr) != n:
                raise ValueError(f"AttackResult.{key} has shape {np.shape(arr)}, expected ({n},)")


#: An extra key of a strength sweep: "s<strength>_q<number of queries>".
_STRENGTH_KEY = re.compile(r"s(\d+(?:\.\d+)?(?:e-?\d+)?)_q(\d+)")


def strength_key(strength: float, num_queries: int) -> str:
    """Extra key of the scores at one image-to-image strength and number of queries: (0.1, 2) -> "s0.1_q2" (the
    strength's repr, so that `parse_strength_key` returns it exactly)."""
    return f"s{float(strength)!r}_q{num_queries}"


def parse_strength_key(key: str) -> tuple[float, int] | None:
    """(strength, number of queries) of a `strength_key`; None for any other key."""
    match = _STRENGTH_KEY.fullmatch(key)
    return (float(match.group(1)), int(match.group(2))) if match else None


# --- files --------------------------------------------------------------------------------------------

_EXTRA_PREFIX = "extra/"
_REQUIRED_KEYS = ("sample_id", "is_member", "score")


def save_scores(result: AttackResult, path: str | Path) -> None:
    """Write `result` as an .npz with keys sample_id (N,) int64, is_member (N,) bool, score (N,) float64,
    attack () str and one "extra/<name>" (N,) array per extra entry."""
    arrays: dict[str, np.ndarray] = {
        "sample_id": np.asarray(result.sample_ids, dtype=np.int64),
        "is_member": np.asarray(result.is_member, dtype=bool),
        "score": np.asarray(result.scores, dtype=np.float64),
        "attack": np.array(result.attack),
    }
    arrays.update({_EXTRA_PREFIX + k: np.asarray(v) for k, v in result.extra.items()})
    # a file handle keeps numpy from appending ".npz" to the given path
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_scores(path: str | Path) -> AttackResult:
    """Read a file written by `save_scores`; missing keys or misaligned arrays raise ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"score file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in _REQUIRED_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; has {sorted(data.files)}")
        arrays = {k: data[k] for k in data.files}
    n = len(arrays["sample_id"])
    for key, arr in arrays.items():
        if key != "attack" and (arr.ndim != 1 or len(arr) != n):
            raise ValueError(f"{path}: {key!r} has shape {arr.shape}, expected ({n},) like 'sample_id'")
    extra = {k[len(_EXTRA_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_EXTRA_PREFIX)}
    return AttackResult(
        sample_ids=arrays["sample_id"].astype(np.int64),
        is_member=arrays["is_member"].astype(bool),
        scores=arrays["score"].astype(np.float64),
        extra=extra,
        attack=str(arrays["attack"]) if "attack" in arrays else "",
    )
