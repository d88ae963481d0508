"""``vlpbench export RUN``: a pretrained run's encoders in the formats the field loads.

- ``--format timm``: ``image_encoder/`` — ``model.safetensors`` holds the image backbone's weights
  under timm's own parameter names, ``config.json`` the timm architecture and how to build the model
  those weights fit (input channels, image size, the stages the run trained), so that
  ``timm.create_model(...)`` + ``load_state_dict`` (strict) gives the run's backbone; the
  projection into the joint space (not part of a timm model) is kept in ``vlpbench_heads.safetensors``.
- ``--format hf``: ``text_encoder/`` — a Hugging Face folder (``config.json``, ``model.safetensors``,
  the tokenizer the run used) that ``AutoModel.from_pretrained`` and ``AutoTokenizer.from_pretrained``
  load; its projection heads again in ``vlpbench_heads.safetensors``.
- ``--format all`` (the default): both.

Each folder gets a model card (``README.md``, with the Hub's YAML header) written from the run's
``config.yaml``, ``provenance.json`` and ``metrics.json``: what was trained on what, with which
versions, and the scores the run measured.

Only finished runs with the ``timm`` image encoder and the ``bert`` text encoder (or
encoders with the same attributes) can be exported; anything else is refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import save_file

from vlpbench.config.schema import RunConfig
from vlpbench.core.errors import ConfigError, DataError
from vlpbench.core.plugins import get_registry
from vlpbench.engine.checkpoint import load_checkpoint
from vlpbench.engine.files import CorruptFile, read_json, read_yaml_mapping
from vlpbench.engine.model import build_run
from vlpbench.engine.rundir import RunDir

FORMATS = ("timm", "hf", "all")


def _read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config.yaml, provenance.json, metrics.json) of a finished run; clear errors otherwise."""
    run = RunDir(folder)
    if not folder.is_dir() or not run.file("config.yaml").is_file():
        raise ConfigError(f"'{folder}' is not a vlpbench run directory (no config.yaml); give a folder such as "
                          "results/quickstart/runs/base__seed0__<hash>.")
    try:
        saved = read_yaml_mapping(run.file("config.yaml"))
        if saved.get("evaluated"):
            raise ConfigError(f"'{folder}' is an evaluation (`vlpbench eval`) of weights from elsewhere, not a "
                              "pretrained run; export the run that pretrained them.")
        if not run.final_checkpoint.is_file():
            raise DataError(f"'{folder}' has no checkpoints/final.pt: the run has not finished pretraining (or its "
                            "checkpoints were deleted). Finish it with `vlpbench run` first.")
        provenance = read_json(run.file("provenance.json"), expect=dict) if run.file("provenance.json").is_file() else {}
        metrics = read_json(run.file("metrics.json"), expect=dict) if run.file("metrics.json").is_file() else {}
    except CorruptFile as exc:
        raise DataError(str(exc)) from None
    return saved, provenance, metrics


def load_run_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The run's pretrained model (on the CPU, in eval mode) and its ``config.yaml``."""
    saved, _, _ = _read_run(folder)
    config = RunConfig.model_validate(saved["config"])
    built = build_run(config, get_registry(), int(saved.get("seed", 0)))
    built.model.load_state_dict(load_checkpoint(folder / "checkpoints" / "final.pt")["model"])
    return built.model.eval(), saved


def _heads(module: Any, skip: str) -> dict[str, Any]:
    """The encoder's parameters outside its backbone (projections, pooling), for vlpbench_heads.safetensors."""
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()
            if not k.startswith(skip + ".") and hasattr(v, "dtype")}


