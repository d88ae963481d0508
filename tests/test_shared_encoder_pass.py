"""One encoder pass per image in an evaluation with dense tasks: the linear probe's global features
come from the pass that computes the dense tasks' feature maps, with the same numbers."""

from __future__ import annotations

import pytest
import torch

from vlpbench.config.schema import ComponentSpec
from vlpbench.core.build import build_component
from vlpbench.core.context import BuildContext
from vlpbench.core.plugins import get_registry
from vlpbench.data.synthcxr_source import SynthCXRSource
from vlpbench.engine.scoring import dense_stride_on_run_data
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.tasks.base import Encoders, frozen_global_features
from vlpbench.tasks.dense import split_feature_maps
from vlpbench.tasks.linear_probe import LinearProbe


@pytest.fixture(scope="module")
def tiny_source() -> SynthCXRSource:
    return SynthCXRSource(SynthCXRSource.Params(image_size=32, pretrain_size=16, train_size=48, val_size=16,
                                                test_size=24), None)


def counted_encoder() -> tuple[TimmImageEncoder, list[int]]:
    """A ResNet-18 whose backbone records the batch size of every forward pass."""
    torch.manual_seed(0)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18"), BuildContext(embed_dim=16, image_size=32))
    calls: list[int] = []
    encoder.backbone.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    return encoder, calls


