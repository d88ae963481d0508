"""The loader and the training loop at scale: same batches for any number of workers, mid-epoch
resume, collectives on the model's device, and the GPU user's options (accumulation, freezing,
checkpointing, channels_last, precision) checked on the CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from vlpbench.config.schema import PretrainConfig, RunConfig
from vlpbench.engine.model import build_run
from vlpbench.engine.callbacks import Interrupt, StopAfter
from vlpbench.engine.pretrain import _Loop, check_options, micro_batches, pretrain
from vlpbench.engine.rundir import RunDir
from vlpbench.core.errors import ConfigError
from vlpbench.core.plugins import get_registry

TINY = {
    "data": {"name": "synthcxr", "image_size": 32, "pretrain_size": 96, "train_size": 16, "val_size": 16, "test_size": 16},
    "model": {"image_encoder": {"name": "timm", "arch": "resnet18", "patch_reduction": 8, "global_reduction": 8},
              "text_encoder": {"name": "bert", "layers": 2, "hidden": 32, "heads": 2, "vocab_size": 300, "dropout": 0.0},
              "embed_dim": 16},
    "objective": {"global": {"name": "infonce", "temperature": 0.1}},
    "pretrain": {"epochs": 2, "batch_size": 16, "lr": 1.0e-3, "threads": 1, "log_every": 4},
}


def tiny(**pretrain_options) -> tuple[object, PretrainConfig]:
    config = copy.deepcopy(TINY)
    config["pretrain"].update(pretrain_options)
    run_config = RunConfig.model_validate(config)
    return build_run(run_config, get_registry(), seed=0), run_config.pretrain


def train(tmp_path: Path, name: str, stop_after_step: int | None = None, **options):
    built, config = tiny(**options)
    stop = [StopAfter(step=stop_after_step)] if stop_after_step is not None else []
    result = pretrain(built.model, built.pretrain, config, 0, RunDir(tmp_path / name), torch.device("cpu"),
                      progress=False, callbacks=stop)
    return built.model, result


def test_batches_do_not_depend_on_the_number_of_workers() -> None:
    built, _ = tiny()
    data = built.pretrain
    inline = list(data.epoch_batches(1, 3, 16, augment=True))
    loaded = list(data.epoch_batches(1, 3, 16, augment=True, workers=2))
    assert len(inline) == len(loaded) == 6
    for a, b in zip(inline, loaded):
        assert a.images.dtype == torch.uint8 and torch.equal(a.images, b.images)
        assert torch.equal(a.index, b.index) and torch.equal(a.input_ids, b.input_ids)
        assert torch.equal(a.extras["augment"], b.extras["augment"])
        assert a.extras["num_sentences"] == int(a.sentence_index.max()) + 1


def test_loss_history_is_the_same_with_workers_and_in_memory(tmp_path: Path) -> None:
    """Memory map + two DataLoader workers == the split copied into an in-memory tensor, no workers."""
    _, mapped = train(tmp_path, "mapped", workers=2)
    built, config = tiny()
    built.pretrain.images = torch.from_numpy(built.pretrain.images.copy())  # the in-memory path
    in_memory = pretrain(built.model, built.pretrain, config, 0, RunDir(tmp_path / "memory"), torch.device("cpu"),
                         progress=False)
    assert [r["total"] for r in mapped.history] == [r["total"] for r in in_memory.history]
    assert len(mapped.history) == 12 and [r["step"] for r in mapped.history] == list(range(12))


def test_mid_epoch_resume_equals_uninterrupted(tmp_path: Path) -> None:
    model, whole = train(tmp_path, "whole", checkpoint_every=2)
    with pytest.raises(Interrupt):
        train(tmp_path, "cut", checkpoint_every=2, stop_after_step=4)  # killed in the middle of epoch 0 (6 steps)
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["step-000000002.pt",
                                                                                  "step-000000004.pt"]
    resumed_model, resumed = train(tmp_path, "cut", checkpoint_every=2)
    assert resumed.resumed_from_step == 4
    assert [r["total"] for r in resumed.history] == [r["total"] for r in whole.history]
    for (name, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), name


def test_accumulation_averages_the_micro_batch_gradients() -> None:
    built, config = tiny(accumulate=2, lr=1e-9)
    model = built.model
    batch = next(built.pretrain.epoch_batches(0, 0, 16, augment=False))
    reference = copy.deepcopy(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loop = _Loop(model, model, optimizer, schedule, None, config, torch.device("cpu"), params)
    values = loop.step(batch, progress=0.0)
    halves = [reference(part, progress=0.0).total for part in micro_batches(batch, 2)]
    ((halves[0] + halves[1]) / 2).backward()
    assert torch.allclose(values["total"], (halves[0] + halves[1]).detach() / 2, atol=1e-6)
    compared = 0
    for p, q in zip(params, [p for p in reference.parameters() if p.requires_grad]):
        assert (p.grad is None) == (q.grad is None)  # the same parameters receive a gradient
        if q.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6)
            compared += q.grad.abs().sum().item() > 0
    assert compared > len(params) // 2  # most parameters learn: the comparison is not vacuous


def test_frozen_stages_and_layers_do_not_move(tmp_path: Path) -> None:
    built, config = tiny(freeze_image_stages=2, freeze_text_layers=1, epochs=1)
    before = copy.deepcopy(built.model.state_dict())
    pretrain(built.model, built.pretrain, config, 0, RunDir(tmp_path / "frozen"), torch.device("cpu"), progress=False)
    after = built.model.state_dict()
    moved = {k for k, v in after.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
             and not torch.equal(v, before[k])}
    assert not any(k.startswith(("image_encoder.backbone.conv1", "image_encoder.backbone.layer1.")) and "running" not in k
                   for k in moved)
    assert not any(k.startswith(("text_encoder.bert.embeddings", "text_encoder.bert.encoder.layer.0.")) for k in moved)
    assert any(k.startswith("image_encoder.backbone.layer2.") for k in moved)
    assert any(k.startswith("text_encoder.bert.encoder.layer.1.") for k in moved)


def test_freezing_more_layers_than_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="freeze_text_layers = 5.*2 layers"):
        train(tmp_path, "x", freeze_text_layers=5)


@pytest.mark.parametrize("option", [{"grad_checkpointing": True}, {"channels_last": True}])
def test_memory_options_keep_the_computation(tmp_path: Path, option: dict) -> None:
    _, plain = train(tmp_path, "plain", epochs=1)
    _, other = train(tmp_path, "other", epochs=1, **option)
    for a, b in zip(plain.history, other.history):
        assert a["total"] == pytest.approx(b["total"], abs=1e-4)


@pytest.mark.integration  # inductor compiles C++ kernels with the system compiler: a minute or two on 2 cores
def test_compile_keeps_the_computation_and_the_checkpoint_keys(tmp_path: Path) -> None:
    plain_model, plain = train(tmp_path, "plain", epochs=1)
    compiled_model, compiled = train(tmp_path, "compiled", epochs=1, compile=True)
    assert len(plain.history) == len(compiled.history) == 6
    for a, b in zip(plain.history, compiled.history):
        assert a["total"] == pytest.approx(b["total"], abs=1e-4)
    # Module.compile() compiles in place: checkpoints keep their keys and resume into either model
    assert list(plain_model.state_dict()) == list(compiled_model.state_dict())


def test_bf16_trains_on_the_cpu(tmp_path: Path) -> None:
    _, result = train(tmp_path, "bf16", epochs=1, precision="bf16")
    assert len(result.history) == 6 and all(r["total"] == r["total"] for r in result.history)


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        check_options(PretrainConfig(precision="fp16"), torch.device("cpu"), 1)
    with pytest.raises(ConfigError, match="batch_size = 64.*3 process.*accumulate = 8.*multiple of 24"):
        check_options(PretrainConfig(batch_size=64, accumulate=8), torch.device("cpu"), 3)
    with pytest.raises(ValueError, match="accumulate"):
        PretrainConfig(batch_size=30, accumulate=4)
    with pytest.raises(ValueError, match="fp16"):
        PretrainConfig(precision="fp16", device="cpu")


TWO_STAGES = [{"name": "stage1", "start": 0.0, "optimizer": "adam", "warmup": 0.5, "warmup_start_lr": 1e-6},
              {"name": "stage2", "start": 0.5, "optimizer": "adam", "lr": 5e-4, "warmup": 0.5, "warmup_start_lr": 1e-7}]


def test_a_stage_rebuilds_the_optimiser_and_its_warm_up(tmp_path: Path) -> None:
    """CM-CGNS's stage 2: a fresh Adam (new moments) and a fresh warm-up from warmup_start_lr."""
    _, result = train(tmp_path, "staged", stages=TWO_STAGES)
    lrs = [r["lr"] for r in result.history]  # the rate after each step (6 steps per epoch, 3 of warm-up)
    assert lrs[0] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 3) and lrs[2] == pytest.approx(1e-3)
    assert lrs[6] == pytest.approx(1e-7 + (5e-4 - 1e-7) / 3) and lrs[8] == pytest.approx(5e-4)
    assert lrs[11] == pytest.approx(0.0, abs=1e-12)  # cosine to min_lr over the stage
    assert [s["name"] for s in result.stages] == ["stage1", "stage2"] and result.stages[1]["first_step"] == 6


def test_resume_across_a_stage_boundary_equals_uninterrupted(tmp_path: Path) -> None:
    _, whole = train(tmp_path, "whole", stages=TWO_STAGES)
    built, config = tiny(stages=TWO_STAGES)
    with pytest.raises(Interrupt):
        pretrain(built.model, built.pretrain, config, 0, RunDir(tmp_path / "cut"), torch.device("cpu"),
                 progress=False, callbacks=[StopAfter(epoch=0)])
    _, resumed = train(tmp_path, "cut", stages=TWO_STAGES)
    assert [r["total"] for r in resumed.history] == [r["total"] for r in whole.history]


def test_stages_are_validated() -> None:
    with pytest.raises(ValueError, match="start at 0.0"):
        PretrainConfig(stages=[{"name": "a", "start": 0.5}])
    with pytest.raises(ConfigError, match="at least one step of its own"):
        from vlpbench.engine.schedule import stage_plans

        stage_plans(PretrainConfig(epochs=2, stages=[{"name": "a", "start": 0.0}, {"name": "b", "start": 0.01}]), 5)
