"""The `python -m dualmd` stages as the workflow runs them: killed and resumed training, clear errors on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dualmd.scores import load_scores

TINY = {
    "model": {"block_out_channels": [16, 32], "norm_num_groups": 8},
    "train": {"batch_size": 16, "warmup_steps": 2, "probe_timesteps": [50], "probe_num_images": 8},
}


def dualmd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dualmd", *map(str, args)], env=env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dualmd {args[0]} failed:\n{proc.stderr[-3000:]}")
    return proc


def write_yaml(path: Path, obj: dict) -> Path:
    path.write_text(yaml.safe_dump(obj))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """64 digits and two different splits of them (seed 0 and seed 1)."""
    root = tmp_path_factory.mktemp("data")
    dualmd(
        "prepare-data",
        "--config",
        write_yaml(root / "data.yaml", {"dataset": {"max_images": 64}}),
        "--out",
        root / "images.npz",
        "--meta",
        root / "images.json",
    )
    for seed in (0, 1):
        cfg = write_yaml(root / f"split{seed}.yaml", {"split": {"num_images": 64, "seed": seed}})
        dualmd(
            "split",
            "--config",
            cfg,
            "--images",
            root / "images.npz",
            "--out",
            root / f"split{seed}.npz",
            "--meta",
            root / f"split{seed}.json",
        )
    return root


def train_args(data: Path, cfg: Path, out: Path, state: Path, model_id: str = "baseline") -> list:
    return [
        "train",
        "--config",
        cfg,
        "--images",
        data / "images.npz",
        "--split",
        data / "split0.npz",
        "--split-meta",
        data / "split0.json",
        "--model",
        model_id,
        "--out",
        out,
        "--state-dir",
        state,
    ]


def test_killed_training_leaves_no_model_and_resumes(data, tmp_path):
    cfg = write_yaml(
        tmp_path / "train.yaml",
        {**TINY, "train": {**TINY["train"], "num_train_steps": 400, "checkpoint_every_steps": 10}},
    )
    out, state = tmp_path / "model", tmp_path / "state"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dualmd", *map(str, train_args(data, cfg, out, state))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not any(state.glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # as a scheduler or an out-of-memory killer would
    proc.wait()
    assert any(state.glob("*.pt")), "no checkpoint was written before the kill"
    assert not out.exists(), "a killed run must not leave a model directory that looks complete"

    dualmd(*train_args(data, cfg, out, state))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["resumed_from_step"] >= 10
    assert meta["num_train_steps"] == 400 and (out / "unet_ema" / "config.json").is_file()


def test_bad_config_is_one_clear_error(data, tmp_path):
    cfg = write_yaml(tmp_path / "train.yaml", {"train": {"num_train_step": 5}})
    proc = dualmd(*train_args(data, cfg, tmp_path / "m", tmp_path / "s"), check=False)
    assert proc.returncode == 2
    assert "train: unknown key(s) ['num_train_step']" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_attack_refuses_a_model_trained_on_another_split(data, tmp_path):
    cfg = write_yaml(tmp_path / "train.yaml", {**TINY, "train": {**TINY["train"], "num_train_steps": 3}})
    model = tmp_path / "model"
    dualmd(*train_args(data, cfg, model, tmp_path / "state"))
    attack_cfg = write_yaml(tmp_path / "attack.yaml", {"attack": {"names": ["loss"]}})
    common = [
        "attack",
        "--config",
        attack_cfg,
        "--attack",
        "loss",
        "--images",
        data / "images.npz",
        "--targets",
        f"baseline={model}",
        "--out-dir",
        tmp_path / "scores",
    ]
    dualmd(*common, "--split", data / "split0.npz", "--split-meta", data / "split0.json")
    assert (tmp_path / "scores" / "baseline.npz").is_file()
    proc = dualmd(*common, "--split", data / "split1.npz", "--split-meta", data / "split1.json", check=False)
    assert proc.returncode == 2
    assert "trained on a different split" in proc.stderr


def test_distill_refuses_swapped_teachers(data, tmp_path):
    cfg = write_yaml(tmp_path / "train.yaml", {**TINY, "train": {**TINY["train"], "num_train_steps": 2}})
    for model_id in ("teacher1", "teacher2"):
        dualmd(*train_args(data, cfg, tmp_path / model_id, tmp_path / f"state_{model_id}", model_id))
    proc = dualmd(
        "distill",
        "--config",
        cfg,
        "--images",
        data / "images.npz",
        "--split",
        data / "split0.npz",
        "--split-meta",
        data / "split0.json",
        "--model",
        "student",
        "--teachers",
        f"teacher1={tmp_path / 'teacher2'}",
        "--teachers",
        f"teacher2={tmp_path / 'teacher1'}",
        "--out",
        tmp_path / "student",
        "--state-dir",
        tmp_path / "state_student",
        check=False,
    )
    assert proc.returncode == 2
    assert "teachers are swapped" in proc.stderr
    assert not (tmp_path / "student").exists()


def test_lira_calibrates_with_reference_models_trained_outside_the_split(data, tmp_path):
    """Two reference models train on their `ref<k>` halves (64 images, 8 members: 16 outside images needed);
    lira scores the target against them, and refuses a reference that trained on the split's members."""
    cfg_split = write_yaml(tmp_path / "split.yaml", {"split": {"num_images": 32, "member_fraction": 0.25}})
    split, split_meta = tmp_path / "split.npz", tmp_path / "split.json"
    dualmd(
        "split", "--config", cfg_split, "--images", data / "images.npz", "--out", split, "--meta", split_meta
    )
    cfg = write_yaml(tmp_path / "train.yaml", {**TINY, "train": {**TINY["train"], "num_train_steps": 3}})
    models = {}
    for name in ("baseline", "reference1", "reference2"):
        models[name] = tmp_path / name
        args = train_args(data, cfg, models[name], tmp_path / f"state_{name}", model_id=name)
        args[args.index("--split") + 1], args[args.index("--split-meta") + 1] = split, split_meta
        dualmd(*args)
    meta = json.loads((models["reference1"] / "metadata.json").read_text())
    assert meta["subset"] == "ref1"
    attack_cfg = write_yaml(
        tmp_path / "attack.yaml",
        {"attack": {"names": ["lira"], "loss": {"timesteps": [50]}, "lira": {"num_reference": 2}}},
    )
    common = ["attack", "--config", attack_cfg, "--attack", "lira", "--images", data / "images.npz"]
    common += ["--split", split, "--split-meta", split_meta, "--targets", f"baseline={models['baseline']}"]
    refs = [f"reference{k}={models[f'reference{k}']}" for k in (1, 2)]
    dualmd(*common, "--out-dir", tmp_path / "scores", "--references", refs[0], "--references", refs[1])
    result = load_scores(tmp_path / "scores" / "baseline.npz")
    assert result.attack == "lira" and result.scores.shape == (32,) and np.isfinite(result.scores).all()

    proc = dualmd(*common, "--out-dir", tmp_path / "bad", "--references", refs[0], check=False)
    assert proc.returncode == 2 and "num_reference = 2 needs reference models" in proc.stderr
    swapped = f"reference2={models['baseline']}"
    proc = dualmd(
        *common,
        "--out-dir",
        tmp_path / "bad",
        "--references",
        refs[0],
        "--references",
        swapped,
        check=False,
    )
    assert proc.returncode == 2 and "ref2" in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_lira_target_recipe_distils_reference_students_from_their_own_shadow_teachers(data, tmp_path):
    """Built like the target: on each reference set, two shadow teachers train on its disjoint halves and a shadow
    student is distilled from exactly those two (their metadata says so); no model of that population trains on a
    member of the split; lira_target scores the student against the shadow students."""
    from dualmd import catalog
    from dualmd.data.splits import load_split

    cfg_split = write_yaml(tmp_path / "split.yaml", {"split": {"num_images": 32, "member_fraction": 0.25}})
    split, split_meta = tmp_path / "split.npz", tmp_path / "split.json"
    dualmd(
        "split", "--config", cfg_split, "--images", data / "images.npz", "--out", split, "--meta", split_meta
    )
    cfg = write_yaml(tmp_path / "train.yaml", {**TINY, "train": {**TINY["train"], "num_train_steps": 2}})
    common = ["--config", cfg, "--images", data / "images.npz", "--split", split, "--split-meta", split_meta]

    def build(name: str) -> Path:
        target, out = catalog.target(name), tmp_path / name
        args = ["--model", name, "--out", out, "--state-dir", tmp_path / f"state_{name}"]
        if target.kind == "distilled":
            args += sum((["--teachers", f"{m}={tmp_path / m}"] for m in target.models), [])
        dualmd("train" if target.kind == "trained" else "distill", *common, *args)
        return out

    students = ["student", *catalog.lira_references("student", 2, "offline", "target")]
    for name in students:
        for teacher in catalog.target(name).models:
            build(teacher)
        build(name)
    the_split = load_split(split, split_meta)
    members = set(the_split.member_idx) | set(the_split.nonmember_idx)
    for k in (1, 2):
        meta = json.loads((tmp_path / f"reference{k}_student" / "metadata.json").read_text())
        teachers = meta["teachers"]
        assert [teachers[t]["model_id"] for t in ("teacher1", "teacher2")] == [
            f"reference{k}_teacher1",
            f"reference{k}_teacher2",
        ]
        halves = [set(the_split.subset(teachers[t]["subset"])) for t in ("teacher1", "teacher2")]
        assert halves[0] and halves[1] and not halves[0] & halves[1]
        assert halves[0] | halves[1] == set(the_split.subset(meta["subset"]))
        for name in (f"reference{k}_teacher1", f"reference{k}_teacher2", f"reference{k}_student"):
            learnt = json.loads((tmp_path / name / "metadata.json").read_text())["subset"]
            assert not set(the_split.subset(learnt)) & members, name  # neither member nor non-member
    attack_cfg = write_yaml(
        tmp_path / "attack.yaml",
        {
            "attack": {
                "names": ["lira_target"],
                "loss": {"timesteps": [50]},
                "lira_target": {"num_reference": 2},
            }
        },
    )
    refs = sum(
        (["--references", f"reference{k}_student={tmp_path / f'reference{k}_student'}"] for k in (1, 2)), []
    )
    dualmd(
        "attack", "--config", attack_cfg, "--attack", "lira_target", "--images", data / "images.npz",
        "--split", split, "--split-meta", split_meta, "--targets", f"student={tmp_path / 'student'}",
        "--out-dir", tmp_path / "scores", *refs,
    )  # fmt: skip
    result = load_scores(tmp_path / "scores" / "student.npz")
    assert (
        result.attack == "lira_target" and result.scores.shape == (32,) and np.isfinite(result.scores).all()
    )

    # GSA's shadow protocol on the same population: the student's classifier trains on the shadow students, teacher
    # 1's on the shadow teachers 1; every candidate is scored
    gsa = {"timesteps": [50, 200], "num_estimators": 5, "num_reference": 2}
    gsa_cfg = write_yaml(tmp_path / "gsa.yaml", {"attack": {"names": ["gsa_shadow"], "gsa_shadow": gsa}})
    roles = [f"reference{k}_{role}" for role in ("student", "teacher1") for k in (1, 2)]
    gsa_args = ["attack", "--config", gsa_cfg, "--attack", "gsa_shadow", "--images", data / "images.npz"]
    gsa_args += ["--split", split, "--split-meta", split_meta, "--targets", f"student={tmp_path / 'student'}"]
    gsa_args += ["--targets", f"teacher1={tmp_path / 'teacher1'}"]
    dualmd(
        *gsa_args,
        "--out-dir",
        tmp_path / "gsa",
        *sum((["--references", f"{m}={tmp_path / m}"] for m in roles), []),
    )
    for name, num_members in (("student", 8), ("teacher1", 4)):
        result = load_scores(tmp_path / "gsa" / f"{name}.npz")
        assert result.attack == "gsa_shadow" and result.scores.shape == (num_members + 24,), name
        assert np.isfinite(result.scores).all() and result.is_member.sum() == num_members
    proc = dualmd(*gsa_args, "--out-dir", tmp_path / "bad", *refs, check=False)
    assert (
        proc.returncode == 2 and "attack.gsa_shadow.num_reference = 2 needs reference models" in proc.stderr
    )