def test_global_features_and_maps_come_from_one_pass(tiny_source: SynthCXRSource) -> None:
    encoder, calls = counted_encoder()
    cpu = torch.device("cpu")
    splits = {name: tiny_source.split(name) for name in ("train", "val", "test")}
    separate = {name: frozen_global_features(encoder, s.images, cpu) for name, s in splits.items()}
    calls.clear()
    encoders = Encoders(encoder, dense_min_stride=4)
    shared = {name: encoders.global_features(s.images, cpu) for name, s in splits.items()}
    maps = split_feature_maps(encoders, splits, cpu, min_stride=4)
    assert sum(calls) == 48 + 16 + 24  # each image once, for the global features and the maps together
    for name in splits:
        torch.testing.assert_close(shared[name], separate[name], rtol=0, atol=1e-6)
    alone = split_feature_maps(Encoders(encoder), splits, cpu, min_stride=4)
    for name in splits:
        for a, b in zip(maps[name].batch(torch.arange(len(splits[name])), cpu),
                        alone[name].batch(torch.arange(len(splits[name])), cpu)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_without_dense_tasks_the_probe_runs_the_encoder_alone(tiny_source: SynthCXRSource) -> None:
    encoder, calls = counted_encoder()
    cpu = torch.device("cpu")
    plain = LinearProbe(LinearProbe.Params(fractions=[1.0], max_epochs=3)).evaluate(Encoders(encoder), tiny_source, cpu)
    encoders = Encoders(encoder, dense_min_stride=4)
    calls.clear()
    shared = LinearProbe(LinearProbe.Params(fractions=[1.0], max_epochs=3)).evaluate(encoders, tiny_source, cpu)
    assert shared.scores == plain.scores
    assert sum(calls) == 48 + 16 + 24
    split_feature_maps(encoders, {"train": tiny_source.split("train")}, cpu, min_stride=4)
    assert sum(calls) == 48 + 16 + 24  # the train maps were made in the probe's pass


def test_maps_made_first_are_not_made_again_for_the_probe(tiny_source: SynthCXRSource) -> None:
    encoder, calls = counted_encoder()
    cpu, train = torch.device("cpu"), tiny_source.split("train")
    encoders = Encoders(encoder, dense_min_stride=4)
    split_feature_maps(encoders, {"train": train}, cpu, min_stride=4)
    calls.clear()
    encoders.global_features(train.images, cpu)
    assert sum(calls) == 48  # one pass for the global features alone, not the maps again


def test_the_shared_stride_is_that_of_the_dense_tasks_on_the_run_data() -> None:
    registry, context = get_registry(), BuildContext(embed_dim=16, image_size=32)

    def tasks(*specs: dict) -> list:
        return [build_component(registry, "task", ComponentSpec(**spec), context) for spec in specs]

    probe = {"name": "linear_probe"}
    assert dense_stride_on_run_data(tasks(probe, {"name": "segmentation"}, {"name": "detection"})) == 4
    assert dense_stride_on_run_data(tasks(probe, {"name": "segmentation", "min_stride": 8})) == 8
    mixed = tasks(probe, {"name": "segmentation"}, {"name": "detection", "min_stride": 8})
    assert dense_stride_on_run_data(mixed) == 4  # the finest: detection reads its coarser levels
    assert dense_stride_on_run_data(tasks(probe, {"name": "zero_shot"})) is None
    own_data = {"name": "detection", "dataset": {"name": "synthcxr", "image_size": 32}}
    assert dense_stride_on_run_data(tasks(probe, own_data)) is None  # other images: nothing to share


def test_a_probe_with_a_larger_test_split_shares_only_the_arrays_the_dense_tasks_read(
        tiny_source: SynthCXRSource) -> None:
    """The default ablation's probe scores a test split of its own (a larger one): its train and
    validation images are the run's arrays, so their global features still come from the dense
    tasks' pass; only its own test images get a pass of their own, and its scores are those of the
    probe evaluated alone."""
    from vlpbench.engine.scoring import evaluate_tasks

    encoder, calls = counted_encoder()
    cpu, context = torch.device("cpu"), BuildContext(embed_dim=16, image_size=32)
    data = tiny_source.params.model_dump()
    probe = ComponentSpec(name="linear_probe", fractions=[1.0], max_epochs=3, dataset={**data, "name": "synthcxr",
                                                                                        "test_size": 40})
    segmentation = ComponentSpec(name="segmentation", fractions=[1.0], max_epochs=1, min_steps_per_epoch=1,
                                 max_steps_per_epoch=1, batch_size=8, channels=4, min_stride=8)
    alone, _ = evaluate_tasks([probe], Encoders(encoder), tiny_source, context, cpu)
    calls.clear()
    together, _ = evaluate_tasks([probe, segmentation], Encoders(encoder), tiny_source, context, cpu)
    encoder_images = sum(calls)
    assert encoder_images == 48 + 16 + 24 + 40  # the run's splits once (maps and globals), the probe's test once
    assert together["linear_probe"]["scores"] == pytest.approx(alone["linear_probe"]["scores"], abs=1e-5)
    assert together["linear_probe"]["protocols"]["auroc@100%"]["dataset"]["test_size"] == 40


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_coarser_maps_are_the_levels_of_finer_ones_without_another_pass(arch: str, tiny_source: SynthCXRSource) -> None:
    """Detection at stride 8 after segmentation at stride 4 reads the stride-4 maps' coarser levels:
    the same tensors the encoder gives at stride 8, and no second encoder pass."""
    torch.manual_seed(0)
    encoder = TimmImageEncoder(TimmImageEncoder.Params(arch=arch), BuildContext(embed_dim=16, image_size=32))
    calls: list[int] = []
    encoder.backbone.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    cpu, splits = torch.device("cpu"), {"train": tiny_source.split("train")}
    encoders = Encoders(encoder)
    fine = split_feature_maps(encoders, splits, cpu, min_stride=4)["train"]
    calls.clear()
    coarse = split_feature_maps(encoders, splits, cpu, min_stride=8)["train"]
    assert not calls
    direct = split_feature_maps(Encoders(encoder), splits, cpu, min_stride=8)["train"]
    assert coarse.channels == direct.channels and coarse.strides_shapes == direct.strides_shapes
    if arch == "resnet18":
        assert len(fine.channels) == len(coarse.channels) + 1  # the stride-4 level left out
    rows = torch.arange(5)
    for a, b in zip(coarse.batch(rows, cpu), direct.batch(rows, cpu), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
