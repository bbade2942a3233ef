"""Scale-out on real engines: DVC against an S3 API (moto's server on 127.0.0.1) and the workflow on a one-node
SLURM cluster (`tests/cluster/slurm.sh`) through the project's SLURM profile.

The tiny config runs twice, side by side: through the SLURM executor and locally through `dvc repro` (the
reference the SLURM run must reproduce, and the run the S3 tests push and pull). Marked `cluster`: only
`python -m pytest -m cluster` runs these tests (see tests/conftest.py). They need root, apt on a machine without
SLURM, and `dvc-s3` and `moto[server]` (the `test` extra).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from helpers.projects import (
    ROOT,
    TEST_CONFIG,
    assert_pulled_like,
    clone_and_pull,
    command_env,
    copy_project,
    dvc_run,
    edit_config,
    parse_job_stats,
    run,
    tree_hashes,
)

pytestmark = pytest.mark.cluster

CLUSTER_PROFILE = ROOT / "tests/cluster/profile"
BUCKET = "dualmd-team"
# fake credentials for moto; a real team sets its own through the usual AWS variables or ~/.aws
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server on port {port} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@pytest.fixture(scope="module")
def reference_run(tiny_runs) -> Path:
    """The tiny config run locally through `dvc repro` (see `tiny_runs`)."""
    return tiny_runs.reference


@pytest.fixture
def s3_endpoint(tmp_path) -> Iterator[str]:
    """An S3 API (moto in server mode) on a free port of 127.0.0.1 holding one empty bucket; stopped afterwards."""
    port = free_port()
    with open(tmp_path / "moto.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def s3_client(url: str):
    """A boto3 S3 client of the test server at `url`, with the tests' fake credentials."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    )


def bucket_keys(url: str) -> list[str]:
    pages = s3_client(url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def add_s3_remote(project: Path, endpoint: str) -> None:
    """The S3 form of the team remote in docs/scale-out.md, pointed at `endpoint`."""
    run(["dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/dualmd"], cwd=project)
    run(["dvc", "remote", "modify", "team", "endpointurl", endpoint], cwd=project)


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, symlinks=True)
    return dest


def test_s3_push_then_pull_in_a_clone_restores_the_run_and_plans_no_training(
    reference_run, s3_endpoint, tmp_path
):
    project = copy_run(reference_run, tmp_path / "project")
    add_s3_remote(project, s3_endpoint)
    clone = clone_and_pull(project, tmp_path / "clone", env=S3_ENV)
    keys = bucket_keys(s3_endpoint)
    cached = [p for p in (project / ".dvc/cache/files/md5").rglob("*") if p.is_file()]
    assert keys and all(key.startswith("dualmd/files/md5/") for key in keys), keys[:5]
    assert len(keys) == len(cached), "every cached object is in the bucket, and nothing else"
    assert (clone / ".dvc/config").read_text().count(s3_endpoint) == 1, (
        "the clone reads the endpoint from git"
    )
    assert_pulled_like(clone, project)


def test_unreachable_s3_remote_names_the_remote_and_deletes_nothing(reference_run, tmp_path):
    project = copy_run(reference_run, tmp_path / "project")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    add_s3_remote(project, dead)
    # one attempt per request: botocore's default five, with back-off, end in the same error after 30-40 s
    env = {**S3_ENV, "AWS_MAX_ATTEMPTS": "1"}

    def fails_naming_the_remote(command: str) -> None:
        proc = run(command.split(), cwd=project, check=False, env=env)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{command} succeeded against a dead endpoint:\n{output}"
        # the error names the endpoint and the remote's bucket and path
        assert f'Could not connect to the endpoint URL: "{dead}/{BUCKET}/dualmd/' in output, output

    before = tree_hashes(project, skip=("tmp",))  # .dvc/tmp holds DVC's locks
    fails_naming_the_remote("dvc push")
    assert tree_hashes(project, skip=("tmp",)) == before, "a failed push changed local files or the cache"
    shutil.rmtree(project / ".dvc/cache")  # now the pull has to reach the remote
    fails_naming_the_remote("dvc pull")
    assert tree_hashes(project, skip=(".dvc",)) == {
        k: v for k, v in before.items() if not k.startswith(".dvc/")
    }


# --- SLURM -----------------------------------------------------------------------------------------------------------

