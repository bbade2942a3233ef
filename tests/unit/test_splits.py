"""Member split: invariants, determinism, the authors' half permutation, files and SecMI import."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dualmd.config.sections import SplitConfig
from dualmd.data.members import shadow_in_out, shadow_membership
from dualmd.data.splits import (
    SUBSETS,
    Split,
    SplitError,
    load_split,
    make_split,
    save_split,
    split_sha256,
    subset_sha256,
)

SECMI_DIR = Path(__file__).parents[2] / "resources" / "secmi_splits"
SECMI_FILES = {  # sha256 from resources/secmi_splits/README.md (SecMI commit 41354c9)
    "CIFAR10_train_ratio0.5.npz": "aca922ecee25ef00dc6b6377ebaf7875dfcc77c2cdfe27c873b26a65134aa0c0",
    "CIFAR100_train_ratio0.5.npz": "4b73cc9869bc414f2a87321fd0768f668da346e599ca8cffeea610755c76dae4",
}


def _cfg(**raw):
    return SplitConfig.from_mapping(raw)


def _split(members, nonmembers, half1, half2, num=10):
    return Split(
        np.array(members),
        np.array(nonmembers),
        np.array(half1),
        np.array(half2),
        meta={"num_dataset_images": num},
    )


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("fraction, num_images", [(0.5, 64), (0.3, 50), (0.8, 33), (0.5, None)])
def test_random_split_invariants(seed, fraction, num_images):
    split = make_split(100, _cfg(seed=seed, member_fraction=fraction, num_images=num_images))
    n = 100 if num_images is None else num_images
    m = round(fraction * n)
    assert split.member_idx.size == m and split.nonmember_idx.size == n - m
    assert split.half1_idx.size == m // 2 and split.half2_idx.size == m - m // 2
    taking_part = np.concatenate([split.member_idx, split.nonmember_idx])
    assert np.unique(taking_part).size == n and taking_part.min() >= 0 and taking_part.max() < 100
    assert set(split.half1_idx) | set(split.half2_idx) == set(split.member_idx)
    assert not set(split.half1_idx) & set(split.half2_idx)
    assert all(split.subset(name).dtype == np.int64 for name in SUBSETS)
    split.check()


def test_random_split_follows_seeded_numpy_permutation():
    split = make_split(40, _cfg(seed=3, num_images=20, member_fraction=0.5))
    perm = np.random.default_rng(3).permutation(40)
    assert np.array_equal(split.member_idx, perm[:10]) and np.array_equal(split.nonmember_idx, perm[10:20])
    assert not np.array_equal(split.member_idx, make_split(40, _cfg(seed=4, num_images=20)).member_idx)


def test_halves_reproduce_the_authors_torch_randperm():
    split = make_split(60, _cfg(num_images=30, half_seed=1234))
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(1234)).numpy()
    assert np.array_equal(split.half1_idx, split.member_idx[perm[:7]])
    assert np.array_equal(split.half2_idx, split.member_idx[perm[7:]])
    other = make_split(60, _cfg(num_images=30, half_seed=1))
    assert np.array_equal(other.member_idx, split.member_idx)  # half_seed changes only the halves
    assert not np.array_equal(other.half1_idx, split.half1_idx)


@pytest.mark.parametrize(
    "num_dataset, raw, message",
    [
        (10, {"num_images": 20}, "exceeds"),
        (100, {"num_images": 4, "member_fraction": 0.1}, "at least 2 members"),
    ],
    ids=["too_many_images", "too_few_members"],
)
def test_impossible_random_split_is_rejected(num_dataset, raw, message):
    with pytest.raises(SplitError, match=message):
        make_split(num_dataset, _cfg(**raw))


def test_save_is_deterministic_and_round_trips(tmp_path):
    cfg = _cfg(seed=5, num_images=40)
    paths = []
    for name in ("a", "b"):
        save_split(make_split(100, cfg), tmp_path / f"{name}.npz", tmp_path / f"{name}.json")
        paths.append((tmp_path / f"{name}.npz", tmp_path / f"{name}.json"))
    (npz_a, json_a), (npz_b, json_b) = paths
    assert npz_a.read_bytes() == npz_b.read_bytes() and json_a.read_bytes() == json_b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.json",
        "a.npz",
        "b.json",
        "b.npz",
    ]  # no temp files

    split = make_split(100, cfg)
    loaded = load_split(npz_a, json_a)
    for name in SUBSETS:
        assert np.array_equal(loaded.subset(name), split.subset(name))
    assert loaded.meta == split.meta and loaded.meta["seed"] == 5
    sidecar = json.loads(json_a.read_text())
    assert sidecar["sha256"]["half2"] == subset_sha256(split.half2_idx)
    assert sidecar["counts"] == {"members": 20, "nonmembers": 20, "half1": 10, "half2": 10}
    assert sidecar["npz_sha256"] == hashlib.sha256(npz_a.read_bytes()).hexdigest()
    assert split_sha256(npz_a) == split.fingerprint() == sidecar["fingerprint"]


def test_subset_sha256_is_little_endian_int64_bytes():
    idx = np.array([3, 1, 2], dtype=np.int32)
    assert subset_sha256(idx) == hashlib.sha256(np.array([3, 1, 2], "<i8").tobytes()).hexdigest()
    assert subset_sha256(idx) != subset_sha256(idx[::-1])  # order matters: it is the training order


@pytest.mark.parametrize(
    "parts, message",
    [
        (([0, 1, 2, 3], [3, 4, 5], [0, 1], [2, 3]), "1 members also appear in non-members"),
        (([0, 1, 2, 3], [4, 5], [0, 1, 2], [2, 3]), "1 indices appear in both half1 and half2"),
        (([0, 1, 2, 3], [4, 5], [0, 1], [2]), "1 members are in neither half1 nor half2"),
        (([0, 1, 2], [4, 5], [0, 1], [2, 6]), "1 half1/half2 indices are not members"),
        (([0, 1, 2, 12], [4, 15, -1], [0, 1], [2, 12]), "2 nonmembers indices outside"),
        (([0, 1, 2, 2], [4, 5], [0, 1], [2, 2]), "1 duplicate indices in members"),
        (([0, 1], [], [0], [1]), "subset nonmembers is empty"),
    ],
    ids=[
        "member_nonmember_overlap",
        "halves_overlap",
        "member_missing_from_halves",
        "half_not_member",
        "out_of_range",
        "duplicates",
        "empty",
    ],
)
def test_each_invariant_violation_is_named(parts, message):
    split = _split(*parts)
    with pytest.raises(SplitError, match=message):
        split.check()


def test_invalid_split_is_never_written(tmp_path):
    bad = _split([0, 1, 2, 3], [3, 4], [0, 1], [2, 3])
    with pytest.raises(SplitError, match="members also appear in non-members"):
        save_split(bad, tmp_path / "s.npz", tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == []


def test_unknown_subset_name_is_an_error():
    with pytest.raises(SplitError, match="unknown split subset 'train'"):
        make_split(20, _cfg(num_images=8)).subset("train")


def test_overlap_subsets_add_the_first_part_of_the_other_half():
    split = _split([0, 1, 2, 3, 4, 5, 6], [7, 8], [3, 0, 5], [6, 1, 4, 2])
    assert split.subset("half1_ov50").tolist() == [3, 0, 5, 6, 1]  # D1, then floor(50% of 4) images of D2
    assert split.subset("half2_ov34").tolist() == [6, 1, 4, 2, 3]  # floor(34% of 3) = 1
    assert sorted(split.subset("half1_ov100")) == sorted(split.subset("half2_ov100")) == list(range(7))
    assert split.sha256("half1_ov50") == subset_sha256(np.array([3, 0, 5, 6, 1]))
    for bad in ("half1_ov0", "half2_ov101"):
        with pytest.raises(SplitError, match="overlap must be 1 to 100 percent"):
            split.subset(bad)
    with pytest.raises(SplitError, match="unknown split subset 'half3_ov5'"):
        split.subset("half3_ov5")


def test_reference_halves_come_from_outside_the_split():
    """LiRA's reference models never see a member or a non-member, and the same split gives the same sets."""
    split = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=3))  # 10 members, 160 outside
    population = split.reference_population()
    assert population.size == 20 and np.unique(population).size == 20
    assert not set(population) & set(np.concatenate([split.member_idx, split.nonmember_idx]))
    ref1, ref2 = split.subset("ref1"), split.subset("ref2")
    assert ref1.size == ref2.size == split.member_idx.size
    assert set(ref1) <= set(population) and set(ref2) <= set(population)
    assert not np.array_equal(ref1, ref2)  # each reference model draws its own half
    again = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=3))
    assert again.subset("ref1").tolist() == ref1.tolist() and split.sha256("ref2") == again.sha256("ref2")
    other = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=4))
    assert not np.array_equal(other.reference_population(), population)
    for bad in ("ref0", "ref01", "refx"):
        with pytest.raises(SplitError, match="unknown split subset"):
            split.subset(bad)


