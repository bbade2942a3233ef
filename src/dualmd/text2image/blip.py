"""Alternative captions of an image from a local BLIP captioning model, as the authors made them for prompt
diversification (paper §3.5, after Somepalli et al. 2023b).

The authors ran LAVIS's ``blip_caption`` (``base_coco``) with nucleus sampling, top_p 0.9, max_length 20,
min_length 5 and five captions per image. The same model in the transformers layout
(`BlipForConditionalGeneration` and `BlipProcessor`, e.g. ``Salesforce/blip-image-captioning-base``) is read from
a local folder only (``local_files_only``): nothing is downloaded. As in LAVIS, decoding starts from the prompt
"a picture of " (the lengths count its tokens), which is cut from each caption.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dualmd.noise import sample_seed

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass(frozen=True)
class BlipSettings:
    """How the captions are sampled (the authors' LAVIS settings by default)."""

    num_captions: int = 5  # per image
    top_p: float = 0.9  # nucleus sampling
    min_length: int = 5  # tokens, the prompt's included (LAVIS passes them to generate so)
    max_length: int = 20
    prompt: str = "a picture of "  # base_coco's decoder prompt
    seed: int = 0  # image i's captions are drawn with the seed `sample_seed(seed, i)`


def blip_captioner(
    folder: str | Path, *, device: str | torch.device = "cpu", settings: BlipSettings = BlipSettings()
) -> Callable[[int, Image.Image], list[str]]:
    """A function (row index, RGB image) -> `settings.num_captions` captions of the image.

    Each image's captions are drawn from their own seed (`sample_seed(settings.seed, index)`), so they do not
    depend on which images were captioned before.

    Raises:
        FileNotFoundError: `folder` holds no model (no config.json).
    """
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"BLIP folder {folder} holds no model (no config.json)")
    processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True).to(device).eval()
    prompt = settings.prompt.strip()

    @torch.no_grad()
    def caption(index: int, image: Image.Image) -> list[str]:
        inputs = processor(images=image, text=settings.prompt, return_tensors="pt").to(device)
        torch.manual_seed(sample_seed(settings.seed, index))
        tokens = model.generate(
            **inputs,
            do_sample=True,
            num_beams=1,
            top_p=settings.top_p,
            min_length=settings.min_length,
            max_length=settings.max_length,
            num_return_sequences=settings.num_captions,
        )  # (num_captions, length)
        texts = [t.strip() for t in processor.batch_decode(tokens, skip_special_tokens=True)]
        return [t.removeprefix(prompt).strip() for t in texts]

    return caption
