"""The GPU check's code paths on the CPU (the script itself runs on a lent GPU, never in CI):
one-rank process group around the real loop, the bare-encoder baseline, the frozen-feature timing."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def test_gpu_check_runs_its_code_paths_on_the_cpu() -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = module.main(["--smoke"])
    assert lines[0].startswith("device: cpu") and "gloo" in lines[0]
    assert "vlpbench loop" in lines[1] and "ratio" in lines[1] and "nan samples/s" not in lines[1]
    assert "fixed costs" in lines[1]  # the epoch's once-per-epoch costs, apart from the steady steps
    assert "frozen features: 64 test images" in lines[2]