def test_reference_set_halves_are_disjoint_and_make_up_the_reference_set():
    """DistillMD rebuilt on reference set k: its teachers' halves split ref<k> in two, outside the split."""
    split = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=3))
    inside = set(np.concatenate([split.member_idx, split.nonmember_idx]))
    for k in (1, 2):
        half1, half2 = split.subset(f"ref{k}_half1"), split.subset(f"ref{k}_half2")
        assert half1.size == half2.size == 5 and not set(half1) & set(half2)
        assert sorted([*half1, *half2]) == sorted(split.subset(f"ref{k}")) and not set(half1) & inside
    assert not np.array_equal(split.subset("ref1_half1"), split.subset("ref2_half1"))
    for bad in ("ref1_half3", "ref1_half", "ref1_half01"):
        with pytest.raises(SplitError, match="unknown split subset"):
            split.subset(bad)


def test_gsa_shadow_images_of_a_reference_model_are_its_training_set_and_unseen_population_images():
    """GSA's shadow protocol features a reference model on the images it trained on (IN) and as many images of the
    reference population that no model of its reference set trained on (OUT): never a member or a non-member."""
    split = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=3))  # 10 members, population of 20
    candidates = set(split.evaluation_indices()[0])
    population = split.reference_population().tolist()
    for name, trained, size in [
        ("reference1", "ref1", 10),
        ("reference1@24", "ref1", 10),
        ("reference2_student", "ref2", 10),
        ("reference2_teacher1", "ref2_half1", 5),
        ("reference2_teacher2", "ref2_half2", 5),
    ]:
        in_ids, out_ids = shadow_in_out(split, name)
        assert in_ids.tolist() == split.subset(trained).tolist() and out_ids.size == size, name
        reference_set = set(split.subset(f"ref{name[9]}"))  # every model of that set trained inside it
        unseen = [i for i in population if i not in reference_set]  # in the population's order
        assert out_ids.tolist() == unseen[:size], name
        assert not (set(in_ids) | set(out_ids)) & candidates, name
    for bad in ("shadow1", "baseline", "teacher1"):  # online shadow models train on candidates
        with pytest.raises(ValueError, match="is not an offline reference model"):
            shadow_in_out(split, bad)


