"""The CLI is only a parser: each subcommand's options are exactly its stage function's keyword arguments; the
attack stage scores each target on its own members."""

from __future__ import annotations

import importlib
import inspect
import json

import numpy as np
import pytest
import torch
import yaml
from helpers.models import tiny_model_dir

from dualmd import cli
from dualmd.attacks.base import load_scores
from dualmd.data.datasets import save_images
from dualmd.data.splits import Split, save_split
from dualmd.images import save_samples
from dualmd.models.directory import provenance
from dualmd.stage import declarations
from dualmd.stages.attack import score


@pytest.mark.parametrize("name", sorted(declarations()))
def test_subcommand_options_are_the_stage_functions_arguments(name):
    spec = declarations()[name]
    stage = getattr(importlib.import_module(f"dualmd.stages.{spec.module}"), spec.function)
    # what the source text declares is what the decorator recorded
    assert stage.stage == {
        "command": spec.command,
        "config": spec.config,
        "sections": spec.sections,
        "distributed": spec.distributed,
    }
    parser = cli._parser()
    sub = parser._subparsers._group_actions[0].choices[name]  # noqa: SLF001 - argparse has no public accessor
    dests = {a.dest for a in sub._actions if a.dest not in ("help", "threads")}
    params = {
        p.name
        for p in inspect.signature(stage).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert dests == params, name


def test_named_paths_become_a_mapping(monkeypatch):
    seen = {}

    def fake_score(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr("dualmd.stages.attack.score", fake_score)
    monkeypatch.setattr(cli, "set_threads", lambda n: seen.setdefault("threads", n))
    cli.main(
        [
            "attack",
            "--config",
            "c.yaml",
            "--attack",
            "loss",
            "--images",
            "i.npz",
            "--split",
            "s.npz",
            "--split-meta",
            "s.json",
            "--targets",
            "baseline=m/baseline",
            "--targets",
            "student=m/student",
            "--out-dir",
            "o",
            "--threads",
            "3",
        ]
    )
    assert seen["threads"] == 3
    assert {k: str(v) for k, v in seen["targets"].items()} == {
        "baseline": "m/baseline",
        "student": "m/student",
    }
    with pytest.raises(SystemExit):
        cli.main(["attack", "--targets", "no-equals-sign"])


# --- which images the attack stage scores as each target's members ------------------------------------------

# A 12-image dataset split by hand: image i has every pixel equal to 20 * i.
MEMBERS, NONMEMBERS = [2, 5, 7, 8, 10, 11], [0, 1, 3, 4, 6, 9]
HALF1, HALF2 = [5, 8, 11], [2, 7, 10]
EXPECTED_MEMBERS = {
    "baseline": MEMBERS,
    "teacher1": HALF1,  # each teacher: only the half it was trained on
    "teacher2": HALF2,
    "student": MEMBERS,
    "dualmd": MEMBERS,
    "teacher1_ov67": sorted(HALF1 + HALF2[:2]),  # overlap ablation: D1 and floor(67% of 3) = 2 images of D2
    "teacher2_ov100": MEMBERS,  # D2 and all of D1
    "dpsgd_eps10": MEMBERS,
}
# The split subset each model directory records as its training data.
TRAINED_ON = {
    "baseline": "members",
    "teacher1": "half1",
    "teacher2": "half2",
    "student": "members",
    "teacher1_ov67": "half1_ov67",
    "teacher2_ov100": "half2_ov100",
}


@pytest.fixture
def attack_inputs(tmp_path):
    """Images, a saved hand-made split and a config with a one-timestep loss attack and 1-NN distance."""
    pixels = (20 * np.arange(12, dtype=np.uint8)).reshape(12, 1, 1, 1) * np.ones((1, 1, 8, 8), np.uint8)
    save_images(tmp_path / "images.npz", pixels)
    split = Split(MEMBERS, NONMEMBERS, HALF1, HALF2, meta={"num_dataset_images": 12})
    save_split(split, tmp_path / "split.npz", tmp_path / "split.json")
    config = {"attack": {"batch_size": 4, "loss": {"timesteps": [5]}, "nn_distance": {"k": 1}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    paths = {
        "config": "config.yaml",
        "images": "images.npz",
        "split": "split.npz",
        "split_meta": "split.json",
    }
    return split, {key: tmp_path / name for key, name in paths.items()}


def check_membership(out_dir, names):
    """Each target's score file holds exactly its members (is_member True) and the six non-members."""
    for name in names:
        result = load_scores(out_dir / f"{name}.npz")
        ids, is_member = result.sample_ids.tolist(), result.is_member.tolist()
        assert sorted(i for i, m in zip(ids, is_member, strict=True) if m) == EXPECTED_MEMBERS[name], name
        assert sorted(i for i, m in zip(ids, is_member, strict=True) if not m) == NONMEMBERS, name
        assert len(ids) == len(EXPECTED_MEMBERS[name]) + 6 == len(set(ids)), name


def test_attack_stage_scores_each_target_on_its_own_members(tmp_path, attack_inputs):
    """Black-box attack on every sampler: teacher1 on D1, teacher2 on D2, the rest on all members, all against
    the six non-members. With one generated image, a copy of image 5, image i scores -8 * 20 |i - 5| / 127.5
    (64 pixels, each 20 |i - 5| / 127.5 away), which also checks that ids and images stay aligned."""
    _, paths = attack_inputs
    copy_of_5 = torch.full((1, 1, 8, 8), 100 / 127.5 - 1)
    targets = {}
    for name in EXPECTED_MEMBERS:
        targets[name] = tmp_path / "samples" / f"{name}.npz"
        save_samples(copy_of_5, targets[name], tmp_path / "samples" / f"{name}.png")
    score(attack="nn_distance", targets=targets, out_dir=tmp_path / "scores", **paths)
    check_membership(tmp_path / "scores", EXPECTED_MEMBERS)
    result = load_scores(tmp_path / "scores" / "teacher1.npz")
    expected = [-8 * 20 * abs(i - 5) / 127.5 for i in result.sample_ids]
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)


def test_attack_stage_model_attack_uses_each_models_training_subset(tmp_path, attack_inputs):
    """White-box attack on every model with weights (dualmd has none): the same member sets, and each model
    directory's recorded training subset must be the one scored as its members."""
    split, paths = attack_inputs
    targets = {}
    for seed, name in enumerate(TRAINED_ON):
        targets[name] = tiny_model_dir(tmp_path / "models" / name, seed)
        meta = provenance(split, name, TRAINED_ON[name])
        (targets[name] / "metadata.json").write_text(json.dumps(meta))
    score(attack="loss", targets=targets, out_dir=tmp_path / "scores", **paths)
    check_membership(tmp_path / "scores", targets)


def test_sampler_and_pair_attacks_find_each_targets_models_in_the_models_folder(tmp_path, attack_inputs):
    """recon goes through each sampler (dualmd: both teachers), teacher_max scores dualmd on both teachers; the
    stage takes the models from the folder named by --targets and checks each against the split. recon scores only
    what its labelled slice (1 member and 1 non-member of 6 each) did not choose its setting on."""
    split, paths = attack_inputs
    folder = tmp_path / "models"
    for seed, name in enumerate(("baseline", "teacher1", "teacher2")):
        tiny_model_dir(folder / name, seed)
        (folder / name / "metadata.json").write_text(json.dumps(provenance(split, name, TRAINED_ON[name])))
    config = {
        "attack": {
            "batch_size": 4,
            "recon": {"timesteps": [5, 10], "num_queries": [1], "num_steps": 2},
            "pia": {"timestep": 5, "sweep_timesteps": [5]},
        }
    }
    paths["config"].write_text(yaml.safe_dump(config))
    targets = {"baseline": folder, "dualmd": folder}
    score(attack="recon", targets=targets, out_dir=tmp_path / "recon", **paths)
    for name in targets:
        result = load_scores(tmp_path / "recon" / f"{name}.npz")
        assert set(result.sample_ids[result.is_member]) < set(EXPECTED_MEMBERS[name]), name
        assert len(result.sample_ids) == 5 + 5 and set(result.extra) == {
            "t5",
            "t10",
            "timestep",
            "num_queries",
        }
    score(attack="teacher_max", targets={"dualmd": folder}, out_dir=tmp_path / "max", **paths)
    check_membership(tmp_path / "max", ["dualmd"])
    result = load_scores(tmp_path / "max" / "dualmd.npz")
    np.testing.assert_array_equal(
        result.scores, np.maximum(result.extra["teacher1"], result.extra["teacher2"])
    )
    # a teacher directory trained on the wrong half is refused
    (folder / "teacher2" / "metadata.json").write_text(json.dumps(provenance(split, "teacher2", "half1")))
    with pytest.raises(ValueError, match="half1"):
        score(attack="teacher_max", targets={"dualmd": folder}, out_dir=tmp_path / "bad", **paths)


def test_recon_through_the_deployed_sampler_and_its_metrics_per_member_half(tmp_path, attack_inputs):
    """recon's deployed interface runs each sampler's image-to-image query on the grid of the sample section (10-step
    DDIM on T = 20: 18, 16, ..., 0; strength 0.2 starts at timestep 2, 0.5 at 8). The evaluate stage then reports the
    sweep over strength and queries, and, for DualMD and its teachers, each half's scored members against the
    scored non-members: the slice takes the first 2 of 6 members (2, 5) and of 6 non-members, so dualmd keeps
    D1 = {8, 11} and D2 = {7, 10}, teacher1 (slice: image 5) keeps D1 = {8, 11}; the baseline gets no halves."""
    from dualmd.metrics import auc
    from dualmd.stages.metrics import evaluate

    split, paths = attack_inputs
    folder = tmp_path / "models"
    for seed, name in enumerate(("baseline", "teacher1", "teacher2")):
        tiny_model_dir(folder / name, seed)
        (folder / name / "metadata.json").write_text(json.dumps(provenance(split, name, TRAINED_ON[name])))
    recon = {"interface": "deployed", "strengths": [0.2, 0.5], "num_queries": [1], "train_fraction": 0.34}
    config = {
        "attack": {"batch_size": 4, "recon": recon},
        "sample": {"scheduler": "ddim", "num_inference_steps": 10},
        "metrics": {"num_bootstrap": 20},
    }
    paths["config"].write_text(yaml.safe_dump(config))
    targets = {"baseline": folder, "teacher1": folder, "dualmd": folder}
    score(attack="recon", targets=targets, out_dir=tmp_path / "recon", **paths)
    scores = {name: load_scores(tmp_path / "recon" / f"{name}.npz") for name in targets}
    assert set(scores["dualmd"].extra) == {"s0.2_q1", "s0.5_q1", "strength", "timestep", "num_queries"}
    assert set(scores["dualmd"].extra["timestep"]) <= {2.0, 8.0}
    evaluate(
        config=paths["config"],
        attack="recon",
        scores=[tmp_path / "recon" / f"{name}.npz" for name in targets],
        out=tmp_path / "recon.json",
        roc=tmp_path / "roc.csv",
        plot=tmp_path / "roc.png",
        split=paths["split"],
        split_meta=paths["split_meta"],
    )
    rows = {row["target"]: row for row in json.loads((tmp_path / "recon.json").read_text())["rows"]}
    assert "halves" not in rows["baseline"] and list(rows["teacher1"]["halves"]) == ["half1"]
    for name, expected in (
        ("dualmd", {"half1": [8, 11], "half2": [7, 10]}),
        ("teacher1", {"half1": [8, 11]}),
    ):
        result = scores[name]
        for half, members in expected.items():
            keep = np.isin(result.sample_ids, members) | ~result.is_member
            assert sorted(result.sample_ids[keep & result.is_member]) == members
            values = rows[name]["halves"][half]
            assert (values["num_members"], values["num_nonmembers"]) == (2, 4)
            assert values["auc"] == pytest.approx(auc(result.scores[keep], result.is_member[keep]))
            assert values["auc_low"] <= values["auc"] <= values["auc_high"]
    assert rows["teacher1"]["halves"]["half1"]["auc"] == pytest.approx(rows["teacher1"]["auc"])
    sweep = rows["dualmd"]["strength_sweep"]
    assert [(p["strength"], p["num_queries"]) for p in sweep] == [(0.2, 1), (0.5, 1)]
    for point in sweep:
        key = f"s{point['strength']}_q1"
        assert point["auc"] == pytest.approx(auc(scores["dualmd"].extra[key], scores["dualmd"].is_member))


def test_copies_stage_labels_the_closest_pairs_with_their_distances(tmp_path, attack_inputs, monkeypatch):
    """teacher1's members are images 5, 8, 11 (pixels 100, 160, 220). Generated: pixels 140 (8 x 8 pixels,
    each 40 / 127.5 from image 5 and 20 / 127.5 from image 8: d = 8 * 20 / 127.5 = 1.255, ratio
    20 / mean(20, 40) = 0.667) and an exact copy of image 5 (d = 0, ratio 0)."""
    from dualmd import plots
    from dualmd.stages.memorization import copies

    _, paths = attack_inputs
    paths["config"].write_text(yaml.safe_dump({"memorization": {"k_nearest": 2, "num_pairs_shown": 2}}))
    generated = torch.stack([torch.full((1, 8, 8), 140 / 127.5 - 1), torch.full((1, 8, 8), 100 / 127.5 - 1)])
    save_samples(generated, tmp_path / "teacher1.npz", tmp_path / "teacher1.png")
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig) or save(fig, out))
    copies(targets={"teacher1": tmp_path / "teacher1.npz"}, out_dir=tmp_path / "copies", **paths)
    summary = json.loads((tmp_path / "copies" / "teacher1.json").read_text())
    assert summary["closest_pairs"] == [[1, 0], [0, 1]] and summary["num_copies"] == 1
    assert (tmp_path / "copies" / "teacher1_pairs.png").read_bytes()[:4] == b"\x89PNG"
    texts = [t.get_text() for t in figures[0].texts]
    assert [t for t in texts if t.startswith("d = ")] == [
        "d = 0.000\nratio = 0.000\ncopy",
        "d = 1.255\nratio = 0.667",
    ]
    assert [im.get_size() for im in figures[0].images] == [(64, 64)] * 4  # 8 px images shown at 8x
