"""`python -m dualmd prepare-captions`: a captioned Parquet file or save_to_disk folder becomes the image folder
the text-to-image experiment reads (round trip through `dualmd.data.datasets`), alternative captions come from a
column or a BLIP model, and bad input is refused with the row or column named and no folder left behind."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from helpers.captioned import (
    SIZE,
    captioned_table,
    encoded,
    pixels,
    save_to_disk,
    tiny_blip,
    write_parquet,
)
from PIL import Image

from dualmd import cli
from dualmd.config.sections import DatasetConfig
from dualmd.data.datasets import DatasetError, load_dataset
from dualmd.stages.t2i_captions import prepare_captions
from dualmd.text2image.blip import blip_captioner
from dualmd.text2image.captions import dataset_captions

pa = pytest.importorskip("pyarrow")


def image_folder(root, max_images=None) -> DatasetConfig:
    return DatasetConfig(
        name="image_folder", root=str(root), image_size=SIZE, channels=3, max_images=max_images
    )


def metadata(root) -> list[dict]:
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


def test_parquet_round_trip_through_the_image_folder_reader(tmp_path):
    """Rows 0-4 in order, PNG kept byte for byte, JPEG kept as .jpg, any other format re-encoded as PNG; the
    pipeline's readers get every image's pixels and caption back in row order."""
    table = captioned_table(5)
    images = table.column("image").to_pylist()
    images[3] = {"bytes": encoded(3, "JPEG"), "path": None}
    images[4] = {"bytes": encoded(4, "BMP"), "path": None}
    table = table.set_column(0, "image", pa.array(images, type=table.schema.field("image").type))
    prepare_captions(source=write_parquet(table, tmp_path / "train.parquet"), out=tmp_path / "pokemon")

    root = tmp_path / "pokemon"
    names = ["0000.png", "0001.png", "0002.png", "0003.jpg", "0004.png"]
    assert sorted(p.name for p in root.iterdir()) == [*names, "metadata.jsonl"]
    assert metadata(root) == [{"file_name": n, "text": f"caption {i}"} for i, n in enumerate(names)]
    assert (root / "0000.png").read_bytes() == encoded(0)
    assert (root / "0003.jpg").read_bytes() == encoded(3, "JPEG")
    assert dataset_captions(image_folder(root)) == [(f"caption {i}",) for i in range(5)]
    loaded = load_dataset(image_folder(root))  # (5, 3, SIZE, SIZE)
    for i in (0, 1, 2, 4):  # lossless formats: the very pixels
        np.testing.assert_array_equal(loaded[i].transpose(1, 2, 0), pixels(i))
    jpeg = np.asarray(Image.open(io.BytesIO(encoded(3, "JPEG"))).convert("RGB"))
    np.testing.assert_array_equal(loaded[3].transpose(1, 2, 0), jpeg)  # JPEG: its own decoding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pokemon", "train.parquet"]  # no temporary folder


def test_alternative_captions_from_a_column_follow_the_original(tmp_path):
    alternatives = [[f"alt {i}.{k}" for k in range(3)] for i in range(4)]
    alternatives[2] = []  # an image with no alternative keeps its one caption
    table = captioned_table(4, blip=alternatives)
    prepare_captions(
        source=write_parquet(table, tmp_path / "t.parquet"), out=tmp_path / "out", captions_column="blip"
    )
    texts = [record["text"] for record in metadata(tmp_path / "out")]
    assert texts[0] == ["caption 0", "alt 0.0", "alt 0.1", "alt 0.2"] and texts[2] == "caption 2"
    captions = dataset_captions(image_folder(tmp_path / "out"))
    assert captions[3] == ("caption 3", "alt 3.0", "alt 3.1", "alt 3.2")  # the first is the original


def test_save_to_disk_folder_with_raw_bytes_and_other_column_names(tmp_path):
    """An Arrow dataset folder of two stream files is read in its state.json order, columns named by the options;
    the command line passes them (--image-column, --text-column) and its defaults would not find them."""
    table = captioned_table(5, as_struct=False).rename_columns(["picture", "caption"])
    folder = save_to_disk(table, tmp_path / "saved")
    cli.main(
        ["prepare-captions", "--source", str(folder), "--out", str(tmp_path / "out")]
        + ["--image-column", "picture", "--text-column", "caption"]
    )
    assert [r["text"] for r in metadata(tmp_path / "out")] == [f"caption {i}" for i in range(5)]
    loaded = load_dataset(image_folder(tmp_path / "out"))
    np.testing.assert_array_equal(loaded.transpose(0, 2, 3, 1), np.stack([pixels(i) for i in range(5)]))
    with pytest.raises(SystemExit):  # defaults: columns image and text, which this dataset lacks
        cli.main(["prepare-captions", "--source", str(folder), "--out", str(tmp_path / "again")])
    assert not (tmp_path / "again").exists()


def _bad_image(table):
    images = table.column("image").to_pylist()
    images[2] = {"bytes": encoded(2)[:40], "path": None}  # a truncated PNG
    return table.set_column(0, "image", pa.array(images, type=table.schema.field("image").type))


def _text(value):
    def edit(table):
        texts = table.column("text").to_pylist()
        texts[1] = value
        return table.set_column(1, "text", pa.array(texts, pa.string()))

    return edit


@pytest.mark.parametrize(
    ("edit", "options", "message"),
    [
        (lambda t: t, {"text_column": "caption"}, "no column 'caption'; it has \\['image', 'text'\\]"),
        (lambda t: t, {"captions_column": "blip"}, "no column 'blip'"),
        (_bad_image, {}, "row 2: cannot decode its image"),
        (_text(None), {}, "row 1: no text in column 'text'"),
        (_text("  "), {}, "row 1: no text in column 'text'"),
        (
            lambda t: t.append_column("blip", pa.array([["a"], None, ["b"], ["c"]])),
            {"captions_column": "blip"},
            "row 1: column 'blip' must hold a list of non-empty captions",
        ),
    ],
    ids=[
        "missing-text-column",
        "missing-captions-column",
        "undecodable-image",
        "null-text",
        "blank-text",
        "null-alternatives",
    ],
)
def test_bad_input_is_refused_naming_the_problem_and_leaves_no_folder(tmp_path, edit, options, message):
    source = write_parquet(edit(captioned_table(4)), tmp_path / "t.parquet")
    with pytest.raises(DatasetError, match=message):
        prepare_captions(source=source, out=tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == [source]  # neither the folder nor its temporary sibling


def test_an_existing_output_folder_is_refused_and_left_as_it_was(tmp_path, caplog):
    source = write_parquet(captioned_table(4), tmp_path / "t.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with caplog.at_level(logging.ERROR, logger="dualmd"), pytest.raises(SystemExit) as exit_info:
        cli.main(["prepare-captions", "--source", str(source), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "output folder" in caplog.text and "already exists" in caplog.text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.parquet"]


def test_unreadable_sources_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_captions(source=tmp_path / "nothing.parquet", out=tmp_path / "out")
    (tmp_path / "notes.txt").write_text("not a table")
    with pytest.raises(DatasetError, match="cannot read .*notes.txt as Parquet"):
        prepare_captions(source=tmp_path / "notes.txt", out=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no data-\\*.arrow files"):
        prepare_captions(source=tmp_path, out=tmp_path / "out")
    save_to_disk(captioned_table(4), tmp_path / "dict" / "train")
    (tmp_path / "dict" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(DatasetError, match="name one split's folder"):
        prepare_captions(source=tmp_path / "dict", out=tmp_path / "out")
    source = write_parquet(captioned_table(4, blip=[["x"]] * 4), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="not both"):
        prepare_captions(source=source, out=tmp_path / "out", captions_column="blip", blip=tmp_path)
    assert not (tmp_path / "out").exists()


def test_blip_generates_five_seeded_captions_per_image_with_the_authors_settings(tmp_path, monkeypatch):
    """A tiny random BLIP: five captions per image after the original, drawn with nucleus sampling (top_p 0.9,
    5 to 20 tokens, the prompt 'a picture of ' cut off), the same for an image whatever comes before it."""
    from transformers import BlipForConditionalGeneration

    blip = tiny_blip(tmp_path / "blip")
    calls = []
    generate = BlipForConditionalGeneration.generate

    def spy(self, *args, **kwargs):
        calls.append(
            {k: v for k, v in kwargs.items() if k not in ("pixel_values", "input_ids", "attention_mask")}
        )
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(BlipForConditionalGeneration, "generate", spy)
    table = captioned_table(3)
    prepare_captions(source=write_parquet(table, tmp_path / "t.parquet"), out=tmp_path / "out", blip=blip)
    captions = dataset_captions(image_folder(tmp_path / "out"))
    assert [c[0] for c in captions] == ["caption 0", "caption 1", "caption 2"]
    assert all(len(c) == 6 and all(isinstance(t, str) for t in c[1:]) for c in captions)
    assert not any(t.startswith("a picture of") for c in captions for t in c[1:])
    assert len({c[1:] for c in captions}) == 3  # each image its own draws
    assert calls[0] == {
        "do_sample": True,
        "num_beams": 1,
        "top_p": 0.9,
        "min_length": 5,
        "max_length": 20,
        "num_return_sequences": 5,
    }
    # each row draws from its own seed: the same captions whatever was captioned before, other rows others
    caption = blip_captioner(blip)
    image = Image.fromarray(pixels(2))
    first = caption(2, image)
    caption(0, image), caption(1, Image.fromarray(pixels(1)))
    assert caption(2, image) == first == list(captions[2][1:]) and caption(0, image) != first