@pytest.mark.parametrize("num_shadow", [2, 4, 6])
def test_online_shadow_sets_are_balanced_halves_of_the_candidates(num_shadow):
    """Each shadow model trains on half of the candidates (members and non-members), every candidate is IN for
    exactly K / 2 of K shadow models, and the same split gives the same sets."""
    split = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=3))
    candidates, _ = split.evaluation_indices()
    sets = [split.subset(f"shadow{k}") for k in range(1, num_shadow + 1)]
    assert all(s.size == candidates.size // 2 and set(s) <= set(candidates) for s in sets)
    is_in = np.stack([np.isin(candidates, s) for s in sets])  # (K, N)
    assert (is_in.sum(axis=0) == num_shadow // 2).all()
    assert len({tuple(s) for s in sets}) == num_shadow  # no two shadow models share a training set
    again = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=3))
    assert all(np.array_equal(again.subset(f"shadow{k}"), s) for k, s in enumerate(sets, start=1))
    other = make_split(200, _cfg(num_images=40, member_fraction=0.25, seed=4))
    assert not np.array_equal(np.sort(other.subset("shadow1")), np.sort(sets[0]))
    # the draw is random: both members and non-members are IN for some shadow model 1
    assert np.isin(split.member_idx, sets[0]).any() and np.isin(split.nonmember_idx, sets[0]).any()


def test_reference_population_needs_twice_the_members_outside_the_split():
    split = make_split(45, _cfg(num_images=40, member_fraction=0.25))  # 10 members, 5 images outside
    with pytest.raises(SplitError, match="needs 2 x 10 = 20 dataset images outside the split, but only 5"):
        split.subset("ref1")


def test_sidecar_tampering_is_caught(tmp_path):
    save_split(make_split(50, _cfg(num_images=20)), tmp_path / "s.npz", tmp_path / "s.json")
    sidecar = json.loads((tmp_path / "s.json").read_text())
    sidecar["sha256"]["half1"] = subset_sha256(np.array([1, 2, 3]))
    (tmp_path / "s.json").write_text(json.dumps(sidecar))
    with pytest.raises(SplitError, match=r"s\.npz.*'half1'.*s\.json"):
        load_split(tmp_path / "s.npz", tmp_path / "s.json")


