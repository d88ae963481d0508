"""Floor rows (``floor: random`` / ``floor: imagenet``): no pretraining, their own identity, labelled on the board."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import write_tiny_run
from tests.test_leaderboard import BASE_CONFIG, ORACLE_CONFIG, write_run

VARIANTS = """\
baseline: clip
variants:
  clip: {{}}
  floor:
    floor: {floor}
{extra}"""


def floor_file(folder: Path, floor: str = "random", extra: str = "", name: str = "fl") -> Path:
    return write_tiny_run(folder, name, epochs=1, extra=VARIANTS.format(floor=floor, extra=extra))


def timm_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A tiny stand-in for ImageNet weights: a seeded 3-channel resnet18 saved as a torch state dict."""
    import timm

    torch.manual_seed(1234)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, path)
    return state


def run_floor(folder: Path, path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, Path]:
    """Run only the floor variant, with the training loop replaced by one that fails the test."""
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine import pretrain as pretrain_module
    from vlpbench.engine.runner import run_experiment

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a floor run must not pretrain")

    monkeypatch.setattr(pretrain_module, "pretrain", no_training)
    monkeypatch.setattr(torch.optim.Optimizer, "step", no_training)
    experiment = load_experiment(path, variants=["floor"])
    outcome = run_experiment(experiment, folder / "results", progress=False, echo=lambda message: None)
    assert [r.state for r in outcome.runs] == ["finished"], [r.message for r in outcome.runs]
    spec = experiment.runs[0]
    return spec, folder / "results" / experiment.name / "runs" / spec.run_id


