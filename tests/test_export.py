"""`vlpbench export RUN --format timm|hf`: the exported files load with timm and transformers and
give the run's own features (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import write_tiny_run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlpbench.cli import main

    folder = tmp_path_factory.mktemp("export")
    # the patch and global stages are the same (stride 8): layers 3-4 of the ResNet are never built
    path = write_tiny_run(folder, "exported", pretrain_size=48)
    assert main(["run", str(path), "--results", str(folder / "results"), "--quiet"]) == 0
    (run,) = (folder / "results" / "exported" / "runs").iterdir()
    return run


def test_image_encoder_loads_with_timm_and_gives_the_same_features(finished_run: Path, tmp_path: Path, cli) -> None:
    import timm
    from safetensors.torch import load_file

    from vlpbench.engine.export import load_run_model

    code, out, err = cli("export", str(finished_run), "--format", "timm", "--out", str(tmp_path))
    assert code == 0, err
    folder = tmp_path / "image_encoder"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "vlpbench_heads.safetensors",
                                                  "README.md"}
    assert not (tmp_path / "text_encoder").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["in_chans"] == 1

    model = timm.create_model(config["architecture"], pretrained=False, num_classes=0, in_chans=1, **config["model_args"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))  # strict: every key, nothing extra
    model.eval()
    run_model, _ = load_run_model(finished_run)
    images = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected_global, expected_patches, _ = run_model.image_encoder.encode_maps(images)
        maps = model(images)
        global_map = maps[config["vlpbench"]["global_stage"]]
        patch_map = maps[config["vlpbench"]["patch_stage"]]
    torch.testing.assert_close(global_map.mean((-2, -1)), expected_global)
    torch.testing.assert_close(patch_map.flatten(2).transpose(1, 2), expected_patches)
    # the projections into the joint space come along
    heads = load_file(str(folder / "vlpbench_heads.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(torch.nn.functional.linear(expected_global, heads["global_proj.weight"],
                                                              heads["global_proj.bias"]),
                                   run_model.image_encoder(images).global_emb)


def test_text_encoder_loads_with_transformers_and_gives_the_same_features(finished_run: Path, tmp_path: Path, cli) -> None:
    from transformers import AutoModel, AutoTokenizer

    from vlpbench.engine.export import load_run_model

    code, out, err = cli("export", str(finished_run), "--format", "hf", "--out", str(tmp_path))
    assert code == 0, err
    folder = tmp_path / "text_encoder"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False).eval()
    run_model, _ = load_run_model(finished_run)
    encoder = run_model.text_encoder
    sentences = ["no acute cardiopulmonary process.", "small left pleural effusion."]
    assert tokenizer(sentences, add_special_tokens=False)["input_ids"] == encoder._encode(sentences)
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        exported = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        expected = encoder.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(exported, expected)


def test_model_card_reports_config_provenance_and_scores(finished_run: Path, tmp_path: Path, cli) -> None:
    code, out, err = cli("export", str(finished_run), "--out", str(tmp_path))
    assert code == 0, err
    metrics = json.loads((finished_run / "metrics.json").read_text())
    auroc = metrics["linear_probe"]["scores"]
    for name, library in (("image_encoder", "timm"), ("text_encoder", "transformers")):
        card = (tmp_path / name / "README.md").read_text()
        assert card.startswith("---\nlibrary_name: " + library)
        assert finished_run.name in card and "resnet18" in card and "vlpbench 0." in card
        for column, value in auroc.items():
            assert f"| linear_probe | {column} | {value:.4f} |" in card


def test_export_refuses_what_it_cannot_export(tmp_path: Path, finished_run: Path, cli) -> None:
    code, out, err = cli("export", str(tmp_path), "--out", str(tmp_path / "x"))
    assert code == 2 and "not a vlpbench run directory" in err
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    code, out, err = cli("export", str(unfinished), "--out", str(tmp_path / "y"))
    assert code == 2 and "final.pt" in err and "Traceback" not in err
