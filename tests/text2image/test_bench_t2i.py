"""benchmarks/bench_t2i.py --tiny: the SD-shaped benchmark's code path runs on the CPU with a tiny UNet."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_bench_t2i_tiny_prints_step_time_and_peak_memory_of_both_runs():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench_t2i.py"), "--tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0].startswith("device CPU; UNet") and "(tiny); batch 16" in lines[0]
    for run in ("fine-tune", "distill"):
        line = next(x for x in lines if x.startswith(run))
        assert "s/step" in line and "peak memory" in line


def test_caption_use_benchmark_builds_the_caption_variants_and_measures_relative_change():
    import importlib.util

    import torch

    from dualmd.text2image.captions import load_digit_captions, with_unique_captions

    spec = importlib.util.spec_from_file_location("t2i_caption_use", ROOT / "benchmarks/t2i_caption_use.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert bench.relative_change(a, a) == 0.0
    # rows: |(0, 4)| / 5 = 0.8 and |(1, 0)| / 1 = 1.0
    assert bench.relative_change(a, torch.tensor([[3.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.9)
    captions = with_unique_captions(load_digit_captions(30), seed=0)
    pairs = bench.variants(captions, num=10)
    by_original = {c[0]: c for c in captions}
    for original, dropped in pairs["drop tag"]:
        assert dropped == by_original[original][1]  # the first template: the original without its tag
    for (original, swapped), (_, renamed) in zip(pairs["swap tag"], pairs["swap digit name"], strict=True):
        assert swapped.split()[:-3] == original.split()[:-3]
        assert renamed.split()[3] != original.split()[3] and renamed.split()[-3:] == original.split()[-3:]


def test_standin_descriptor_benchmark_scores_retrieval_of_the_copied_image():
    """Unit embeddings: the copy of image 0 is image 0 (found, cosine 1, best other 0); the copy of image 1 is
    0.6 e1 + 0.8 e3 (not found: cosine 0 with its source, 0.8 with image 2)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("standin", ROOT / "benchmarks/t2i_standin_descriptor.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    images = torch.eye(3, dtype=torch.float64)
    copied = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.0, 0.8]], dtype=torch.float64)
    assert bench.retrieval(lambda x: x, images, torch.tensor([0, 1]), copied) == "0.50 / 0.500 / 0.400"