def test_random_floor_evaluates_the_freshly_built_encoders_without_a_step(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from vlpbench.engine.checkpoint import load_checkpoint
    from vlpbench.engine.files import read_json
    from vlpbench.engine.model import build_run
    from vlpbench.core.plugins import get_registry

    spec, run = run_floor(tmp_path, floor_file(tmp_path), monkeypatch)
    saved = load_checkpoint(run / "checkpoints" / "final.pt")["model"]
    fresh = build_run(spec.run_config(), get_registry(), spec.seed).model.state_dict()
    encoders = [k for k in fresh if k.startswith(("image_encoder.", "text_encoder."))]
    assert len([k for k in encoders if isinstance(fresh[k], torch.Tensor)]) > 20
    assert all(torch.equal(saved[k], fresh[k]) if isinstance(fresh[k], torch.Tensor) else saved[k] == fresh[k]
               for k in encoders)
    other_seed = build_run(spec.run_config(), get_registry(), spec.seed + 1).model.state_dict()
    assert not torch.equal(fresh["image_encoder.global_proj.weight"], other_seed["image_encoder.global_proj.weight"])
    provenance = read_json(run / "provenance.json")
    assert provenance["pretrain"]["steps"] == 0 and provenance["pretraining_reused_from"] is None
    history = read_json(run / "history.json")
    assert history["steps"] == [] and history["floor"] == "random" and history["epochs_done"] == 0
    assert "linear_probe" in read_json(run / "metrics.json")
    from vlpbench.engine.export import export_run

    assert export_run(run, "timm", tmp_path / "exported")  # the weights as evaluated can be exported


def test_imagenet_floor_evaluates_the_given_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlpbench.engine.checkpoint import load_checkpoint

    weights = timm_checkpoint(tmp_path / "imagenet.pth")
    path = floor_file(tmp_path, "imagenet", f"    model.image_encoder.pretrained_path: {tmp_path / 'imagenet.pth'}\n")
    _, run = run_floor(tmp_path, path, monkeypatch)
    saved = load_checkpoint(run / "checkpoints" / "final.pt")["model"]
    for key in ("layer1.0.conv1.weight", "layer1.1.bn2.running_mean", "bn1.weight"):
        assert torch.equal(saved[f"image_encoder.backbone.{key}"], weights[key]), key
    # one input channel: timm sums the RGB filters of the first convolution
    assert torch.allclose(saved["image_encoder.backbone.conv1.weight"], weights["conv1.weight"].sum(1, keepdim=True))


def test_floor_identity_is_its_own_and_ignores_training_settings(tmp_path: Path) -> None:
    from vlpbench.config.loader import load_experiment
    from vlpbench.config.identity import pretrain_identity

    path = floor_file(tmp_path)
    runs = {r.variant: r for r in load_experiment(path).runs}
    assert runs["floor"].run_hash != runs["clip"].run_hash and runs["floor"].config["floor"] == "random"
    assert "floor" not in runs["clip"].config  # unset: left out, so existing runs keep their identity
    identity = {v: pretrain_identity(r.config, r.seed, r.protocol_versions) for v, r in runs.items()}
    assert identity["floor"] != identity["clip"]  # pretraining reuse never mixes them
    changed = {r.variant: r for r in load_experiment(path, settings={"pretrain.lr": 0.5, "pretrain.epochs": 7,
                                                                       "objective.global.temperature": 0.3}).runs}
    assert changed["floor"].run_hash == runs["floor"].run_hash  # a floor does not train: not superseded
    assert changed["clip"].run_hash != runs["clip"].run_hash
    precision = {r.variant: r for r in load_experiment(path, settings={"pretrain.precision": "bf16"}).runs}
    assert precision["floor"].run_hash != runs["floor"].run_hash  # the evaluation runs at this precision


def test_validate_explains_floors_and_refuses_bad_ones(tmp_path: Path, cli) -> None:
    code, out, _ = cli("validate", str(floor_file(tmp_path)))
    assert code == 0 and "variant 'floor': floor (random init): no pretraining" in out

    code, _, err = cli("validate", str(floor_file(tmp_path, "imagenet", name="no_weights")))
    assert code != 0
    assert "no_weights.yaml, line" in err and "'floor' = imagenet" in err and "pretrained_path" in err
    assert "nothing is downloaded" in err and "Traceback" not in err

    random_with_weights = floor_file(tmp_path, "random", "    model.image_encoder.pretrained_path: /x/in1k.pth\n",
                                     name="random_weights")
    code, _, err = cli("validate", str(random_with_weights))
    assert code != 0 and "'floor' = random" in err and "model.image_encoder.pretrained_path: null" in err
    assert "random_weights.yaml, line" in err

    code, _, err = cli("validate", str(floor_file(tmp_path, "scratch", name="unknown")))
    assert code != 0 and "floor" in err and "'random'" in err and "'imagenet'" in err


FLOOR_CONFIG = {**BASE_CONFIG, "floor": "random"}


@pytest.fixture
def board_results(tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    for seed, (a, b, f) in enumerate([(0.5, 0.6, 0.9), (0.6, 0.8, 0.9), (0.7, 0.7, 0.95)]):
        write_run(root, "a", seed, a, index=0)
        write_run(root, "b", seed, b, index=1, config=ORACLE_CONFIG)
        write_run(root, "f", seed, f, index=2, config=FLOOR_CONFIG)  # a floor above everyone: still never bold
    return root


def test_board_labels_floors_keeps_them_out_of_best_ranks_and_the_methods_family(board_results: Path) -> None:
    from vlpbench.board.leaderboard import build_board, write_leaderboard

    board = build_board([board_results], "t")
    column = "linear_probe/auroc@1%"
    assert board.roles == {"a": "", "b": "ceiling (oracle)", "f": "floor (random init)"}
    assert board.best == {("b", column)}
    assert "f" not in board.ranks.index and {"a", "b"} <= set(board.ranks.index)
    methods = board.differences.loc[("b", column)]
    assert methods["p_adjusted"] == pytest.approx(methods["p"])  # one comparison, as without the floor
    assert ("f", column) not in board.differences.index
    assert board.floor_differences.loc[("f", column), "difference"] == pytest.approx(0.3167, abs=1e-3)

    markdown = write_leaderboard(board_results)
    assert "| role" in markdown and "floor (random init)" in markdown and "ceiling (oracle)" in markdown
    assert "**95.0" not in markdown and "**70.0 ± 10.0**" in markdown
    assert "## Floors: what pretraining adds over `a`" in markdown
    table = pd.read_csv(board_results / "leaderboard.csv")
    floor_row = table[table["variant"] == "f"].iloc[0]
    assert floor_row["role"] == "floor (random init)" and not bool(floor_row["best"]) and floor_row["pairs"] == 3
    tex = (board_results / "leaderboard.tex").read_text()
    header = next(line for line in tex.splitlines() if line.startswith("variant"))
    first_row = next(line for line in tex.splitlines() if line.startswith("a &"))
    assert header.count("&") == first_row.count("&") and "role" in header and "floors (no pretraining)" in tex
    page = (board_results / "leaderboard.html").read_text()
    assert 'data-role="floor (random init)"' in page and "Floors: what pretraining adds" in page


def test_board_without_floors_or_oracle_has_no_role_column(tmp_path: Path) -> None:
    from vlpbench.board.leaderboard import write_leaderboard

    root = tmp_path / "exp"
    for seed in range(2):
        write_run(root, "a", seed, 0.5 + seed / 10, index=0)
        write_run(root, "c", seed, 0.6 + seed / 10, index=1)
    markdown = write_leaderboard(root)
    assert "role" not in markdown and "Floors" not in markdown
