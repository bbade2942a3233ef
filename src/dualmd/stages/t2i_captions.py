"""Data preparation of the text-to-image experiment, run by hand before the workflow: a captioned dataset (Parquet,
or a `datasets.save_to_disk` folder) as the image folder with a `metadata.jsonl` that `dataset.name:
image_folder` reads, with alternative captions for prompt diversification from a column or a local BLIP model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd.stage import stage

log = logging.getLogger(__name__)


@stage("prepare-captions")
def prepare_captions(
    *,
    source: Path,
    out: Path,
    image_column: str = "image",
    text_column: str = "text",
    captions_column: str | None = None,
    blip: Path | None = None,
) -> None:
    """A captioned dataset as an image folder with a metadata.jsonl (dataset.name: image_folder).

    Args:
        source: a Parquet file, or a datasets.save_to_disk folder (data-*.arrow files).
        out: the image folder to create (it must not exist).
        image_column: the column of encoded images (bytes, or a struct with a 'bytes' field).
        text_column: the column of each image's caption (its first, original caption).
        captions_column: a column of alternative captions (a list of strings per row).
        blip: a local BLIP captioning model folder (transformers layout) that generates 5 alternative captions
            per image, as the authors (nucleus sampling, top_p 0.9, length 5 to 20).
    """
    from dualmd.data.captioned import captioned_rows, read_table, write_image_folder

    if captions_column is not None and blip is not None:
        raise ValueError("take alternative captions from --captions-column or from --blip, not both")
    columns = [image_column, text_column, *([captions_column] if captions_column else [])]
    table = read_table(source, columns)
    captioner = None
    if blip is not None:
        from dualmd.stages.device import device
        from dualmd.text2image.blip import blip_captioner

        captioner = blip_captioner(blip, device=device())
    rows = captioned_rows(
        table, image_column=image_column, text_column=text_column, captions_column=captions_column
    )
    count = write_image_folder(rows, out, num_rows=table.num_rows, captioner=captioner)
    log.info("%d images and their captions written to %s", count, out)
