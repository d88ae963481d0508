"""`vlpbench eval --format mgca|gloria|benchx|timm|lightning` / `--prefix` / `--strip`: published
checkpoint layouts, written here, load into the image backbone; what did not load is reported; a
mostly random backbone is refused (issue 21)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import yaml


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    """A 3-channel timm ResNet-18's weights, as published checkpoints hold them."""
    import timm

    torch.manual_seed(0)
    return {k: v.clone() for k, v in timm.create_model("resnet18", num_classes=0).state_dict().items()}


def _backbone():
    from vlpbench.core.context import BuildContext
    from vlpbench.models.image_timm import TimmImageEncoder

    return TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18"), BuildContext(embed_dim=16, image_size=32)).backbone


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _assert_loaded(backbone, reference) -> None:
    state = backbone.state_dict()
    torch.testing.assert_close(state["conv1.weight"], reference["conv1.weight"].sum(1, keepdim=True))
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.running_var", "layer3.0.downsample.0.weight"):
        torch.testing.assert_close(state[key], reference[key])


def _lightning(state: dict[str, torch.Tensor], extra: dict | None = None) -> dict:
    """The nesting of a PyTorch Lightning .ckpt: the model under 'state_dict', with training state beside it."""
    return {"epoch": 49, "global_step": 12345, "pytorch-lightning_version": "1.5.9", "state_dict": state,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}], "lr_schedulers": [],
            "callbacks": {}, **(extra or {})}


LAYOUTS = {
    # MGCA: momentum image encoder of the Lightning module, text encoder and projections beside it
    "mgca": lambda ref: _lightning({**_prefixed(ref, "img_encoder_q.model."),
                                    "img_encoder_q.global_embed.head.0.weight": torch.zeros(4, 512),
                                    "text_encoder_q.model.embeddings.word_embeddings.weight": torch.zeros(10, 8)}),
    "gloria": lambda ref: _lightning({**_prefixed(ref, "gloria.img_encoder.model."),
                                      "gloria.img_encoder.global_embedder.weight": torch.zeros(4, 512),
                                      "gloria.text_encoder.model.embeddings.word_embeddings.weight": torch.zeros(10, 8)}),
    # BenchX: weights under 'model' with a method-specific prefix, found without being told
    "benchx": lambda ref: {"model": {**_prefixed(ref, "image_encoder.model."),
                                     "text_encoder.bert.embeddings.word_embeddings.weight": torch.zeros(10, 8)}},
    "lightning": lambda ref: _lightning({**_prefixed(ref, "model.vision.backbone."),
                                         "model.vision.proj.weight": torch.zeros(4, 512)}),
    "timm": lambda ref: _prefixed(ref, "module."),  # a DataParallel-saved timm state dict
}


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_each_published_layout_loads_the_whole_backbone(fmt: str, reference, tmp_path: Path) -> None:
    from vlpbench.engine.importing import load_backbone

    path = tmp_path / f"{fmt}.ckpt"
    torch.save(LAYOUTS[fmt](reference), path)
    backbone = _backbone()
    report = load_backbone(backbone, path, fmt)
    assert report.fraction == 1.0 and not report.missing, report.lines()
    assert report.adapted == ["conv1.weight"]  # RGB first convolution summed to the one grey channel
    _assert_loaded(backbone, reference)
    if fmt == "benchx":
        assert report.prefix == "image_encoder.model."


def test_prefix_and_strip_given_by_hand(reference, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from vlpbench.engine.importing import load_backbone

    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in _prefixed(reference, "encoder.module.").items()}, str(path))
    backbone = _backbone()
    report = load_backbone(backbone, path, prefix="encoder.", strip=["module."])
    assert report.fraction == 1.0 and report.prefix == "encoder."
    _assert_loaded(backbone, reference)


