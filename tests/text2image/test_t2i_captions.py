"""Captions: digit templates, unique original captions, metadata.jsonl captions of an image folder, prompt
diversification."""

import json

import numpy as np
import pytest
from PIL import Image

from dualmd.config.sections import DatasetConfig
from dualmd.data.datasets import DatasetError, DatasetNotFoundError, image_folder_captions, read_captions
from dualmd.text2image.captions import (
    DIGIT_NAMES,
    TAG_LENGTH,
    TAG_WORDS,
    TEMPLATES,
    CaptionSampler,
    caption_tags,
    caption_words,
    dataset_captions,
    digit_captions,
    load_digit_captions,
    with_unique_captions,
)
from dualmd.text2image.tokenizer import load_tokenizer


def test_digit_captions_are_deterministic_and_name_the_digit():
    first, again = load_digit_captions(50), load_digit_captions(50)
    assert first == again
    assert all(len(c) == len(TEMPLATES) for c in first)
    assert first[0][0] == "a handwritten digit zero"  # digit 0 is the first image of scikit-learn's digits
    words = set(caption_words())
    assert all(set(caption.split()) <= words for captions in first for caption in captions)


def test_digit_captions_describe_stroke_and_position():
    blank = np.zeros((3, 8, 8))
    blank[0, 0:2, 0:2] = 1  # little ink, top left
    blank[1, 3:5, 3:5] = 5  # centre
    blank[2, 6:8, :] = 16  # much ink, bottom
    captions = digit_captions(blank, np.array([1, 2, 3]))
    assert captions[0][2] == "a thin one at the top left"
    assert captions[1][2] == "a regular two at the middle centre"
    assert captions[2][2].startswith("a bold three at the bottom")
    assert captions[2][1] == f"the number {DIGIT_NAMES[3]} written in bold strokes"


def test_unique_captions_are_unique_across_the_dataset_and_keep_the_templates_as_alternatives():
    templates = load_digit_captions()
    captions = with_unique_captions(templates, seed=0)
    originals = [c[0] for c in captions]
    assert len(originals) == 1797 and len(set(originals)) == 1797  # every digit of scikit-learn's set
    # no original caption is any image's alternative either: a query with it names one image only
    assert not set(originals) & {t for per in templates for t in per}
    for unique, per_image in zip(captions[:50], templates[:50], strict=True):
        assert unique[1:] == per_image  # the templates, in order, for prompt diversification
        first, tag = unique[0][: len(per_image[0])], unique[0][len(per_image[0]) + 1 :].split()
        assert first == per_image[0] and len(tag) == TAG_LENGTH and set(tag) <= set(TAG_WORDS)


def test_caption_tags_depend_on_image_id_and_seed_only():
    tags = caption_tags(1797, seed=0)
    assert caption_tags(10, seed=0) == tags[:10]  # image i's tag does not depend on the number of images
    assert caption_tags(1797, seed=0) == tags
    other = caption_tags(10, seed=1)
    assert sum(a == b for a, b in zip(other, tags, strict=False)) <= 1  # another seed: other tags
    assert len(caption_tags(len(TAG_WORDS) ** TAG_LENGTH, seed=0)) == 26**3  # every tag, each once
    with pytest.raises(ValueError, match="only 17576 distinct tags"):
        caption_tags(26**3 + 1, seed=0)
    with pytest.raises(ValueError, match="needs a caption"):
        with_unique_captions([("a",), ()], seed=0)


def test_unique_captions_tokenize_word_by_word_without_unknown_tokens():
    tok = load_tokenizer()
    for caption in (c[0] for c in with_unique_captions(load_digit_captions(200), seed=0)):
        ids = tok(caption).input_ids
        assert tok.unk_token_id not in ids[1:-1]  # CLIP's unknown token is its end token
        # BOS, one token per word, EOS: every tag word is in the tiny vocabulary, none is split into bytes
        assert len(ids) == len(caption.split()) + 2 <= tok.model_max_length, caption
        assert tok.decode(ids, skip_special_tokens=True).strip() == caption


def test_sampler_is_reproducible_per_step_and_image_and_uses_every_caption():
    sampler = CaptionSampler(captions=[("a", "b", "c")] * 4, seed=3)
    assert sampler(5, [0, 1, 2]) == sampler(5, [0, 1, 2])
    assert sampler(5, [2]) == sampler(5, [0, 1, 2])[2:]  # independent of the batch it is drawn in
    drawn = {k for step in range(60) for k in sampler.choose(step, [0])}
    assert drawn == {0, 1, 2}
    assert CaptionSampler(captions=[("a", "b")], diversify=False)(7, [0]) == ["a"]


def test_sampler_drops_captions_at_the_configured_rate():
    sampler = CaptionSampler(captions=[("x", "y")] * 200, seed=0, dropout=0.25)
    dropped = np.mean([c == "" for step in range(5) for c in sampler(step, range(200))])
    assert 0.2 < dropped < 0.3
    with pytest.raises(ValueError, match="dropout"):
        CaptionSampler(captions=[("x",)], dropout=1.0)


def _folder(tmp_path, lines):
    for name in ("a.png", "sub/b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4)).save(tmp_path / name)
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_image_folder_captions_follow_the_image_order(tmp_path):
    root = _folder(
        tmp_path,
        [
            json.dumps({"file_name": "sub/b.png", "text": ["b1", "b2"]}),
            "",
            json.dumps({"file_name": "a.png", "text": "a"}),
        ],
    )
    assert image_folder_captions(root) == [("a",), ("b1", "b2")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"file_name": "a.png", "text": "a"}', "{oops"], "metadata.jsonl, line 2: not valid JSON"),
        (['{"file_name": "a.png", "text": []}'], "line 1: 'text' must be a caption or a non-empty list"),
        (['{"text": "a"}'], "line 1: expected an object with a string 'file_name'"),
        (
            ['{"file_name": "a.png", "text": "a"}', '{"file_name": "a.png", "text": "b"}'],
            "line 2: file_name 'a.png' appears twice",
        ),
        (['{"file_name": "a.png", "text": "a"}'], "no caption for image 'sub/b.png'"),
    ],
    ids=["bad-json", "empty-text", "no-file-name", "duplicate", "missing-image"],
)
def test_bad_caption_files_name_file_and_line(tmp_path, lines, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace("[", r"\[")):
        image_folder_captions(_folder(tmp_path, lines))


def test_missing_caption_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="metadata.jsonl does not exist"):
        read_captions(tmp_path / "metadata.jsonl")


def test_dataset_captions_follow_the_dataset(tmp_path):
    assert dataset_captions(DatasetConfig(name="digits", max_images=10)) == load_digit_captions(10)
    root = _folder(
        tmp_path,
        [
            json.dumps({"file_name": "a.png", "text": "a"}),
            json.dumps({"file_name": "sub/b.png", "text": "b"}),
        ],
    )
    assert dataset_captions(DatasetConfig(name="image_folder", root=str(root))) == [("a",), ("b",)]
    with pytest.raises(ValueError, match="has no captions"):
        dataset_captions(DatasetConfig(name="cifar10", root=str(tmp_path)))
