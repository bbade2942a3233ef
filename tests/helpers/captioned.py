"""Tiny captioned datasets (a Parquet file, a `datasets.save_to_disk` folder) and a tiny randomly initialised BLIP
captioning model with its processor, all built in the test: nothing is downloaded."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 8  # pixels per side of every image
#: The tiny BLIP tokenizer's words: BERT's special tokens, BLIP's decoder start "[DEC]", the prompt's words.
BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "picture", "of"]
BLIP_WORDS += ["red", "blue", "green", "pokemon", "cartoon", "drawing", "with", "wings", "tail"]


def pixels(i: int) -> np.ndarray:
    """Image i: (SIZE, SIZE, 3) uint8, a seeded pattern distinct per i."""
    return np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def encoded(i: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(i)).save(buffer, format=fmt)
    return buffer.getvalue()


def captioned_table(num_rows: int, *, as_struct: bool = True, **columns: list):
    """A pyarrow table: `image` (PNG bytes of `pixels(i)`, in a {bytes, path} struct as the `datasets` Image
    feature stores them, or raw), `text` ("caption i"), and any further columns given."""
    import pyarrow as pa

    images = [encoded(i) for i in range(num_rows)]
    image = [{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(images)] if as_struct else images
    data = {"image": image, "text": [f"caption {i}" for i in range(num_rows)], **columns}
    return pa.table(data)


def write_parquet(table, path: Path) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    return path


def save_to_disk(table, folder: Path, num_files: int = 2) -> Path:
    """`table` in the layout of `datasets.Dataset.save_to_disk`: Arrow stream files data-0000i-of-0000n.arrow,
    state.json listing them, dataset_info.json."""
    import pyarrow as pa

    folder.mkdir(parents=True)
    names = [f"data-{i:05d}-of-{num_files:05d}.arrow" for i in range(num_files)]
    bounds = np.linspace(0, table.num_rows, num_files + 1).astype(int)
    for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(start, stop - start))
    state = {"_data_files": [{"filename": n} for n in names], "_split": "train", "_format_type": None}
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}))
    return folder


def tiny_blip(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised BLIP captioning model (one layer, 16 wide, 16 px images) and its processor (a BERT
    tokenizer over `BLIP_WORDS`), saved as transformers' `from_pretrained` reads them."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(BLIP_WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]")
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 16, "width": 16}), tokenizer=tokenizer
    )
    width = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    ids = {
        name: BLIP_WORDS.index(token)
        for name, token in [("pad", "[PAD]"), ("sep", "[SEP]"), ("bos", "[DEC]")]
    }
    config = BlipConfig(
        vision_config={**width, "image_size": 16, "patch_size": 8},
        text_config={
            **width,
            "vocab_size": len(BLIP_WORDS),
            "encoder_hidden_size": 16,
            "max_position_embeddings": 32,
            "bos_token_id": ids["bos"],
            "pad_token_id": ids["pad"],
            "sep_token_id": ids["sep"],
            "eos_token_id": ids["sep"],
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    vocab.unlink()  # the processor saved its own copy of the tokenizer
    return folder
