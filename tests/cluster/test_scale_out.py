"""Scale-out on real engines: DVC against an S3 API (moto's server on 127.0.0.1).

Marked `cluster`: only `python -m pytest -m cluster` runs these tests (see tests/conftest.py). They need `dvc-s3`
and `moto[server]` (the `test` extra).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from projects import (
    assert_pulled_like,
    clone_and_pull,
    dvc_run,
    run,
    tree_hashes,
)

pytestmark = pytest.mark.cluster

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
def reference_run(tmp_path_factory) -> Path:
    """The tiny config run locally through `dvc repro`."""
    return dvc_run(tmp_path_factory.mktemp("reference") / "project")


@pytest.fixture
def s3_endpoint(tmp_path) -> Iterator[str]:
    """An S3 API (moto in server mode) on a free port of 127.0.0.1 holding one empty bucket; stopped afterwards."""
    import boto3

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
        client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bucket_keys(url: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def add_s3_remote(project: Path, endpoint: str) -> None:
    """The README's S3 form of the team remote, pointed at `endpoint`."""
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
