"""Member / non-member split of a dataset and the two disjoint member halves D1, D2 (paper §3.2).

A split is an artefact: it is made once (`make_split`), saved (`save_split`: an .npz plus a JSON sidecar
with the hash of every subset) and every model and attack reads it back (`load_split`), never re-deriving
it. Subsets are int64 index arrays into the dataset, named "members", "nonmembers", "half1" (D1, teacher 1)
and "half2" (D2, teacher 2). The overlap ablation derives more from these: "half1_ov<p>" is D1 followed by the
first floor(p |D2| / 100) images of D2 (in the split's order), "half2_ov<p>" likewise (p in 1..100). LiRA's
reference models train on "ref<k>" (k >= 1): a random half of the *reference population*, the first 2|members|
dataset images outside the split in a permutation seeded by the split's fingerprint, so no reference model sees a
member or a non-member; "ref<k>_half1" and "ref<k>_half2" split "ref<k>" into two disjoint halves (DistillMD
rebuilt on a reference set). Online LiRA's shadow models train on "shadow<k>": a random half of the candidates
(members and non-members), models 2j - 1 and 2j on complementary halves, so every candidate is in the training set
of exactly K / 2 of K shadow models (K even); "shadow<k>_half1" and "shadow<k>_half2" split "shadow<k>" into two
disjoint halves (DistillMD rebuilt on a shadow set), cut so that every candidate is in half 1 of exactly K / 4 of
the K shadow sets and in half 2 of K / 4 (K a multiple of 4).

Errors: `SplitError` (a ValueError) for every broken invariant, bad or missing file and tampered sidecar.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dualmd.config.sections import SplitConfig
from dualmd.files import write_bytes_atomic

SUBSETS: tuple[str, ...] = ("members", "nonmembers", "half1", "half2")
# Subset name -> array key in the .npz file.
_KEYS = {"members": "member_idx", "nonmembers": "nonmember_idx", "half1": "half1_idx", "half2": "half2_idx"}
_META_KEY = "meta_json"  # the meta dict as a JSON string, so an .npz alone can be re-checked
# Derived subsets of the overlap ablation: a half plus a percentage of the other half.
_OVERLAP = re.compile(r"(half1|half2)_ov(\d{1,3})")
# Training sets of LiRA's reference models: a random half of the reference population.
_REFERENCE = re.compile(r"ref([1-9]\d{0,3})(?:_half([12]))?")
# Training sets of online LiRA's shadow models: a random half of the candidates.
_SHADOW = re.compile(r"shadow([1-9]\d{0,3})(?:_half([12]))?")
# Seed streams after the split's fingerprint: 0 the reference population, k its half k (as first released); these
# tags keep the streams that came later apart from them.
_SHADOW_STREAM, _REFERENCE_HALVES_STREAM, _SHADOW_HALVES_STREAM = 1_000_001, 1_000_002, 1_000_003
# SecMI's split format (mia_evals/member_splits/*.npz).
SECMI_MEMBERS, SECMI_NONMEMBERS = "mia_train_idxs", "mia_eval_idxs"


class SplitError(ValueError):
    """A split breaks an invariant, or a split file is missing, malformed or does not match its sidecar."""


def subset_sha256(idx: np.ndarray) -> str:
    """SHA-256 of an index array as little-endian int64 bytes (the hash models record in metadata)."""
    return hashlib.sha256(np.ascontiguousarray(idx, dtype="<i8").tobytes()).hexdigest()


def _index_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise SplitError(f"{name}: expected a 1-D integer index array, got {array.dtype} {array.shape}")
    array = array.astype(np.int64)  # a copy, so the caller's array cannot change the split
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Split:
    """Four index arrays into a dataset of meta["num_dataset_images"] images.

    Attributes:
        member_idx: (M,) int64, images the undefended baseline trains on.
        nonmember_idx: (K,) int64, held-out images.
        half1_idx: (M // 2,) int64, D1 (teacher 1).
        half2_idx: (M - M // 2,) int64, D2 (teacher 2).
        meta: provenance (source, seed, half_seed, member_fraction, num_dataset_images, ...).
    """

    member_idx: np.ndarray
    nonmember_idx: np.ndarray
    half1_idx: np.ndarray
    half2_idx: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, key in _KEYS.items():
            object.__setattr__(self, key, _index_array(getattr(self, key), name))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def num_dataset_images(self) -> int:
        if "num_dataset_images" not in self.meta:
            raise SplitError("split meta lacks num_dataset_images, so index ranges cannot be checked")
        return int(self.meta["num_dataset_images"])

    def subset(self, name: str) -> np.ndarray:
        """The (read-only) int64 index array of subset `name` ("members", "nonmembers", "half1", "half2", or
        an overlap subset "half1_ov<p>" / "half2_ov<p>")."""
        reference = _REFERENCE.fullmatch(name)
        if reference:
            k, half = int(reference.group(1)), reference.group(2)
            return self._reference_half(k) if half is None else self._reference_quarter(k, int(half))
        shadow = _SHADOW.fullmatch(name)
        if shadow:
            k, half = int(shadow.group(1)), shadow.group(2)
            return self._shadow_half(k) if half is None else self._shadow_quarter(k, int(half))
        overlap = _OVERLAP.fullmatch(name)
        if overlap:
            own, percent = overlap.group(1), int(overlap.group(2))
            if not 1 <= percent <= 100:
                raise SplitError(f"split subset {name!r}: the overlap must be 1 to 100 percent")
            other = self.half2_idx if own == "half1" else self.half1_idx
            idx = np.concatenate([self.subset(own), other[: percent * other.size // 100]])
            idx.setflags(write=False)
            return idx
        if name not in _KEYS:
            raise SplitError(
                f"unknown split subset {name!r}; known: {list(SUBSETS)}, half<1|2>_ov<percent>, ref<k>, "
                "ref<k>_half<1|2>, shadow<k> and shadow<k>_half<1|2>"
            )
        return getattr(self, _KEYS[name])

    def reference_population(self) -> np.ndarray:
        """2 |members| dataset images outside the split (neither member nor non-member), the pool LiRA's
        reference models draw their training sets from: the first ones of a permutation of the outside images
        seeded by the split's fingerprint, so the same split always gives the same population.

        Raises:
            SplitError: the dataset has fewer than 2 |members| images outside the split.
        """
        inside = np.concatenate([self.member_idx, self.nonmember_idx])
        outside = np.setdiff1d(np.arange(self.num_dataset_images, dtype=np.int64), inside)
        size = 2 * self.member_idx.size
        if outside.size < size:
            raise SplitError(
                f"LiRA's reference population needs 2 x {self.member_idx.size} = {size} dataset images outside "
                f"the split, but only {outside.size} of the {self.num_dataset_images} are outside it; lower "
                "split.num_images or use a larger dataset"
            )
        rng = np.random.default_rng([int(self.fingerprint()[:16], 16), 0])
        population = outside[rng.permutation(outside.size)[:size]]
        population.setflags(write=False)
        return population

    def _reference_half(self, k: int) -> np.ndarray:
        """Training set of reference model k: |members| images of the reference population, drawn by a
        generator seeded by the split's fingerprint and k."""
        population = self.reference_population()
        rng = np.random.default_rng([int(self.fingerprint()[:16], 16), k])
        half = population[np.sort(rng.permutation(population.size)[: self.member_idx.size])]
        half.setflags(write=False)
        return half

    def _reference_quarter(self, k: int, half: int) -> np.ndarray:
        """Half `half` (1 or 2) of reference model k's training set: a seeded permutation of ``ref<k>`` cut in
        two (the first floor(n / 2) for half 1), so the two are disjoint and together ``ref<k>``."""
        own = self._reference_half(k)
        rng = np.random.default_rng([self._seed(), _REFERENCE_HALVES_STREAM, k])
        order = rng.permutation(own.size)
        chosen = order[: own.size // 2] if half == 1 else order[own.size // 2 :]
        idx = own[np.sort(chosen)]
        idx.setflags(write=False)
        return idx

    def _shadow_half(self, k: int) -> np.ndarray:
        """Training set of online shadow model k: half of the candidates (members then non-members), drawn by a
        generator seeded by the split's fingerprint and the pair j = ceil(k / 2); model 2j - 1 takes the first
        floor(n / 2) of the permutation, model 2j the rest."""
        candidates, _ = self.evaluation_indices()
        pair = (k + 1) // 2
        order = np.random.default_rng([self._seed(), _SHADOW_STREAM, pair]).permutation(candidates.size)
        chosen = order[: candidates.size // 2] if k % 2 == 1 else order[candidates.size // 2 :]
        idx = np.sort(candidates[chosen])
        idx.setflags(write=False)
        return idx

    def _shadow_quarter(self, k: int, half: int) -> np.ndarray:
        """Half `half` (1 or 2) of online shadow model k's training set: ``shadow<k>`` cut along one labelling of
        the candidates shared by the shadow sets 4q - 3 .. 4q (q = ceil(k / 4): two complementary pairs). Sets of
        the first pair put the candidates labelled 1 in their half 1, sets of the second pair in their half 2, so
        each candidate is in half 1 of exactly one of the four sets and in half 2 of exactly one: every candidate is
        IN for K / 4 of the K shadow teachers of each role, which online LiRA needs (a cut drawn per set would leave
        some candidates IN for none). The labelling halves each of the four cells (in or out of set 4q - 3, in or
        out of set 4q - 1) in the order of a seeded permutation, so a half holds |shadow<k>| / 2 candidates up to
        one."""
        candidates, _ = self.evaluation_indices()
        first = k - (k - 1) % 4  # 4q - 3
        cell = 2 * np.isin(candidates, self._shadow_half(first)) + np.isin(
            candidates, self._shadow_half(first + 2)
        )
        order = np.random.default_rng([self._seed(), _SHADOW_HALVES_STREAM, (k + 3) // 4]).permutation(
            cell.size
        )
        labelled = np.zeros(cell.size, dtype=bool)
        for c in range(4):
            in_cell = order[cell[order] == c]  # the cell's candidates in the permutation's order
            labelled[in_cell[: in_cell.size // 2]] = True
        second_pair = k - first >= 2
        chosen = labelled if (half == 1) != second_pair else ~labelled
        idx = np.intersect1d(self._shadow_half(k), candidates[chosen])
        idx.setflags(write=False)
        return idx

    def _seed(self) -> int:
        return int(self.fingerprint()[:16], 16)

    def sha256(self, name: str) -> str:
        """`subset_sha256` of subset `name`."""
        return subset_sha256(self.subset(name))

    def fingerprint(self) -> str:
        """One SHA-256 identifying the whole split: over the four subset hashes, in SUBSETS order."""
        lines = "".join(f"{name}:{self.sha256(name)}\n" for name in SUBSETS)
        return hashlib.sha256(lines.encode()).hexdigest()

    def evaluation_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Members then non-members, for attacks.

        Returns:
            (idx, is_member): (M + K,) int64 dataset indices and (M + K,) bool membership.
        """
        idx = np.concatenate([self.member_idx, self.nonmember_idx])
        is_member = np.arange(idx.size) < self.member_idx.size
        return idx, is_member

    def check(self) -> None:
        """Raise SplitError listing every broken invariant (see `invariant_violations`)."""
        problems = invariant_violations(self)
        if problems:
            raise SplitError("invalid split: " + "; ".join(problems))


def invariant_violations(split: Split) -> list[str]:
    """Describe each broken invariant, with the number of indices involved (empty list: valid).

    Invariants: no empty subset; no duplicates within a subset; indices in [0, num_dataset_images);
    members and non-members disjoint; D1 and D2 disjoint; D1 ∪ D2 = members.
    """
    problems = [f"subset {name} is empty" for name in SUBSETS if split.subset(name).size == 0]
    for name in SUBSETS:
        num_dup = split.subset(name).size - np.unique(split.subset(name)).size
        if num_dup:
            problems.append(f"{num_dup} duplicate indices in {name}")
    num = split.meta.get("num_dataset_images")
    if num is None:
        problems.append("meta lacks num_dataset_images")
    else:
        for name in SUBSETS:
            idx = split.subset(name)
            num_out = int(np.count_nonzero((idx < 0) | (idx >= int(num))))
            if num_out:
                problems.append(f"{num_out} {name} indices outside [0, {num})")
    members, halves = split.member_idx, np.concatenate([split.half1_idx, split.half2_idx])
    pairs = [
        (np.intersect1d(members, split.nonmember_idx).size, "members also appear in non-members"),
        (np.intersect1d(split.half1_idx, split.half2_idx).size, "indices appear in both half1 and half2"),
        (np.setdiff1d(members, halves).size, "members are in neither half1 nor half2"),
        (np.setdiff1d(halves, members).size, "half1/half2 indices are not members"),
    ]
    problems += [f"{count} {what}" for count, what in pairs if count]
    return problems


def make_split(
    num_dataset_images: int, cfg: SplitConfig, *, image_names: Sequence[str] | None = None
) -> Split:
    """Choose members and non-members, then split the members into D1 and D2.

    source "random": a permutation of the dataset seeded by cfg.seed (numpy Generator); its first
    cfg.num_images entries take part, the first round(member_fraction * num_images) of them are members.
    source "secmi": members = mia_train_idxs, non-members = mia_eval_idxs of cfg.secmi_file, in stored
    order (num_images, member_fraction and seed are ignored).
    source "lists": the images named in cfg.member_list and cfg.nonmember_list, in the files' order (see
    `read_name_list`; num_images, member_fraction and seed are ignored).
    Halves: cfg.halves "permuted" (`split_halves`) or "ordered" (D1 = the first floor(M / 2) members in the
    order above, D2 the rest: the authors' Stable Diffusion split).

    Args:
        num_dataset_images: size of the dataset the indices point into.
        cfg: split section.
        image_names: source "lists" only: the file name of every dataset image, in dataset order
            (`dualmd.data.datasets.image_folder_names`).

    Returns:
        A checked Split; the same arguments always give the same arrays.
    """
    if cfg.source == "secmi":
        members, nonmembers, meta = _secmi_subsets(Path(str(cfg.secmi_file)), num_dataset_images)
    elif cfg.source == "lists":
        if image_names is None or len(image_names) != num_dataset_images:
            raise SplitError(
                "split.source 'lists' needs the file name of each of the "
                f"{num_dataset_images} dataset images (an image_folder dataset)"
            )
        members, nonmembers, meta = _list_subsets(cfg, image_names)
    else:
        members, nonmembers, meta = _random_subsets(num_dataset_images, cfg)
    if cfg.halves == "ordered":
        half1, half2 = members[: len(members) // 2], members[len(members) // 2 :]
        meta["halves"] = "ordered"
    else:
        half1, half2 = split_halves(members, half_seed=cfg.half_seed)
    meta |= {"source": cfg.source, "half_seed": cfg.half_seed, "num_dataset_images": int(num_dataset_images)}
    split = Split(members, nonmembers, half1, half2, meta=dict(sorted(meta.items())))
    split.check()
    return split


def split_halves(members: np.ndarray, *, half_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """D1, D2 exactly as the authors' code: torch.randperm(M, generator=manual_seed(half_seed)).

    Returns:
        (members[perm[:M // 2]], members[perm[M // 2:]]), int64 arrays.
    """
    import torch  # here, not at the top: reading a split (every evaluation job) needs no torch

    generator = torch.Generator().manual_seed(half_seed)
    perm = torch.randperm(len(members), generator=generator).numpy()
    half = len(members) // 2
    return members[perm[:half]], members[perm[half:]]


def _random_subsets(num_dataset_images: int, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    num_images = num_dataset_images if cfg.num_images is None else cfg.num_images
    if num_images > num_dataset_images:
        raise SplitError(f"split.num_images={num_images} exceeds the dataset's {num_dataset_images} images")
    # Python's round (half to even) is part of the definition: round(0.5 * 5) == 2 members.
    num_members = round(cfg.member_fraction * num_images)
    if num_members < 2 or num_members >= num_images:
        raise SplitError(
            f"member_fraction={cfg.member_fraction} of {num_images} images gives {num_members} members; "
            "need at least 2 members (one per half) and 1 non-member"
        )
    chosen = np.random.default_rng(cfg.seed).permutation(num_dataset_images)[:num_images].astype(np.int64)
    meta = {"seed": cfg.seed, "member_fraction": cfg.member_fraction, "num_images": num_images}
    return chosen[:num_members], chosen[num_members:], meta


def read_name_list(path: str | Path) -> list[str]:
    """The image file names of a list file: one per non-blank line, relative to the image folder (as the
    `file_name` of its metadata.jsonl), in order; surrounding blanks are ignored.

    Raises:
        SplitError: the file does not exist, is empty, or names a file twice (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"split list {path} does not exist")
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        name = Path(name).as_posix()
        if name in seen:
            raise SplitError(f"{path}, line {number}: {name!r} is already on line {seen[name]}")
        seen[name] = number
        names.append(name)
    if not names:
        raise SplitError(f"split list {path} names no image")
    return names


def _list_subsets(cfg: SplitConfig, image_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Members and non-members named by the two list files, as dataset indices in the files' order."""
    index = {Path(n).as_posix(): i for i, n in enumerate(image_names)}
    subsets, meta = [], {}
    for key in ("member_list", "nonmember_list"):
        path = Path(str(getattr(cfg, key)))
        names = read_name_list(path)
        unknown = [n for n in names if n not in index]
        if unknown:
            raise SplitError(
                f"{path} (split.{key}): {len(unknown)} name(s) not in the image folder, e.g. {unknown[:3]}"
            )
        subsets.append(np.array([index[n] for n in names], dtype=np.int64))
        # the name, not the path, so the artefact does not depend on the checkout (as for secmi_file)
        meta |= {key: path.name, f"{key}_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    members, nonmembers = subsets
    both = sorted(set(image_names[i] for i in np.intersect1d(members, nonmembers)))
    if both:
        raise SplitError(f"{len(both)} image(s) on both split lists, e.g. {both[:3]}")
    meta |= {
        "seed": None,  # the lists are fixed; no seed of ours chose them
        "member_fraction": members.size / (members.size + nonmembers.size),
        "num_images": int(members.size + nonmembers.size),
    }
    return members, nonmembers, meta


def _secmi_subsets(path: Path, num_dataset_images: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a SecMI split file; indices must lie in the dataset (they refer to its TRAIN split)."""
    if not path.is_file():
        raise SplitError(f"SecMI split file {path} does not exist (split.secmi_file)")
    raw = path.read_bytes()
    arrays = _read_npz(path, (SECMI_MEMBERS, SECMI_NONMEMBERS))
    members = _index_array(arrays[SECMI_MEMBERS], f"{path}: {SECMI_MEMBERS}")
    nonmembers = _index_array(arrays[SECMI_NONMEMBERS], f"{path}: {SECMI_NONMEMBERS}")
    for key, idx in ((SECMI_MEMBERS, members), (SECMI_NONMEMBERS, nonmembers)):
        num_out = int(np.count_nonzero((idx < 0) | (idx >= num_dataset_images)))
        if num_out:
            raise SplitError(
                f"{path}: {num_out} {key} indices outside the dataset's [0, {num_dataset_images})"
            )
    num_overlap = np.intersect1d(members, nonmembers).size
    if num_overlap:
        raise SplitError(f"{path}: {num_overlap} members also appear in non-members")
    meta = {
        "seed": None,  # SecMI's files are fixed; no seed of ours chose them
        "member_fraction": members.size / (members.size + nonmembers.size),
        "num_images": int(members.size + nonmembers.size),
        "secmi_file": path.name,  # the name, not the path, so the artefact does not depend on the checkout
        "secmi_file_sha256": hashlib.sha256(raw).hexdigest(),
    }
    return members, nonmembers, meta


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays `keys` of an .npz (no pickles); any missing key or unreadable file is a SplitError."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise SplitError(f"{path}: missing key(s) {missing} (found {archive.files})")
            return {k: archive[k] for k in keys}
    except SplitError:
        raise
    except FileNotFoundError as err:
        raise SplitError(f"split file {path} does not exist") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise SplitError(f"{path}: not a readable .npz file: {err}") from err


def save_split(split: Split, npz_path: str | Path, json_path: str | Path) -> None:
    """Check `split`, then write it atomically as an .npz and a JSON sidecar.

    The .npz holds member_idx, nonmember_idx, half1_idx, half2_idx (int64) and meta_json (the meta as a JSON
    string); its bytes depend only on the split. The sidecar holds counts, the sha256 of each subset, the
    fingerprint, the sha256 of the .npz file and the meta. An invalid split raises SplitError and writes
    nothing.
    """
    from dualmd.data.datasets import write_npz  # torch-importing module, needed to write only

    split.check()
    meta_json = json.dumps(split.meta, sort_keys=True)
    arrays: dict[str, np.ndarray] = {_KEYS[name]: split.subset(name) for name in SUBSETS}
    arrays[_META_KEY] = np.array(meta_json)  # a unicode scalar: readable without allow_pickle
    npz_sha256 = write_npz(npz_path, arrays)
    sidecar = {
        "counts": {name: int(split.subset(name).size) for name in SUBSETS},
        "sha256": {name: split.sha256(name) for name in SUBSETS},
        "fingerprint": split.fingerprint(),
        "npz_sha256": npz_sha256,
        "meta": json.loads(meta_json),
    }
    write_bytes_atomic(json_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())


def load_split(npz_path: str | Path, json_path: str | Path | None = None) -> Split:
    """Read a split written by `save_split`, re-check its invariants and, if given, its sidecar.

    Raises:
        SplitError: missing/unreadable file, missing key, broken invariant, or a subset whose hash differs
            from the sidecar's (the message names the file and the subset).
    """
    npz_path = Path(npz_path)
    arrays = _read_npz(npz_path, (*_KEYS.values(), _META_KEY))
    try:
        meta = json.loads(str(arrays.pop(_META_KEY)))
    except ValueError as err:
        raise SplitError(f"{npz_path}: {_META_KEY} is not valid JSON: {err}") from err
    split = Split(
        **{key: _index_array(arrays[key], f"{npz_path}: {key}") for key in _KEYS.values()}, meta=meta
    )
    problems = invariant_violations(split)
    if problems:
        raise SplitError(f"{npz_path}: invalid split: " + "; ".join(problems))
    if json_path is not None:
        _check_sidecar(split, npz_path, Path(json_path))
    return split


def _check_sidecar(split: Split, npz_path: Path, json_path: Path) -> None:
    try:
        sidecar = json.loads(json_path.read_text())
        expected = sidecar["sha256"]
    except FileNotFoundError as err:
        raise SplitError(f"split sidecar {json_path} does not exist") from err
    except (ValueError, KeyError, TypeError) as err:
        raise SplitError(f"{json_path}: not a split sidecar (no sha256 table): {err}") from err
    for name in SUBSETS:
        if expected.get(name) != split.sha256(name):
            raise SplitError(
                f"{npz_path}: subset {name!r} has sha256 {split.sha256(name)[:16]}..., but {json_path} records "
                f"{str(expected.get(name))[:16]}...; the split file or its sidecar was edited or corrupted"
            )
    if sidecar.get("meta") != split.meta:
        raise SplitError(f"{npz_path}: meta differs from the meta recorded in {json_path}")


def split_sha256(npz_path: str | Path) -> str:
    """Fingerprint of the split stored in `npz_path` (see `Split.fingerprint`)."""
    return load_split(npz_path).fingerprint()
