"""NCCL safety checked on the CPU: collectives get tensors on the model's device, losses stay there
until ``log_every``, and a step's forward pass reads nothing back from the device."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from vlpbench.engine.distributed import collectives_on
from vlpbench.engine.metrics import MetricWindow
from vlpbench.objective.scope import World


@pytest.fixture
def one_process_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_a_collective_on_another_device_than_the_model_is_refused(one_process_group) -> None:
    with collectives_on(torch.device("cpu")):
        tensor = torch.ones(3)
        dist.all_reduce(tensor)  # the model's device: fine
        assert tensor.tolist() == [1.0, 1.0, 1.0]
    with collectives_on(torch.device("meta")), pytest.raises(RuntimeError, match="all_reduce got a tensor on cpu.*meta"):
        dist.all_reduce(torch.ones(3))  # what a CPU float64 all-reduce under NCCL was
    with collectives_on(torch.device("meta")), pytest.raises(RuntimeError, match="all_gather got a tensor on cpu"):
        dist.all_gather([torch.zeros(1)], torch.zeros(1))
    assert dist.all_reduce.__name__ == "all_reduce"  # the originals are back


def test_logged_losses_are_reduced_on_their_device(monkeypatch) -> None:
    """The window's one all-reduce per flush gets a tensor on the losses' device (meta here, a GPU
    in a real run), never a CPU copy."""
    seen: list[torch.device] = []
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, *a, **k: seen.append(tensor.device))
    window = MetricWindow(World(0, 2))
    for step in range(3):
        window.add(step, 0, 1e-3, {"total": torch.zeros((), device="meta"), "global": torch.zeros((), device="meta")})
    reduced = window.reduced()
    assert seen == [torch.device("meta")] and reduced.device.type == "meta" and reduced.shape == (6,)


def test_flush_reads_the_device_once_and_keeps_one_record_per_step() -> None:
    window = MetricWindow()
    for step in range(4):
        window.add(step, 0, 0.1, {"total": torch.tensor(float(step)), "stats/x": torch.tensor(2.0 * step)})
    records = window.flush()
    assert [r["total"] for r in records] == [0.0, 1.0, 2.0, 3.0] and records[3]["stats/x"] == 6.0
    assert len(window) == 0 and window.flush() == []


def test_a_non_finite_loss_is_reported_with_its_step() -> None:
    from vlpbench.core.errors import UserError

    window = MetricWindow()
    window.add(7, 0, 0.1, {"total": torch.tensor(float("nan"))})
    with pytest.raises(UserError, match="diverged at step 7"):
        window.flush()


@contextlib.contextmanager
def count_host_reads():
    """Count Tensor → Python conversions made by vlpbench's and its plugins' code (each one is a
    device sync on a GPU)."""
    counts = {"reads": 0}
    names = ("__bool__", "__float__", "__int__", "item", "tolist")
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def counting(original):
        def call(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "site-packages" not in caller:  # transformers' SDPA mask check reads one bool per forward
                counts["reads"] += 1
                counts.setdefault("where", []).append(caller)
            return original(self, *args, **kwargs)
        return call
    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize("miner", ["identity", "oracle"])
def test_a_training_step_reads_nothing_back_from_the_device(miner: str) -> None:
    """The model's forward pass (encoders, objective with the miner's statistics, which used to be
    read every step) and the backward pass convert no tensor to a Python value."""
    import copy

    from tests.test_training_loop import TINY
    from vlpbench.config.schema import RunConfig
    from vlpbench.engine.model import build_run
    from vlpbench.core.plugins import get_registry

    config = copy.deepcopy(TINY)
    config["objective"]["positive_miner"] = {"name": miner}
    built = build_run(RunConfig.model_validate(config), get_registry(), seed=0)
    batch = next(built.pretrain.epoch_batches(0, 0, 16, augment=True))
    built.model.train()
    with count_host_reads() as counts:
        out = built.model(batch, progress=0.5)
        out.total.backward()
    assert counts["reads"] == 0, counts.get("where")