SLURM_SH = ROOT / "tests/cluster/slurm.sh"
SLURM_PROFILES = ["--profile", str(ROOT / "profiles/slurm"), "--workflow-profile", str(CLUSTER_PROFILE)]
ACCOUNTING_FIELDS = ("JobIDRaw", "State", "ReqCPUS", "ReqMem", "Timelimit", "Comment")


def slurm_script(*args: str) -> None:
    proc = subprocess.run(["bash", str(SLURM_SH), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"slurm.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A one-node SLURM cluster with job accounting (tests/cluster/slurm.sh; packages installed when missing),
    stopped afterwards. Yields the environment its clients need."""
    slurm_script("install")
    state = tmp_path_factory.mktemp("slurm")
    try:
        slurm_script("start", str(state))
        yield {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        slurm_script("stop", str(state))


def accounting(run_output: str, env: dict[str, str]) -> list[dict[str, str]]:
    """sacct's records of every SLURM job a Snakemake run submitted (the job ids it printed), with a `rule` key
    read from the job's comment (`rule_<name>_wildcards_...`, set by the executor)."""
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", run_output)
    assert ids, f"the run submitted no SLURM job:\n{run_output[-3000:]}"
    proc = run(
        ["sacct", "-X", "--parsable2", "--noheader", "-j", ",".join(ids), "-o", ",".join(ACCOUNTING_FIELDS)],
        cwd=ROOT,
        env=env,
    )
    records = [
        dict(zip(ACCOUNTING_FIELDS, line.split("|"), strict=True)) for line in proc.stdout.splitlines()
    ]
    for record in records:
        record["rule"] = record["Comment"].removeprefix("rule_").split("_wildcards_")[0]
    assert sorted(r["JobIDRaw"] for r in records) == sorted(ids), "accounting misses submitted jobs"
    return records


def cluster_profile() -> dict:
    return yaml.safe_load((CLUSTER_PROFILE / "config.yaml").read_text())


def start_snakemake(*args: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Snakemake in the background, its output going to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=cwd,
            env=command_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish(proc: subprocess.Popen, log: Path, timeout_s: float = 1800) -> str:
    """Wait for a `start_snakemake` process; its output, or an AssertionError with the tail when it failed."""
    try:
        returncode = proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert returncode == 0, f"snakemake failed ({returncode}):\n{output[-4000:]}"
    return output


@dataclass(frozen=True)
class TinyRuns:
    reference: Path  # local, through `dvc repro`, in a git + DVC repository
    slurm: Path  # through the SLURM executor
    slurm_output: str  # Snakemake's output of the SLURM run


@pytest.fixture(scope="module")
def tiny_runs(slurm, tmp_path_factory) -> TinyRuns:
    """The tiny config run twice, side by side, at the cluster test profile's thread counts: through
    `snakemake --executor slurm` (the project's SLURM profile and the cluster test profile) in a fresh copy of the
    project, and locally through `dvc repro` in a fresh git + DVC repository."""
    root = tmp_path_factory.mktemp("runs")
    project = copy_project(root / "slurm", TEST_CONFIG)
    proc = start_snakemake(*SLURM_PROFILES, cwd=project, env=slurm, log=root / "slurm.log")
    try:
        profile = root / "threads-profile"
        profile.mkdir()
        (profile / "config.yaml").write_text(
            yaml.safe_dump({"set-threads": cluster_profile()["set-threads"]})
        )
        # `dvc repro` runs `snakemake --cores all`, which reads SNAKEMAKE_PROFILE besides profiles/default
        reference = dvc_run(root / "reference", env={"SNAKEMAKE_PROFILE": str(profile)})
    finally:
        output = finish(proc, root / "slurm.log")
    return TinyRuns(reference=reference, slurm=project, slurm_output=output)


def test_every_job_runs_through_sbatch_with_the_profiles_resources(tiny_runs, slurm):
    output = tiny_runs.slurm_output
    assert "Using profiles" in output and "profiles/slurm" in output
    records = accounting(output, slurm)
    planned = parse_job_stats(output)
    local = {"write_stage_config"}  # `localrule: True` (workflow/rules/split.smk): it only writes a file
    assert Counter(r["rule"] for r in records) == {
        rule: n for rule, n in planned.items() if rule not in local
    }
    assert {r["State"] for r in records} == {"COMPLETED"}
    profile = cluster_profile()
    defaults = profile["default-resources"]
    for record in records:
        rule = record["rule"]
        threads = profile["set-threads"].get(rule, 1)
        resources = profile["set-resources"].get(rule, {})
        assert int(record["ReqCPUS"]) == threads, record
        minutes = resources.get("runtime", defaults["runtime"])
        assert record["Timelimit"] == f"00:{minutes:02d}:00", record
        if "mem_mb" in resources:
            assert record["ReqMem"] == f"{resources['mem_mb']}M", record
    by_rule = {r["rule"]: r for r in records}
    assert by_rule["prepare_data"]["ReqMem"] == f"{defaults['mem_mb']}M", "default-resources reach SLURM"
    assert by_rule["train_model"]["ReqCPUS"] == "2" and by_rule["train_model"]["Timelimit"] == "00:15:00"


def test_slurm_run_reproduces_the_local_metrics(tiny_runs):
    metrics = json.loads((tiny_runs.slurm / "results/report/rep0/metrics.json").read_text())
    expected = json.loads((tiny_runs.reference / "results/report/rep0/metrics.json").read_text())
    assert len(metrics) > 100 and metrics == expected


# 600 steps (10-20 s of training on two cores) with a resumable state every 50: a cancel lands mid-run
LONG_TRAINING = ("num_train_steps: 12", "num_train_steps: 600")
FREQUENT_CHECKPOINTS = ("checkpoint_every_steps: 5", "checkpoint_every_steps: 50")
BASELINE = "results/models/rep0/baseline"


def long_training_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of a finished run whose baseline is to be retrained for `LONG_TRAINING` steps, from scratch."""
    project = copy_run(run_dir, dest)
    edit_config(project, *LONG_TRAINING)
    edit_config(project, *FREQUENT_CHECKPOINTS)
    shutil.rmtree(project / "results/train_state")
    return project


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {
        f"{sub}/{key}": tensor
        for sub in ("unet", "unet_ema")
        for key, tensor in load_file(model_dir / sub / "diffusion_pytorch_model.safetensors").items()
    }


def cancel_when_checkpointed(state: Path, proc: subprocess.Popen, env: dict[str, str]) -> str:
    """Wait until the training job has saved a resumable state, then `scancel` it; the job's id."""
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.exists(), "the training job saved no state"
    running = run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], cwd=ROOT, env=env).stdout.splitlines()
    jobs = [line.split()[0] for line in running if "rule_train_model" in line]
    assert len(jobs) == 1, running
    run(["scancel", jobs[0]], cwd=ROOT, env=env)
    return jobs[0]


def test_cancelled_training_job_is_resubmitted_and_resumes_to_the_uninterrupted_weights(
    tiny_runs, slurm, tmp_path
):
    threads = [f"{rule}={n}" for rule, n in cluster_profile()["set-threads"].items()]
    uninterrupted = long_training_copy(tiny_runs.slurm, tmp_path / "uninterrupted")
    # one --set-threads with every pair: a second --set-threads would replace the first
    local = start_snakemake(
        BASELINE,
        "--cores",
        "2",
        "--set-threads",
        *threads,
        cwd=uninterrupted,
        env={},
        log=tmp_path / "local.log",
    )
    project = long_training_copy(tiny_runs.slurm, tmp_path / "cancelled")
    proc = start_snakemake(*SLURM_PROFILES, BASELINE, cwd=project, env=slurm, log=tmp_path / "slurm.log")
    try:
        cancelled = cancel_when_checkpointed(
            project / "results/train_state/rep0/baseline/state.pt", proc, slurm
        )
    finally:
        output = finish(proc, tmp_path / "slurm.log")
        finish(local, tmp_path / "local.log")
    records = accounting(output, slurm)
    assert [(r["JobIDRaw"], r["rule"], r["State"]) for r in records][0] == (
        cancelled,
        "train_model",
        "CANCELLED by 0",
    )
    assert [(r["rule"], r["State"]) for r in records] == [
        ("train_model", "CANCELLED by 0"),
        ("train_model", "COMPLETED"),
    ]
    meta = json.loads((project / BASELINE / "metadata.json").read_text())
    assert 0 < meta["resumed_from_step"] < 600, "the resubmitted job resumes from the cancelled job's state"
    reference = json.loads((uninterrupted / BASELINE / "metadata.json").read_text())
    assert reference["resumed_from_step"] == 0
    assert meta["loss_curve"] == reference["loss_curve"]
    resumed, expected = weights(project / BASELINE), weights(uninterrupted / BASELINE)
    assert resumed.keys() == expected.keys() and len(expected) > 10
    assert all(torch.equal(resumed[k], expected[k]) for k in expected), "resumed weights differ"