def test_online_target_recipe_distils_each_shadow_student_from_teachers_on_the_halves_of_its_shadow_set(
    data, tmp_path
):
    """Online LiRA built like the target, as the workflow builds shadow set 1: its two shadow teachers train on the
    disjoint halves of shadow1 (candidates: members and non-members), and the shadow student is distilled from
    exactly those two over shadow1 (their metadata says so)."""
    from dualmd import catalog
    from dualmd.data.splits import load_split

    split, split_meta = data / "split0.npz", data / "split0.json"
    cfg = write_yaml(tmp_path / "train.yaml", {**TINY, "train": {**TINY["train"], "num_train_steps": 2}})
    common = ["--config", cfg, "--images", data / "images.npz", "--split", split, "--split-meta", split_meta]
    student = catalog.lira_references("student", 4, "online", "target")[0]
    assert student == "shadow1_student"
    for name in (*catalog.target(student).models, student):
        args = ["--model", name, "--out", tmp_path / name, "--state-dir", tmp_path / f"state_{name}"]
        if name == student:
            args += sum((["--teachers", f"{m}={tmp_path / m}"] for m in catalog.target(name).models), [])
        dualmd("train" if name != student else "distill", *common, *args)
    the_split = load_split(split, split_meta)
    meta = json.loads((tmp_path / student / "metadata.json").read_text())
    assert meta["subset"] == "shadow1"
    teachers = meta["teachers"]
    assert [teachers[t]["model_id"] for t in ("teacher1", "teacher2")] == [
        "shadow1_teacher1",
        "shadow1_teacher2",
    ]
    halves = []
    for role in ("teacher1", "teacher2"):
        learnt = json.loads((tmp_path / f"shadow1_{role}" / "metadata.json").read_text())["subset"]
        assert learnt == teachers[role]["subset"] == f"shadow1_half{role[-1]}"
        halves.append(set(the_split.subset(learnt).tolist()))
    assert halves[0] and halves[1] and not halves[0] & halves[1]
    assert halves[0] | halves[1] == set(the_split.subset("shadow1").tolist())
    candidates = set(the_split.evaluation_indices()[0].tolist())
    assert halves[0] | halves[1] <= candidates and not candidates <= halves[0] | halves[1]