def test_what_did_not_load_is_reported(reference, tmp_path: Path) -> None:
    from vlpbench.engine.importing import load_backbone

    partial = {k: v for k, v in reference.items() if not k.startswith("layer1.")}
    partial["layer2.0.conv1.weight"] = torch.zeros(7, 7, 3, 3)  # a wrong shape is not loaded either
    partial["layer9.extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.ckpt"
    torch.save(LAYOUTS["mgca"](partial), path)
    backbone = _backbone()
    before = backbone.state_dict()["layer1.0.conv1.weight"].clone()
    report = load_backbone(backbone, path, "mgca")
    assert 0.5 < report.fraction < 1.0
    assert "layer1.0.conv1.weight" in report.missing and "layer2.0.conv1.weight" in report.missing
    assert "img_encoder_q.model.layer9.extra.weight" in report.unused
    assert "img_encoder_q.model.layer2.0.conv1.weight" in report.unused
    torch.testing.assert_close(backbone.state_dict()["layer1.0.conv1.weight"], before)
    assert any("NOT loaded" in line and "layer1.0.conv1.weight" in line for line in report.lines())


def test_a_mostly_random_backbone_is_refused(reference, tmp_path: Path) -> None:
    from vlpbench.engine.importing import load_backbone
    from vlpbench.core.errors import DataError

    path = tmp_path / "wrong.ckpt"
    torch.save(LAYOUTS["gloria"](reference), path)
    backbone = _backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(DataError, match="mostly random.*--prefix"):
        load_backbone(backbone, path, "mgca")  # the wrong layout: nothing matches
    small = {k: v for k, v in reference.items() if k.startswith(("conv1", "bn1", "layer1."))}
    torch.save(LAYOUTS["mgca"](small), path)
    with pytest.raises(DataError, match="only [0-9.]+ % of its parameters"):
        load_backbone(backbone, path, "mgca")
    for key, value in backbone.state_dict().items():  # a refused load changes nothing
        torch.testing.assert_close(value, before[key])


def test_lightning_hyperparameters_load_and_code_does_not_run(reference, tmp_path: Path, monkeypatch) -> None:
    from vlpbench.engine.importing import load_backbone
    from vlpbench.core.errors import DataError

    # a checkpoint whose hyper-parameters are Lightning's AttributeDict (a dict subclass)
    module = types.ModuleType("lightning.fabric.utilities.data")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = module.__name__, "AttributeDict"
    module.AttributeDict = AttributeDict
    for name in ("lightning", "lightning.fabric", "lightning.fabric.utilities"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / "hparams.ckpt"
    torch.save(LAYOUTS["mgca"](reference) | {"hyper_parameters": AttributeDict(lr=1e-4, emb_dim=128)}, path)
    monkeypatch.delitem(sys.modules, module.__name__)  # the reader does not have Lightning
    backbone = _backbone()
    assert load_backbone(backbone, path, "mgca").fraction == 1.0

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"state_dict": _prefixed(reference, "img_encoder_q.model."), "hyper_parameters": Payload()},
               tmp_path / "poisoned.ckpt")
    with pytest.raises(DataError, match="cannot be loaded safely"):
        load_backbone(_backbone(), tmp_path / "poisoned.ckpt", "mgca")
    assert not (tmp_path / "pwned").exists()


def test_eval_imports_a_published_checkpoint_and_records_the_load(reference, tiny_experiment: Path, tmp_path: Path,
                                                                   cli) -> None:
    path = tmp_path / "mgca_resnet18.ckpt"
    partial = {k: v for k, v in reference.items() if not k.startswith("layer1.0.")}
    torch.save(LAYOUTS["mgca"](partial), path)
    results = tmp_path / "results"
    code, out, err = cli("eval", str(path), "--experiment", str(tiny_experiment), "--label", "mgca", "--arch",
                         "resnet18", "--format", "mgca", "--results", str(results))
    assert code == 0, err
    assert "from keys prefixed 'img_encoder_q.model.'" in out and "NOT loaded" in out and "layer1.0.conv1.weight" in out
    (run,) = (results / "tiny" / "runs").iterdir()
    evaluated = yaml.safe_load((run / "config.yaml").read_text())["evaluated"]
    assert evaluated["format"] == "mgca" and evaluated["prefix"] == "img_encoder_q.model."
    assert 0.5 < evaluated["loaded_fraction"] < 1.0 and "layer1.0.conv1.weight" in evaluated["missing"]

    code, out, err = cli("eval", str(path), "--experiment", str(tiny_experiment), "--label", "wrong", "--arch",
                         "resnet18", "--format", "gloria", "--results", str(results))
    assert code == 2 and "mostly random" in err and "Traceback" not in err
    assert not (results / "tiny" / "runs" / "wrong").exists() and len(list((results / "tiny" / "runs").iterdir())) == 1
