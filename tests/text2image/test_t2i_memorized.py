"""Memorized prompts: the choice of the repeated images (deterministic, inside one half, recorded), the training
sets that repeat them, and the captions of the run."""

import numpy as np
import pytest

from dualmd.config.text2image import MemorizedPromptsConfig
from dualmd.data.splits import Split
from dualmd.defense.distill import check_teachers
from dualmd.models.directory import check_model_matches_split, provenance
from dualmd.text2image.memorized import (
    candidate_ids,
    load_selection,
    run_captions,
    save_selection,
    select_memorized_prompts,
    training_ids,
    training_record,
)

#: 24 images: members 0..15 (D1 = even ids, D2 = odd ids), non-members 16..23.
SPLIT = Split(
    member_idx=np.arange(16),
    nonmember_idx=np.arange(16, 24),
    half1_idx=np.arange(0, 16, 2),
    half2_idx=np.arange(1, 16, 2),
    meta={"num_dataset_images": 24},
)


def captions(shared=(), nonmember_copies=()):
    """Per image: a generic caption and a specific one ("image <i>"); ids in `shared` give their specific
    caption to member 1 too, ids in `nonmember_copies` to non-member 16."""
    out = [(f"a digit {i % 3}", f"image {i}") for i in range(24)]
    for i in shared:
        out[1] = (*out[1], f"image {i}")
    for i in nonmember_copies:
        out[16] = (*out[16], f"image {i}")
    return out


CFG = MemorizedPromptsConfig(num_images=2, repeats=5, half="half1", prompt_caption=1, seed=3)


def test_candidates_are_the_half_images_whose_prompt_no_other_member_has():
    # D1 = 0, 2, ..., 14; member 1 also carries "image 4", non-member 16 "image 6" (non-members never train)
    ids = candidate_ids(SPLIT, captions(shared=[4], nonmember_copies=[6]), "half1", 1)
    assert ids.tolist() == [0, 2, 6, 8, 10, 12, 14]
    # the generic caption 0 is shared by a third of the members: no candidate at all
    assert candidate_ids(SPLIT, captions(), "half1", 0).size == 0


def test_selection_is_deterministic_disjoint_and_inside_one_half():
    first = select_memorized_prompts(SPLIT, captions(), CFG)
    assert first == select_memorized_prompts(SPLIT, captions(), CFG)
    assert len(first.memorized_ids) == len(first.other_ids) == 2
    assert not set(first.memorized_ids) & set(first.other_ids)
    assert set(first.image_ids) <= set(SPLIT.half1_idx.tolist())
    assert not set(first.image_ids) & set(SPLIT.half2_idx.tolist())
    assert first.prompt(first.memorized_ids[0]) == f"image {first.memorized_ids[0]}"
    other_seed = select_memorized_prompts(
        SPLIT, captions(), MemorizedPromptsConfig(**{**vars(CFG), "seed": 4})
    )
    assert other_seed.image_ids != first.image_ids  # the seed chooses
    second_half = select_memorized_prompts(
        SPLIT, captions(), MemorizedPromptsConfig(**{**vars(CFG), "half": "half2"})
    )
    assert set(second_half.image_ids) <= set(SPLIT.half2_idx.tolist())


def test_selection_refuses_too_few_candidates_and_an_off_config():
    with pytest.raises(ValueError, match="has 7 images whose caption 1 no other member shares"):
        select_memorized_prompts(
            SPLIT, captions(shared=[4]), MemorizedPromptsConfig(num_images=4, prompt_caption=1)
        )
    with pytest.raises(ValueError, match="nothing to select"):
        select_memorized_prompts(SPLIT, captions(), MemorizedPromptsConfig(num_images=0))


def test_selection_is_recorded_and_refused_with_another_split(tmp_path):
    selection = select_memorized_prompts(SPLIT, captions(), CFG)
    save_selection(selection, tmp_path / "prompts.json")
    assert load_selection(tmp_path / "prompts.json", SPLIT) == selection
    assert load_selection(None) is None
    other = Split(SPLIT.member_idx, SPLIT.nonmember_idx, SPLIT.half2_idx, SPLIT.half1_idx, SPLIT.meta)
    with pytest.raises(ValueError, match="made for another split"):
        load_selection(tmp_path / "prompts.json", other)


def test_training_sets_repeat_the_memorized_images_only_in_their_half():
    selection = select_memorized_prompts(SPLIT, captions(), CFG)
    memorized = set(selection.memorized_ids)
    half1 = training_ids(SPLIT.half1_idx, selection)
    counts = {i: int((half1 == i).sum()) for i in SPLIT.half1_idx.tolist()}
    assert {i: c for i, c in counts.items() if c > 1} == dict.fromkeys(memorized, 5)
    assert len(half1) == 8 + 2 * 4  # every image once, 4 more copies of each memorized image
    # teacher 2's set is untouched, the baseline's repeats the same images; the halves stay disjoint
    np.testing.assert_array_equal(training_ids(SPLIT.half2_idx, selection), SPLIT.half2_idx)
    assert not set(half1.tolist()) & set(training_ids(SPLIT.half2_idx, selection).tolist())
    baseline = training_ids(SPLIT.member_idx, selection)
    assert len(baseline) == 16 + 8 and set(baseline.tolist()) == set(SPLIT.member_idx.tolist())
    np.testing.assert_array_equal(training_ids(SPLIT.half1_idx, None), SPLIT.half1_idx)
    assert training_record(SPLIT.half2_idx, selection)["memorized_prompts"]["repeated_ids"] == []


def test_repeats_leave_the_split_leak_checks_intact():
    """A model's provenance names its subset's distinct ids, so teachers trained with repeats pass the checks
    of distillation and attacks, and swapped ones still fail."""
    selection = select_memorized_prompts(SPLIT, captions(), CFG)
    metas = {
        h: {**provenance(SPLIT, f"teacher{h[-1]}", h), **training_record(SPLIT.subset(h), selection)}
        for h in ("half1", "half2")
    }
    assert metas["half1"]["memorized_prompts"]["repeated_ids"] == list(selection.memorized_ids)
    check_teachers(
        metas["half1"],
        metas["half2"],
        half1_sha256=SPLIT.sha256("half1"),
        half2_sha256=SPLIT.sha256("half2"),
        split_fingerprint=SPLIT.fingerprint(),
    )
    check_model_matches_split(metas["half1"], expected_subset="half1", expected_sha256=SPLIT.sha256("half1"))
    with pytest.raises(ValueError, match="swapped"):
        check_teachers(
            metas["half2"],
            metas["half1"],
            half1_sha256=SPLIT.sha256("half1"),
            half2_sha256=SPLIT.sha256("half2"),
        )


def test_run_captions_put_each_chosen_prompt_first():
    selection = select_memorized_prompts(SPLIT, captions(), CFG)
    run = run_captions(captions(), selection)
    for i in selection.image_ids:
        assert run[i] == (f"image {i}", f"a digit {i % 3}")
    untouched = [i for i in range(24) if i not in selection.image_ids]
    assert all(run[i] == captions()[i] for i in untouched)
    assert run_captions(captions(), None) == captions()