def export_image_encoder(encoder: Any, saved: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write ``model.safetensors`` + ``config.json`` (timm) and the projections; return the config."""
    if not hasattr(encoder, "backbone") or not hasattr(getattr(encoder, "params", None), "arch"):
        raise ConfigError(f"the run's image encoder ({type(encoder).__name__}) is not a timm encoder, so it cannot "
                          "be exported in timm's format.")
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().clone() for k, v in encoder.backbone.state_dict().items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    save_file(_heads(encoder, "backbone"), str(out / "vlpbench_heads.safetensors"), metadata={"format": "pt"})
    image_size = int(saved["config"]["data"].get("image_size") or 64)
    config: dict[str, Any] = {
        "architecture": encoder.params.arch, "num_classes": 0, "in_chans": 1,
        "input_size": [1, image_size, image_size], "num_features": int(encoder.global_dim),
        "pretrained_cfg": {"mean": [0.5], "std": [0.25]},  # vlpbench.data.pipeline.normalise: (x − 0.5) / 0.25
    }
    if encoder.is_vit:
        config["model_args"] = {"img_size": image_size, **({"patch_size": encoder.params.vit_patch_size}
                                                          if encoder.params.vit_patch_size else {})}
        config["vlpbench"] = {"kind": "vit", "global": encoder.params.vit_global}
    else:
        indices = list(range(max(encoder.out_indices) + 1))
        config["model_args"] = {"features_only": True, "out_indices": indices}
        config["vlpbench"] = {"kind": "cnn", "patch_stage": encoder.out_indices[0], "global_stage": encoder.out_indices[1],
                              "stage_strides": list(encoder.stage_strides),
                              "global": "mean of the global stage's feature map"}
    config["vlpbench"]["embed_dim"] = int(encoder.global_proj.out_features)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def export_text_encoder(encoder: Any, out: Path) -> None:
    """Write a Hugging Face folder: model (config.json, model.safetensors), tokenizer, projections."""
    if not hasattr(encoder, "bert"):
        raise ConfigError(f"the run's text encoder ({type(encoder).__name__}) is not a Hugging Face model, so it "
                          "cannot be exported as a Hugging Face folder.")
    out.mkdir(parents=True, exist_ok=True)
    encoder.bert.save_pretrained(str(out), safe_serialization=True)
    if getattr(encoder, "_tokenizer", None) is not None:  # the WordPiece vocabulary the run trained
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast(tokenizer_object=encoder._tokenizer, cls_token="[CLS]", sep_token="[SEP]",
                                            pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
                                            model_max_length=int(encoder.bert.config.max_position_embeddings))
    else:
        tokenizer = encoder._hf_tokenizer
    tokenizer.save_pretrained(str(out))
    save_file(_heads(encoder, "bert"), str(out / "vlpbench_heads.safetensors"), metadata={"format": "pt"})


def _scores(metrics: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(task, column, float(value)) for task, result in sorted(metrics.items()) if isinstance(result, dict)
            for column, value in sorted((result.get("scores") or {}).items()) if isinstance(value, (int, float))]


def model_card(saved: dict[str, Any], provenance: dict[str, Any], metrics: dict[str, Any], what: str,
               library: str, loading: str) -> str:
    """A Hub-style model card: YAML header, what the model is, how it was trained, its scores, how to load it."""
    config = saved.get("config", {})
    header = {"library_name": library, "tags": ["vlpbench", "medical-imaging", "chest-x-ray", "vision-language"],
              "pipeline_tag": "feature-extraction"}
    data = config.get("data", {})
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {saved.get('experiment')} / {saved.get('variant')} (seed {saved.get('seed')}): {what}", "",
             f"Exported by `vlpbench export` from run `{saved.get('run_id')}` (run hash `{saved.get('run_hash')}`).", "",
             "## Training", "",
             f"- data: `{data.get('name')}` at {data.get('image_size')} px"
             + (f", data versions {saved.get('data_versions')}" if saved.get("data_versions") else ""),
             f"- image encoder: `{json.dumps(config.get('model', {}).get('image_encoder'))}`",
             f"- text encoder: `{json.dumps(config.get('model', {}).get('text_encoder'))}`",
             f"- objective: `{json.dumps(config.get('objective'))}`",
             f"- pretraining: `{json.dumps(config.get('pretrain'))}`"]
    if saved.get("overrides") or saved.get("set"):
        lines.append(f"- variant overrides: `{json.dumps(saved.get('overrides'))}`; command-line --set: "
                     f"`{json.dumps(saved.get('set') or {})}`")
    versions = provenance.get("versions") or {}
    lines += ["", "## Provenance", "",
              f"- vlpbench {versions.get('vlpbench')}, plugins {json.dumps(versions.get('plugins') or {})}",
              f"- git commit: {provenance.get('git_commit')}",
              f"- hardware: {json.dumps({k: v for k, v in (provenance.get('hardware') or {}).items() if k != 'host'})}"]
    pretrain = provenance.get("pretrain") or {}
    if pretrain.get("steps"):
        lines.append(f"- optimiser steps: {pretrain.get('steps')}")
    scores = _scores(metrics)
    lines += ["", "## Scores (measured by the run, on its test split)", ""]
    if scores:
        lines += ["| task | metric | value |", "|---|---|---|"] + [f"| {t} | {c} | {v:.4f} |" for t, c, v in scores]
    else:
        lines.append("No scores recorded.")
    lines += ["", "## Loading", "", "```python", loading.strip(), "```", "",
              "`vlpbench_heads.safetensors` holds vlpbench's projection into the joint embedding space "
              f"({saved.get('config', {}).get('model', {}).get('embed_dim')} dimensions), which is not part of "
              f"the {library} model.", ""]
    return "\n".join(lines)


def _timm_loading(config: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in config["model_args"].items())
    return (f"import timm, safetensors.torch\n"
            f"model = timm.create_model({config['architecture']!r}, pretrained=False, num_classes=0, in_chans=1, {args})\n"
            f"model.load_state_dict(safetensors.torch.load_file('model.safetensors'))\n"
            f"# inputs: [B, 1, {config['input_size'][1]}, {config['input_size'][2]}] in [0, 1], normalised as (x - 0.5) / 0.25")


HF_LOADING = """from transformers import AutoModel, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained('.')
model = AutoModel.from_pretrained('.', add_pooling_layer=False)
hidden = model(**tokenizer(["no acute cardiopulmonary process."], return_tensors="pt")).last_hidden_state"""


def export_run(folder: Path, fmt: str = "all", out: Path | None = None) -> list[Path]:
    """Export the encoders of the finished run in ``folder``; return the folders written."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format '{fmt}': use one of {', '.join(FORMATS)}.")
    folder = Path(folder)
    saved, provenance, metrics = _read_run(folder)
    out = Path(out) if out is not None else Path(f"export-{folder.name}")
    model, _ = load_run_model(folder)
    written = []
    if fmt in ("timm", "all"):
        target = out / "image_encoder"
        config = export_image_encoder(model.image_encoder, saved, target)
        (target / "README.md").write_text(model_card(saved, provenance, metrics, "image encoder", "timm",
                                                     _timm_loading(config)))
        written.append(target)
    if fmt in ("hf", "all"):
        if model.text_encoder is None:
            raise ConfigError(f"'{folder}' has no text encoder to export; use --format timm.")
        target = out / "text_encoder"
        export_text_encoder(model.text_encoder, target)
        (target / "README.md").write_text(model_card(saved, provenance, metrics, "text encoder", "transformers",
                                                     HF_LOADING))
        written.append(target)
    return written
