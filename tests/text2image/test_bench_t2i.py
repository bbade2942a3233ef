"""benchmarks/bench_t2i.py --tiny: the SD-shaped benchmark's code path runs on the CPU with a tiny UNet."""

import os
import subprocess
import sys
from pathlib import Path

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
