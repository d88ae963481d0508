"""``vlpbench check-plugin``: the conformance suite a plugin's components must pass.

Per plugin: its hook implementations registered against the hookspecs (pluggy validates the
signatures). Per component: it imports; its parameter model builds from its defaults and those
defaults validate against the model's own JSON Schema; the parameters round-trip through JSON.
Components of the objective (miners, weightings, global losses, local heads, auxiliaries) are
then put into a tiny real run — SynthCXR batch, a CNN and a ViT image encoder — and must give
finite losses and finite gradients (a miner must give targets that carry no gradient, so nothing
flows into what it reads), the same loss for a permuted batch, and the same loss in float64 as in
float32. Encoders and datasets are built from their defaults; an image encoder must then give every
feature the tasks read (``forward`` → ``ImageFeatures`` with consistent shapes, ``global_features``
for the probes, ``feature_maps`` for segmentation and detection), a text encoder must tokenize
reports and give ``TextFeatures``; a task must evaluate a tiny pretrained-shape model on SynthCXR and
give finite scores with their protocols.

Finally every objective component runs on two CPU processes (gloo, one spawn for the whole plugin,
see :mod:`vlpbench.devkit.distributed_check`) in both negative scopes: ``local`` must equal one process
per half of the batch, ``gathered`` must equal one process with the whole batch once the two
processes' gradients are averaged as DistributedDataParallel averages them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import jsonschema
import torch

from vlpbench.config.schema import RunConfig
from vlpbench.core.build import build_component
from vlpbench.core.capabilities import declared
from vlpbench.core.context import BuildContext
from vlpbench.core.errors import PluginError
from vlpbench.core.features import Batch, ImageFeatures, TextFeatures
from vlpbench.core.kinds import ImageEncoder, kind_of, missing_members, objective_slots
from vlpbench.core.plugins import get_plugins, get_registry
from vlpbench.data.pipeline import normalise
from vlpbench.devkit.distributed_check import check_cases, component_cases
from vlpbench.engine.model import build_run
from vlpbench.engine.scoring import evaluate_tasks
from vlpbench.tasks.base import Encoders

#: kind -> how a component of that kind enters an objective config (from the kind table's slots).
OBJECTIVE_SLOTS: dict[str, Callable[[Any], dict[str, Any]]] = {kind: slot.entry for kind, slot in objective_slots()}
TINY = {
    "data": {"name": "synthcxr", "image_size": 32, "pretrain_size": 64, "train_size": 16, "val_size": 8, "test_size": 8},
    "model": {"text_encoder": {"name": "bert", "layers": 1, "hidden": 32, "heads": 2}, "embed_dim": 32},
    "pretrain": {"batch_size": 8, "augment": False},
}
ENCODERS = {"CNN": {"name": "timm", "arch": "resnet18", "patch_reduction": 8, "global_reduction": 8},
            "ViT": {"name": "timm", "arch": "vit_tiny_patch16_224", "vit_patch_size": 8}}


@dataclass
class Check:
    component: str
    kind: str
    check: str
    status: str  # pass | FAIL | skip
    message: str = ""


def _run(component: str, kind: str, check: str, fn: Callable[[], str | None]) -> Check:
    try:
        message = fn() or ""
        return Check(component, kind, check, "pass", message)
    except Exception as exc:  # a conformance failure, reported with the component and the property
        return Check(component, kind, check, "FAIL", " ".join(f"{type(exc).__name__}: {exc}".split())[:300])


def _defaults_check(params_model: Any) -> str:
    defaults = params_model().model_dump(mode="json")
    jsonschema.validate(defaults, params_model.model_json_schema())
    params_model.model_validate(defaults)
    return ""


def _roundtrip_check(params_model: Any) -> str:
    params = params_model()
    again = params_model.model_validate_json(params.model_dump_json())
    if again != params:
        raise AssertionError("parameters do not survive a JSON round-trip")
    return ""


def _objective_model(kind: str, name: str, encoder: dict[str, Any], dtype: Any = None) -> tuple[Any, Any]:

    config = copy.deepcopy(TINY)
    config["model"]["image_encoder"] = encoder
    config["objective"] = OBJECTIVE_SLOTS[kind]({"name": name})
    if kind == "auxiliary" or kind == "local_head":
        config["objective"].setdefault("positive_miner", {"name": "identity"})
    built = build_run(RunConfig.model_validate(config), get_registry(), seed=0)
    batch = next(built.pretrain.epoch_batches(0, 0, 8, augment=False))
    batch.images = normalise(batch.images)  # the loader's uint8 pixels as the model sees them (dtype checks)
    if dtype is not None:
        built.model.to(dtype)
        batch.images = batch.images.to(dtype)
    return built.model, batch


def _forward_backward_check(kind: str, name: str, encoder: dict[str, Any]) -> str:
    model, batch = _objective_model(kind, name, encoder)
    model.train()
    positives_seen: list[Any] = []
    if kind == "positive_miner":
        original = model.objective.miner.forward
        model.objective.miner.forward = lambda inputs: positives_seen.append(original(inputs)) or positives_seen[-1]
    out = model(batch, progress=0.9)
    bad = [k for k, v in out.terms.items() if not torch.isfinite(v).all()]
    if bad or not torch.isfinite(out.total):
        raise AssertionError(f"non-finite loss terms: {bad or ['total']}")
    out.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or not all(torch.isfinite(g).all() for g in grads):
        raise AssertionError("non-finite (or no) gradients")
    if kind == "positive_miner":
        if positives_seen and positives_seen[-1].affinity.requires_grad:
            raise AssertionError("the miner's targets carry a gradient into what it reads")
    terms = ", ".join(f"{k}={float(v.detach()):.3g}" for k, v in out.terms.items() if k != "global")
    return terms


def _loss(model: Any, batch: Any) -> float:
    with torch.no_grad():
        return float(model(batch, progress=0.9).total)


def _permutation_check(kind: str, name: str) -> str:
    model, batch = _objective_model(kind, name, ENCODERS["CNN"])
    model.eval()
    torch.manual_seed(0)
    before = _loss(model, batch)
    order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
    permuted = Batch(batch.images[order], batch.input_ids[order], batch.attention_mask[order],
                     batch.sentence_index[order], batch.labels[order], batch.index[order])
    torch.manual_seed(0)
    after = _loss(model, permuted)
    if not math.isclose(before, after, rel_tol=1e-4, abs_tol=1e-5):
        raise AssertionError(f"loss depends on the batch order: {before:.6g} vs {after:.6g}")
    return f"{before:.6g}"


def _dtype_check(kind: str, name: str) -> str:
    model, batch = _objective_model(kind, name, ENCODERS["CNN"])
    model.eval()
    single = _loss(model, batch)
    model64, batch64 = copy.deepcopy(model).to(torch.float64), copy.deepcopy(batch)
    batch64.images = batch64.images.to(torch.float64)
    double = _loss(model64, batch64)
    if not math.isclose(single, double, rel_tol=1e-3, abs_tol=1e-4):
        raise AssertionError(f"float32 {single:.6g} vs float64 {double:.6g}")
    return f"{single:.6g} vs {double:.6g}"


def _build_check(kind: str, name: str) -> str:
    context = BuildContext(embed_dim=32, image_size=32, corpus=["No acute cardiopulmonary process."])
    build_component(get_registry(), kind, {"name": name}, context)
    return ""


def _image_interface_check(name: str) -> str:
    """Every feature the built-in tasks read from an image encoder, finite and consistently shaped."""
    encoder = build_component(get_registry(), "image_encoder", {"name": name},
                              BuildContext(embed_dim=32, image_size=32)).eval()
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        out = encoder(images)
        if not isinstance(out, ImageFeatures):
            raise AssertionError(f"forward returned {type(out).__name__}, not ImageFeatures")
        h, w = out.grid
        _shape(out.global_emb, (2, 32), "forward().global_emb")
        _shape(out.patch_emb, (2, h * w, 32), "forward().patch_emb (grid h·w tokens)")
        callers = {"global_features()": "linear probes", "feature_maps()": "segmentation and detection"}
        for label in missing_members(ImageEncoder, encoder):  # the image_encoder kind's interface
            raise AssertionError(f"no {label} method, which {callers.get(label, 'the engine')} call")
        pooled = encoder.global_features(images)
        if pooled.ndim != 2 or pooled.shape[0] != 2:
            raise AssertionError(f"global_features gave shape {tuple(pooled.shape)}, not [B, C]")
        maps = encoder.feature_maps(images, min_stride=4)
        if not isinstance(maps, (list, tuple)) or not maps:
            raise AssertionError("feature_maps gave no maps (a non-empty list of [B, C, h, w] is expected)")
        for index, item in enumerate(maps):
            if item.ndim != 4 or item.shape[0] != 2:
                raise AssertionError(f"feature_maps()[{index}] has shape {tuple(item.shape)}, not [B, C, h, w]")
        for label, tensor in (("global_emb", out.global_emb), ("patch_emb", out.patch_emb),
                              ("global_features", pooled), *((f"feature_maps[{i}]", m) for i, m in enumerate(maps))):
            if not torch.isfinite(tensor).all():
                raise AssertionError(f"{label} is not finite")
    return f"grid {h}×{w}, {len(maps)} feature map(s)"


def _shape(tensor: Any, expected: tuple[int, ...], label: str) -> None:
    if tuple(tensor.shape) != expected:
        raise AssertionError(f"{label} has shape {tuple(tensor.shape)}, expected {expected}")


def _text_interface_check(name: str) -> str:
    """A text encoder tokenizes reports and gives finite global, word and sentence features."""
    reports = [["No acute cardiopulmonary process."], ["Small left pleural effusion.", "Heart size is normal."]]
    corpus = [sentence for report in reports for sentence in report] * 4
    encoder = build_component(get_registry(), "text_encoder", {"name": name},
                              BuildContext(embed_dim=32, image_size=32, corpus=corpus)).eval()
    tokens = encoder.tokenize(reports)
    with torch.no_grad():
        out = encoder(tokens.input_ids, tokens.attention_mask, tokens.sentence_index)
    if not isinstance(out, TextFeatures):
        raise AssertionError(f"forward returned {type(out).__name__}, not TextFeatures")
    _shape(out.global_emb, (2, 32), "forward().global_emb")
    if out.word_emb.shape[0] != 2 or out.sentence_emb.shape[0] != 2:
        raise AssertionError("word_emb / sentence_emb do not have one row per report")
    words, sentences = out.word_emb.shape[1], out.sentence_emb.shape[1]
    _shape(out.word_emb, (2, words, 32), "forward().word_emb")
    _shape(out.word_mask, (2, words), "forward().word_mask (one flag per word token, which local heads read)")
    _shape(out.word_sentence, (2, words), "forward().word_sentence (the sentence of each word token)")
    _shape(out.sentence_emb, (2, sentences, 32), "forward().sentence_emb")
    _shape(out.sentence_mask, (2, sentences), "forward().sentence_mask (one flag per sentence)")
    if out.word_mask.dtype != torch.bool or out.sentence_mask.dtype != torch.bool:
        raise AssertionError("word_mask and sentence_mask must be bool tensors")
    found = out.sentence_mask.sum(1).tolist()
    if found != [1, 2]:
        raise AssertionError(f"sentence_mask marks {found} sentences in reports of [1, 2] sentences (sentence "
                             "miners and heads read one vector per real sentence)")
    for label in ("global_emb", "word_emb", "sentence_emb"):
        if not torch.isfinite(getattr(out, label)).all():
            raise AssertionError(f"{label} is not finite")
    return f"{words} word tokens, {sentences} sentence slots"


def _task_check(name: str) -> str:
    """The task evaluates a tiny model on SynthCXR (every kind of label, mask, box and report) with
    finite scores, each with a protocol."""
    fields = declared(get_registry().get("task", name).load(), "Params")
    fields = fields.model_fields if fields is not None else {}
    spec = {"name": name, **{k: v for k, v in SMALL_TASK.items() if k in fields}}  # the defaults, trained briefly
    config = RunConfig.model_validate({**TINY, "model": {**TINY["model"], "image_encoder": ENCODERS["CNN"]},
                                       "tasks": [spec]})
    built = build_run(config, get_registry(), 0)
    built.model.eval()
    metrics, _ = evaluate_tasks(config.tasks, Encoders(built.model.image_encoder, built.model.text_encoder),
                                built.data_source, built.context, torch.device("cpu"))
    result = metrics.get(name)
    if result is None:
        raise AssertionError("gave no result (skipped)")
    if result.get("error"):
        raise AssertionError(result["error"])
    scores = result["scores"]
    if not scores:
        raise AssertionError("gave no scores")
    bad = [c for c, v in scores.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
    if bad:
        raise AssertionError(f"non-finite score(s): {', '.join(bad)}")
    unprotocolled = [c for c in scores if c not in (result.get("protocols") or {})]
    if unprotocolled:
        raise AssertionError(f"score(s) without a protocol: {', '.join(unprotocolled)}")
    return ", ".join(f"{c} {v:.3g}" for c, v in list(scores.items())[:3])


#: Task parameters that only shorten the training a task does (set when the task has them).
SMALL_TASK = {"fractions": [1.0], "max_epochs": 2, "min_steps_per_epoch": 1, "max_steps_per_epoch": 2,
              "probe_seeds": [0]}

INTERFACE_CHECKS = {
    "image_encoder": ("gives every feature the tasks use", _image_interface_check),
    "text_encoder": ("tokenizes and gives text features", _text_interface_check),
    "task": ("evaluates on SynthCXR with finite scores", _task_check),
}


def check_plugin(plugin: str) -> list[Check]:
    """Run the conformance suite on every component of ``plugin`` (entry-point or distribution name)."""
    loaded = get_plugins()
    record = next((p for p in loaded.plugins if plugin in (p.name, p.distribution)), None)
    if record is None:
        names = ", ".join(f"{p.name} ({p.distribution})" for p in loaded.plugins)
        raise PluginError(f"no installed vlpbench plugin is called '{plugin}'. Installed: {names}. Install it "
                          "(pip install -e path/to/plugin) or give its entry-point name.")
    results = [Check(record.name, "plugin", "hooks match the hookspecs",
                     "pass" if record.status == "ok" else "FAIL", record.reason)]
    if record.status != "ok":
        return results
    scoped: list[tuple[str, str]] = []  # objective components for the two-process check
    for kind, name in record.components:
        entry = loaded.registry.get(kind, name)
        results.append(_run(name, kind, "imports", lambda: entry.load() and ""))
        if results[-1].status == "FAIL":
            continue
        params_model = entry.params_model()
        required = [field for field, info in params_model.model_fields.items() if info.is_required()] if params_model else []
        if required:  # e.g. a real dataset's root: there are no defaults to build from
            reason = f"required parameter(s) without a default: {', '.join(required)}"
            results += [Check(name, kind, check, "skip", reason) for check in (
                "defaults valid against own JSON Schema", "parameters round-trip through JSON")]
            if kind_of(kind).builds_alone:
                results.append(Check(name, kind, "builds from defaults", "skip", reason))
            if kind in INTERFACE_CHECKS:
                results.append(Check(name, kind, INTERFACE_CHECKS[kind][0], "skip", reason))
            continue
        if params_model is not None:
            results.append(_run(name, kind, "defaults valid against own JSON Schema", lambda: _defaults_check(params_model)))
            results.append(_run(name, kind, "parameters round-trip through JSON", lambda: _roundtrip_check(params_model)))
        if kind in OBJECTIVE_SLOTS:
            for label, encoder in ENCODERS.items():
                results.append(_run(name, kind, f"finite loss and gradients ({label})",
                                    lambda e=encoder: _forward_backward_check(kind, name, e)))
            results.append(_run(name, kind, "invariant to batch order", lambda: _permutation_check(kind, name)))
            results.append(_run(name, kind, "float32 = float64", lambda: _dtype_check(kind, name)))
            scoped.append((kind, name))
        elif kind_of(kind).builds_alone:
            results.append(_run(name, kind, "builds from defaults", lambda: _build_check(kind, name)))
        if kind in INTERFACE_CHECKS and results[-1].status != "FAIL":
            label, check = INTERFACE_CHECKS[kind]
            results.append(_run(name, kind, label, lambda c=check: c(name)))
    return results + _two_process_checks(scoped)


def _two_process_checks(components: list[tuple[str, str]]) -> list[Check]:
    """Local and gathered scope of every objective component on 2 processes (one spawn).

    A component that declares ``batch_negatives = False`` compares nothing across the batch; its
    gathered-scope check is skipped (its local one still runs).
    """
    if not components:
        return []

    registry = get_registry()
    cases, kinds, skipped = [], [], []
    for kind, name in components:
        for case in component_cases(kind, name):
            if case.scope == "gathered" and declared(registry.get(kind, name).load(), "batch_negatives") is False:
                skipped.append(Check(name, kind, "gathered scope on 2 processes = 1 process", "skip",
                                     "declares batch_negatives = False (compares nothing across the batch)"))
                continue
            cases.append(case)
            kinds.append(kind)
    label = lambda case: case.label.rsplit(" (", 1)[0]  # noqa: E731
    try:
        outcomes = check_cases(cases)
    except Exception as exc:  # the process group itself failed: every case fails, with the reason
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return [Check(label(c), kind, f"{c.scope} scope on 2 processes = 1 process", "FAIL", reason)
                for kind, c in zip(kinds, cases)] + skipped
    return [Check(label(o.case), kind, f"{o.case.scope} scope on 2 processes = 1 process",
                  "pass" if o.ok else "FAIL", o.message) for kind, o in zip(kinds, outcomes)] + skipped


def format_results(results: list[Check]) -> str:
    width = max(len(r.component) for r in results)
    check_width = max(len(r.check) for r in results)
    lines = [f"{'component':<{width}}  {'check':<{check_width}}  result"]
    for r in results:
        lines.append(f"{r.component:<{width}}  {r.check:<{check_width}}  {r.status}{'  ' + r.message if r.message and r.status != 'pass' else ''}")
    failed = sum(r.status == "FAIL" for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed" if failed else f"all {len(results)} checks passed "
                 f"({sum(r.status == 'skip' for r in results)} skipped)")
    return "\n".join(lines)
