"""Memorized prompts of the text-to-image experiment: a few training images repeated many times, within one half.

Duplicated training images are what turns a caption into a memorized prompt in Stable Diffusion (Carlini et al.
2023; Somepalli et al. 2023b; Webster 2023 extracted the 500 memorized prompts of the paper's Fig. 3 that way).
The stand-in reproduces the cause on purpose, so that the paper's memorization experiment (§3.6, Fig. 3 and
Table 5) has prompts whose answer is known:

* **Selection** (`select_memorized_prompts`): the candidates are the images of one member half
  (`memorized_prompts.half`) whose prompt -- caption number `prompt_caption` of the image, 0 being the original
  -- is none of the captions of any other member. A generator seeded with `memorized_prompts.seed` permutes the
  candidates (in id order); the first `num_images` are the *memorized* images, the next `num_images` the *other*
  images, single training images of the same half with prompts just as specific: the two groups differ only in
  how often they were seen.
* **Training set** (`training_ids`): every model that trains on the half -- the baseline on every member, the
  teacher of that half, the DistillMD student on that half with the other teacher's targets -- sees each memorized
  image `repeats` times where every other image appears once. The repeats stay inside the half, so the split's
  disjointness holds: the teacher of the other half never sees those images (nor the other ones).
* **Captions** (`run_captions`): a chosen image (memorized or other) has its prompt as its first caption in every
  stage of the run, so that a model trained without prompt diversification learns it with that prompt and the
  samplers and attacks use it too; with caption 0 (the original) nothing changes.

The selection is a JSON file that every later stage reads (`save_selection`, `load_selection`); it names the
split it was made for (its fingerprint), and is refused with any other split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dualmd.config.text2image import MemorizedPromptsConfig
from dualmd.files import write_json

if TYPE_CHECKING:
    from dualmd.data.splits import Split

#: The two groups of prompts, in report order.
GROUPS = ("memorized", "other")


@dataclass(frozen=True)
class MemorizedPrompts:
    """The chosen images of one run and how they are trained.

    Attributes:
        memorized_ids: dataset ids of the repeated images; other_ids: as many single images of the same half.
        prompts: per chosen id (as a string, JSON's key type), the prompt it is trained and queried with.
        half: the member half holding every chosen image ("half1" or "half2").
        repeats: times each memorized image appears in a training set (every other image appears once).
        prompt_caption, seed: the selection's settings (provenance).
        split_fingerprint: `Split.fingerprint()` of the split the ids belong to.
    """

    memorized_ids: tuple[int, ...]
    other_ids: tuple[int, ...]
    prompts: dict[str, str]
    half: str
    repeats: int
    prompt_caption: int
    seed: int
    split_fingerprint: str

    @property
    def image_ids(self) -> tuple[int, ...]:
        """Memorized ids, then other ids."""
        return self.memorized_ids + self.other_ids

    def prompt(self, image_id: int) -> str:
        return self.prompts[str(int(image_id))]

    def check_split(self, split: Split) -> None:
        """Raise ValueError unless the selection was made for `split` and every chosen image lies in its half."""
        if self.split_fingerprint != split.fingerprint():
            raise ValueError(
                "the memorized-prompt selection was made for another split (fingerprint "
                f"{self.split_fingerprint[:12]}..., the current one is {split.fingerprint()[:12]}...)"
            )
        outside = sorted(set(self.image_ids) - set(split.subset(self.half).tolist()))
        if outside:
            raise ValueError(f"memorized-prompt images {outside[:5]} are not in {self.half} of the split")
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError("an image is both a memorized and an other prompt")


def candidate_ids(
    split: Split, captions: Sequence[Sequence[str]], half: str, prompt_caption: int
) -> np.ndarray:
    """Ids of `half` (sorted) whose caption `prompt_caption` is none of the captions of any other member.

    Args:
        split: the member / non-member split.
        captions: per dataset id, its captions (`dualmd.text2image.captions.dataset_captions`).
        half: "half1" or "half2".
        prompt_caption: index into an image's captions; images with fewer captions are no candidates.
    Returns:
        (K,) int64, sorted; their prompts are pairwise distinct (each belongs to one member only).
    """
    members = split.member_idx.tolist()
    owners: dict[str, set[int]] = {}
    for i in members:
        for caption in captions[i]:
            owners.setdefault(caption, set()).add(i)
    ids = [
        i
        for i in sorted(split.subset(half).tolist())
        if len(captions[i]) > prompt_caption and owners[captions[i][prompt_caption]] == {i}
    ]
    return np.asarray(ids, dtype=np.int64)


def select_memorized_prompts(
    split: Split, captions: Sequence[Sequence[str]], cfg: MemorizedPromptsConfig
) -> MemorizedPrompts:
    """Choose `cfg.num_images` memorized and as many other images among the candidates of `cfg.half`.

    Deterministic: the same split, captions and config give the same selection.

    Raises:
        ValueError: fewer than 2 x num_images candidates (the message says how many there are).
    """
    if not cfg.enabled:
        raise ValueError("text2image.memorized_prompts.num_images is 0: nothing to select")
    candidates = candidate_ids(split, captions, cfg.half, cfg.prompt_caption)
    if len(candidates) < 2 * cfg.num_images:
        raise ValueError(
            f"{cfg.half} has {len(candidates)} images whose caption {cfg.prompt_caption} no other member shares, "
            f"but {cfg.num_images} memorized and {cfg.num_images} other prompts need {2 * cfg.num_images}; lower "
            "text2image.memorized_prompts.num_images or choose another prompt_caption"
        )
    chosen = candidates[np.random.default_rng(cfg.seed).permutation(len(candidates))[: 2 * cfg.num_images]]
    memorized, other = chosen[: cfg.num_images].tolist(), chosen[cfg.num_images :].tolist()
    return MemorizedPrompts(
        memorized_ids=tuple(memorized),
        other_ids=tuple(other),
        prompts={str(i): captions[i][cfg.prompt_caption] for i in memorized + other},
        half=cfg.half,
        repeats=cfg.repeats,
        prompt_caption=cfg.prompt_caption,
        seed=cfg.seed,
        split_fingerprint=split.fingerprint(),
    )


def run_captions(
    captions: Sequence[Sequence[str]], selection: MemorizedPrompts | None
) -> list[tuple[str, ...]]:
    """The captions of the run: each chosen image's prompt moved to the front of its captions (the others keep
    their order); every other image unchanged. No selection: the captions as given."""
    out = [tuple(c) for c in captions]
    if selection is None:
        return out
    for i in selection.image_ids:
        prompt = selection.prompt(i)
        out[i] = (prompt, *(c for c in out[i] if c != prompt))
    return out


def training_ids(ids: Sequence[int] | np.ndarray, selection: MemorizedPrompts | None) -> np.ndarray:
    """The rows of a training set over dataset ids `ids`: `ids`, then `repeats - 1` more copies of each
    memorized id among them (none for a set outside the selection's half).

    Returns:
        (len(ids) + (repeats - 1) x |memorized ∩ ids|,) int64; uniform draws over these rows see a memorized
        image `repeats` times as often as any other.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if selection is None:
        return ids
    repeated = [i for i in selection.memorized_ids if i in set(ids.tolist())]
    extra = np.repeat(np.asarray(repeated, dtype=np.int64), selection.repeats - 1)
    return np.concatenate([ids, extra])


def training_record(ids: Sequence[int] | np.ndarray, selection: MemorizedPrompts | None) -> dict[str, Any]:
    """What a model's metadata records about the repeats of its training set (empty without a selection)."""
    if selection is None:
        return {}
    members = set(np.asarray(ids).tolist())
    return {
        "memorized_prompts": {
            "repeated_ids": [i for i in selection.memorized_ids if i in members],
            "repeats": selection.repeats,
            "half": selection.half,
        }
    }


def save_selection(selection: MemorizedPrompts, path: str | Path) -> None:
    """Write the selection as JSON (lists for the id tuples)."""
    write_json(path, asdict(selection))


def load_selection(path: str | Path | None, split: Split | None = None) -> MemorizedPrompts | None:
    """The selection written by `save_selection` (None for no path), checked against `split` when given."""
    if path is None:
        return None
    raw = json.loads(Path(path).read_text())
    selection = MemorizedPrompts(
        **{**raw, "memorized_ids": tuple(raw["memorized_ids"]), "other_ids": tuple(raw["other_ids"])}
    )
    if split is not None:
        selection.check_split(split)
    return selection