def test_edited_split_file_is_caught(tmp_path):
    split = make_split(50, _cfg(num_images=20))
    save_split(split, tmp_path / "s.npz", tmp_path / "s.json")
    with np.load(tmp_path / "s.npz") as archive:
        arrays = dict(archive)
    # a consistent edit (members and D1 swap one image for a non-member) passes the invariants ...
    swapped_in, swapped_out = arrays["nonmember_idx"][0], arrays["half1_idx"][0]
    for key in ("member_idx", "half1_idx"):
        arrays[key] = np.where(arrays[key] == swapped_out, swapped_in, arrays[key])
    arrays["nonmember_idx"] = np.where(
        arrays["nonmember_idx"] == swapped_in, swapped_out, arrays["nonmember_idx"]
    )
    np.savez(tmp_path / "s.npz", **arrays)
    load_split(tmp_path / "s.npz")
    # ... but not the sidecar's hashes
    with pytest.raises(SplitError, match="'members'"):
        load_split(tmp_path / "s.npz", tmp_path / "s.json")


def test_load_split_rejects_broken_files(tmp_path):
    with pytest.raises(SplitError, match="missing.npz"):
        load_split(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SplitError, match="junk.npz"):
        load_split(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", member_idx=np.arange(4))
    with pytest.raises(SplitError, match="partial.npz.*missing key"):
        load_split(tmp_path / "partial.npz")


def _secmi_file(path, members, nonmembers):
    np.savez(path, mia_train_idxs=np.array(members), mia_eval_idxs=np.array(nonmembers), ratio=np.array(0.5))
    return _cfg(source="secmi", secmi_file=str(path))


def test_secmi_import_keeps_stored_order(tmp_path):
    cfg = _secmi_file(tmp_path / "s.npz", [9, 3, 7, 1], [0, 2, 4])
    split = make_split(10, cfg)
    assert split.member_idx.tolist() == [9, 3, 7, 1] and split.nonmember_idx.tolist() == [0, 2, 4]
    assert split.meta["source"] == "secmi" and split.meta["secmi_file"] == "s.npz"


@pytest.mark.parametrize(
    "members, nonmembers, num, message",
    [([0, 1, 2, 3], [3, 4], 10, "1 members also appear in non-members"), ([0, 1, 2], [3, 10], 10, "outside")],
    ids=["overlap", "out_of_range"],
)
def test_bad_secmi_file_is_rejected(tmp_path, members, nonmembers, num, message):
    with pytest.raises(SplitError, match=f"s.npz.*{message}"):
        make_split(num, _secmi_file(tmp_path / "s.npz", members, nonmembers))


def test_secmi_missing_file_or_key(tmp_path):
    with pytest.raises(SplitError, match="nope.npz does not exist"):
        make_split(10, _cfg(source="secmi", secmi_file=str(tmp_path / "nope.npz")))
    np.savez(tmp_path / "k.npz", mia_train_idxs=np.arange(3))
    with pytest.raises(SplitError, match="missing key.*mia_eval_idxs"):
        make_split(10, _cfg(source="secmi", secmi_file=str(tmp_path / "k.npz")))


@pytest.mark.parametrize("file_name, sha256", SECMI_FILES.items(), ids=["cifar10", "cifar100"])
def test_official_secmi_split_imports_exactly(file_name, sha256):
    path = SECMI_DIR / file_name
    if not path.is_file():
        pytest.skip(f"SecMI split file not in the checkout: {path}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    split = make_split(50_000, _cfg(source="secmi", secmi_file=str(path)))
    with np.load(path) as raw:
        assert np.array_equal(split.member_idx, raw["mia_train_idxs"])
        assert np.array_equal(split.nonmember_idx, raw["mia_eval_idxs"])
    assert split.member_idx.size == split.nonmember_idx.size == 25_000
    assert split.half1_idx.size == split.half2_idx.size == 12_500
    assert split.meta["secmi_file_sha256"] == sha256
    with pytest.raises(SplitError, match="outside"):  # CIFAR indices do not fit a smaller dataset
        make_split(1_797, _cfg(source="secmi", secmi_file=str(path)))


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    import dualmd.files

    def killed(src, dst):
        raise KeyboardInterrupt  # the job dies between writing the temp file and renaming it

    monkeypatch.setattr(dualmd.files.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_split(make_split(20, _cfg(num_images=8)), tmp_path / "s.npz", tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == []


# --- lists source: the authors' fixed Stable Diffusion split ------------------------------------------------


def _lists(tmp_path, members, nonmembers, **raw):
    (tmp_path / "members.txt").write_text("\n".join(members) + "\n")
    (tmp_path / "nonmembers.txt").write_text("\n".join(nonmembers) + "\n\n")
    return SplitConfig.from_mapping(
        {
            "source": "lists",
            "member_list": str(tmp_path / "members.txt"),
            "nonmember_list": str(tmp_path / "nonmembers.txt"),
            **raw,
        }
    )


# Dataset order: sorted relative paths, so the test images come before the training images.
NAMES = [f"test/{i:04d}.png" for i in range(5)] + [f"train/{i:04d}.png" for i in range(6)]


def test_lists_take_members_and_non_members_in_file_order_and_halve_in_order(tmp_path):
    members = [f"train/{i:04d}.png" for i in (3, 0, 1, 5, 4, 2)]  # the given order, not sorted
    cfg = _lists(tmp_path, members, [f"test/{i:04d}.png" for i in range(5)], halves="ordered")
    split = make_split(len(NAMES), cfg, image_names=NAMES)
    np.testing.assert_array_equal(split.member_idx, [8, 5, 6, 10, 9, 7])
    np.testing.assert_array_equal(split.nonmember_idx, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(split.half1_idx, [8, 5, 6])  # the first half of the list, D1
    np.testing.assert_array_equal(split.half2_idx, [10, 9, 7])
    assert split.meta["source"] == "lists" and split.meta["halves"] == "ordered"
    assert split.meta["member_list"] == "members.txt" and len(split.meta["member_list_sha256"]) == 64
    permuted = make_split(len(NAMES), _lists(tmp_path, members, ["test/0000.png"]), image_names=NAMES)
    assert set(permuted.half1_idx) != {8, 5, 6} and "halves" not in permuted.meta


@pytest.mark.parametrize(
    ("members", "nonmembers", "message"),
    [
        (["train/0000.png", "train/9999.png"], ["test/0000.png"], r"1 name\(s\) not in the image folder"),
        (
            ["train/0000.png", "train/0000.png"],
            ["test/0000.png"],
            "line 2: 'train/0000.png' is already on line 1",
        ),
        (["train/0000.png", "test/0000.png"], ["test/0000.png"], "on both split lists"),
        ([""], ["test/0000.png"], "names no image"),
    ],
    ids=["unknown", "twice", "both", "empty"],
)
def test_bad_lists_say_which_file_and_name(tmp_path, members, nonmembers, message):
    with pytest.raises(SplitError, match=message):
        make_split(len(NAMES), _lists(tmp_path, members, nonmembers), image_names=NAMES)


def test_lists_need_the_image_names_and_both_files(tmp_path):
    cfg = _lists(tmp_path, ["train/0000.png", "train/0001.png"], ["test/0000.png"])
    with pytest.raises(SplitError, match="needs the file name of each"):
        make_split(len(NAMES), cfg)
    with pytest.raises(ValueError, match="split.nonmember_list: required when source is 'lists'"):
        SplitConfig.from_mapping({"source": "lists", "member_list": "m.txt"})
    missing = SplitConfig.from_mapping({"source": "lists", "member_list": "m.txt", "nonmember_list": "n.txt"})
    with pytest.raises(SplitError, match="split list m.txt does not exist"):
        make_split(len(NAMES), missing, image_names=NAMES)


def test_new_split_keys_at_their_defaults_leave_the_stage_config_unchanged():
    assert set(SplitConfig().to_dict()) == {
        "source",
        "secmi_file",
        "num_images",
        "member_fraction",
        "seed",
        "half_seed",
    }
    assert SplitConfig(halves="ordered").to_dict()["halves"] == "ordered"


def test_reading_a_split_imports_no_torch():
    """Every evaluation job reads the split for its per-half metrics; importing torch there would cost each job
    seconds. A fresh interpreter must load the reading side of the module without torch."""
    import subprocess
    import sys

    code = "import sys; from dualmd.data.splits import load_split; import dualmd.stages.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("num_shadow", [4, 8])
def test_shadow_set_halves_split_it_so_every_candidate_meets_each_teacher_role_equally(num_shadow):
    """DistillMD rebuilt on shadow set k (online LiRA built like the target): the halves of shadow<k> are disjoint,
    make up shadow<k> and hold half of it up to one; every candidate is in half 1 of exactly K / 4 shadow sets and
    in half 2 of K / 4, so each shadow teacher role has it IN for some models and OUT for the others."""
    split = make_split(200, _cfg(num_images=42, member_fraction=0.25, seed=3))  # 10 members, 32 non-members
    candidates, _ = split.evaluation_indices()
    in_half = {1: [], 2: []}
    for k in range(1, num_shadow + 1):
        own = split.subset(f"shadow{k}")
        half1, half2 = split.subset(f"shadow{k}_half1"), split.subset(f"shadow{k}_half2")
        assert not set(half1) & set(half2) and sorted([*half1, *half2]) == own.tolist(), k
        assert abs(half1.size - own.size / 2) <= 1 and abs(half2.size - own.size / 2) <= 1, k
        in_half[1].append(np.isin(candidates, half1))
        in_half[2].append(np.isin(candidates, half2))
    for half in (1, 2):
        assert (np.sum(in_half[half], axis=0) == num_shadow // 4).all(), half
    # each set is cut on its own: the cuts of sets 1 and 3 (different pairs) are no copy of one another
    assert not np.array_equal(split.subset("shadow1_half1"), split.subset("shadow3_half2"))
    again = make_split(200, _cfg(num_images=42, member_fraction=0.25, seed=3))
    assert again.subset("shadow2_half2").tolist() == split.subset("shadow2_half2").tolist()
    for bad in ("shadow1_half3", "shadow1_half", "shadow0_half1"):
        with pytest.raises(SplitError, match="unknown split subset"):
            split.subset(bad)


def test_online_target_membership_of_a_shadow_student_is_its_shadow_set_and_of_a_teacher_its_half():
    """The is_in matrix that calibrates online LiRA built like the target, on a hand-built split of 8 candidates:
    the shadow student of set k (and the baseline-recipe shadow<k>) counts a candidate IN iff it is in shadow<k>,
    either half; shadow teacher 1 iff it is in shadow<k>_half1, teacher 2 iff in shadow<k>_half2."""
    split = _split([0, 1, 2, 3], [4, 5, 6, 7], [0, 1], [2, 3], num=8)
    ids = np.array([7, 0, 5, 2, 3, 6, 1, 4])  # candidates in another order than the split's
    models = ["shadow1_student", "shadow1_teacher1", "shadow1_teacher2", "shadow1", "shadow2_student"]
    is_in = shadow_membership(split, models, ids)
    own = set(split.subset("shadow1").tolist())
    half1, half2 = set(split.subset("shadow1_half1").tolist()), set(split.subset("shadow1_half2").tolist())
    assert len(own) == 4 and half1 and half2  # 8 candidates: 4 in the set, each half non-empty
    assert is_in.shape == (5, 8) and is_in.dtype == bool
    assert is_in[0].tolist() == [int(i) in own for i in ids] == is_in[3].tolist()
    assert is_in[1].tolist() == [int(i) in half1 for i in ids]
    assert is_in[2].tolist() == [int(i) in half2 for i in ids]
    assert not (is_in[1] & is_in[2]).any() and ((is_in[1] | is_in[2]) == is_in[0]).all()
    assert (is_in[0] ^ is_in[4]).all()  # sets 1 and 2: complementary halves of the candidates


def test_online_target_membership_lets_every_teacher_role_calibrate_every_candidate():
    """With K = 8 the shadow teachers of one role have every candidate IN twice and OUT six times, so online LiRA
    fits IN and OUT Gaussians for every candidate, pooled or per candidate; the shadow students have it IN four
    times, as the baseline-recipe shadow models."""
    from dualmd.attacks.lira import ReferenceStatistics

    split = make_split(200, _cfg(num_images=42, member_fraction=0.25, seed=3))
    ids, _ = split.evaluation_indices()
    values = np.random.default_rng(0).normal(size=(8, ids.size))
    for role in ("teacher1", "teacher2", "student"):
        is_in = shadow_membership(split, [f"shadow{k}_{role}" for k in range(1, 9)], ids)
        assert (is_in.sum(axis=0) == (4 if role == "student" else 2)).all(), role
        statistics = ReferenceStatistics(ids, values, "loss", is_in=is_in)
        for pooled in (True, False):
            moments = statistics.in_out_distributions(ids[::-1], pooled)
            assert all(np.isfinite(m).all() for m in moments) and (moments[1] > 0).all(), role
