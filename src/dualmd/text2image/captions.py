"""Captions: deterministic template captions of the digits, unique original captions, and prompt diversification.

Every image owns a tuple of one or more captions; the first is its "original" caption (the one a black-box
attacker would query with). The digits' template captions are shared by many images ("a handwritten digit two");
`with_unique_captions` gives each image an original caption of its own, its first template followed by a seeded
tag of `TAG_LENGTH` words ("a handwritten digit two kilo echo tango"), as a real dataset's captions describe one
image each, and keeps the templates as the alternatives prompt diversification draws. With prompt diversification (paper §3.5, after Somepalli et al. 2023b) each use of
an image in training draws one of its captions uniformly; without it the original caption is always used.
Caption dropout replaces the drawn caption by the empty prompt with probability p, which trains the
unconditional prediction that classifier-free guidance needs.

Every draw depends only on (seed, step, image id): a run is reproducible and a caption does not depend on the
batch size or on the other images of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dualmd.config.sections import DatasetConfig
from dualmd.noise import sample_seed

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STROKES = ("thin", "regular", "bold")
COLUMNS = ("left", "centre", "right")
ROWS = ("top", "middle", "bottom")
#: The template captions of one digit image; the first is the image's original caption.
TEMPLATES = (
    "a handwritten digit {name}",
    "the number {name} written in {stroke} strokes",
    "a {stroke} {name} at the {row} {column}",
    "a small grey picture of the digit {name}",
)
#: Words of the tags that make original captions unique (`with_unique_captions`): the NATO spelling alphabet, none
#: of them a template word; the tiny tokenizer has one token per word.
TAG_WORDS = tuple(
    "alfa bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa quebec "
    "romeo sierra tango uniform victor whiskey xray yankee zulu".split()
)
TAG_LENGTH = 3  # words per tag: 26**3 = 17,576 distinct tags for scikit-learn's 1,797 digits
#: Streams of `dualmd.noise.sample_seed` that keep the caption choice and the dropout independent.
_CAPTION_STREAM, _DROPOUT_STREAM = 0, 1


def caption_words() -> list[str]:
    """Every word any digit caption may contain, sorted (the tiny tokenizer's vocabulary covers them)."""
    fillers = [*DIGIT_NAMES, *STROKES, *COLUMNS, *ROWS, *TAG_WORDS]
    words = {
        w for template in TEMPLATES for w in template.format(name="", stroke="", row="", column="").split()
    }
    return sorted(words | set(fillers))


def stroke_style(pixels: np.ndarray, thresholds: tuple[float, float]) -> str:
    """ "thin", "regular" or "bold" from the mean ink of one image (H, W) against two ink thresholds."""
    ink = float(np.asarray(pixels, dtype=np.float64).mean())
    return STROKES[int(ink >= thresholds[0]) + int(ink >= thresholds[1])]


def position(pixels: np.ndarray) -> tuple[str, str]:
    """(row, column) word of the ink's centre of mass in one image (H, W): thirds of each axis."""
    p = np.asarray(pixels, dtype=np.float64)
    total = p.sum()
    if total == 0:
        return "middle", "centre"
    h, w = p.shape
    cy = float((p.sum(axis=1) * np.arange(h)).sum() / total) / max(h - 1, 1)  # 0 = top, 1 = bottom
    cx = float((p.sum(axis=0) * np.arange(w)).sum() / total) / max(w - 1, 1)
    # The digits' ink sits close to the centre; a narrow middle band keeps all three words in use.
    return ROWS[_third(cy)], COLUMNS[_third(cx)]


def _third(u: float, low: float = 0.47, high: float = 0.53) -> int:
    return 0 if u < low else (2 if u > high else 1)


def digit_captions(pixels: np.ndarray, labels: np.ndarray) -> list[tuple[str, ...]]:
    """The template captions of each digit image (deterministic: they depend on the pixels and labels only).

    Args:
        pixels: (N, H, W) ink intensities (e.g. scikit-learn's 8x8 digits, 0..16).
        labels: (N,) the digit of each image, 0..9.
    Returns:
        N tuples of len(TEMPLATES) captions; the stroke words split the images into ink-mass terciles.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 3 or len(pixels) != len(labels):
        raise ValueError(f"expected pixels (N, H, W) and N labels, got {pixels.shape} and {len(labels)}")
    ink = pixels.mean(axis=(1, 2))
    thresholds = (float(np.quantile(ink, 1 / 3)), float(np.quantile(ink, 2 / 3)))
    out = []
    for img, label in zip(pixels, labels, strict=True):
        row, column = position(img)
        words = {"name": DIGIT_NAMES[int(label)], "stroke": stroke_style(img, thresholds), "row": row}
        out.append(tuple(t.format(column=column, **words) for t in TEMPLATES))
    return out


def load_digit_captions(max_images: int | None = None) -> list[tuple[str, ...]]:
    """The template captions of scikit-learn's digits, in dataset order (image i of `dataset.name: digits`)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    n = len(digits.images) if max_images is None else max_images
    return digit_captions(digits.images, digits.target)[:n]


def caption_tags(num_images: int, seed: int) -> list[str]:
    """A distinct tag of TAG_LENGTH words from TAG_WORDS for each of the images 0..num_images-1.

    Image i gets the i-th of a seeded permutation of every possible tag, so its tag depends on (i, seed) only,
    not on how many images there are, and no two images share one.

    Raises:
        ValueError: more images than there are distinct tags.
    """
    total = len(TAG_WORDS) ** TAG_LENGTH
    if not 0 <= num_images <= total:
        raise ValueError(f"{num_images} images, but only {total} distinct tags of {TAG_LENGTH} words exist")
    codes = np.random.default_rng(seed).permutation(total)[:num_images]
    tags = []
    for code in codes.tolist():
        words = []
        for _ in range(TAG_LENGTH):  # the code's base-26 digits, least significant first
            code, k = divmod(code, len(TAG_WORDS))
            words.append(TAG_WORDS[k])
        tags.append(" ".join(words))
    return tags


def with_unique_captions(captions: Sequence[Sequence[str]], seed: int) -> list[tuple[str, ...]]:
    """Each image's captions behind a new, unique original caption: its first caption followed by its tag
    (`caption_tags`); the given captions stay, in their order, as the alternatives of prompt diversification.

    Args:
        captions: per image id, its captions (e.g. `digit_captions`).
        seed: seed of the tags.
    Returns:
        Per image id, (unique caption, *captions[i]).
    """
    if any(len(c) == 0 for c in captions):
        raise ValueError("every image needs a caption to make unique")
    tags = caption_tags(len(captions), seed)
    return [(f"{c[0]} {tag}", *c) for c, tag in zip(captions, tags, strict=True)]


def dataset_captions(cfg: DatasetConfig) -> list[tuple[str, ...]]:
    """The captions of every image `dualmd.data.datasets.load_dataset(cfg)` returns, in the same order.

    digits: the template captions (`load_digit_captions`); image_folder: its `metadata.jsonl`. Other datasets
    have no captions (ValueError).
    """
    if cfg.name == "digits":
        return load_digit_captions(cfg.max_images)
    if cfg.name == "image_folder":
        from dualmd.data.datasets import image_folder_captions

        return image_folder_captions(str(cfg.root), cfg.max_images)
    raise ValueError(f"dataset {cfg.name!r} has no captions; text2image needs digits or image_folder")


@dataclass(frozen=True)
class CaptionSampler:
    """Which caption each image gets at a training step: drawn from its captions, or dropped.

    Attributes:
        captions: per image id, its captions (the first is the original caption).
        seed: seeds every draw together with the step and the image id.
        diversify: draw uniformly among an image's captions (prompt diversification); else the first.
        dropout: probability of the empty prompt instead (caption dropout for classifier-free guidance).
    """

    captions: Sequence[Sequence[str]]
    seed: int = 0
    diversify: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"caption dropout {self.dropout} is not in [0, 1)")
        empty = [i for i, c in enumerate(self.captions) if len(c) == 0]
        if empty:
            raise ValueError(f"images {empty[:5]} have no caption")

    def choose(self, step: int, image_ids: Sequence[int]) -> list[int]:
        """Per image id, the index of its caption at `step`, or -1 for the empty prompt (dropout)."""
        out = []
        for i in image_ids:
            i = int(i)
            k = 0
            if self.diversify and len(self.captions[i]) > 1:
                rng = np.random.default_rng(sample_seed(self.seed, i, step, _CAPTION_STREAM))
                k = int(rng.integers(len(self.captions[i])))
            if self.dropout > 0:
                rng = np.random.default_rng(sample_seed(self.seed, i, step, _DROPOUT_STREAM))
                k = -1 if rng.random() < self.dropout else k
            out.append(k)
        return out

    def __call__(self, step: int, image_ids: Sequence[int]) -> list[str]:
        """Per image id, the caption it is trained with at `step` ("" when dropped)."""
        ks = self.choose(step, image_ids)
        return ["" if k < 0 else self.captions[int(i)][k] for i, k in zip(image_ids, ks, strict=True)]
