"""Multi-process training: negative scopes on 2 CPU processes (gloo), data sharding, run identity,
and a real two-process `vlpbench run` under torchrun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlpbench.devkit.distributed_check import Case, check_cases
from vlpbench.objective.scope import World

CLUSTERS = {"clusters": 4, "queue_size": 8, "init_threshold": 1.0,  # centroids from the first step on,
            "skip_initialising_step": False}  # and used on that step too
FANE = {"global": {"name": "fane.sigmoid_mp"}, "positive_miner": {"name": "fane.adaptive_miner"},
        "negative_weighting": [{"name": "fane.hard_negative"}]}
GLOBAL_CASES = {  # METHODS.md's components that compare across the batch, in the global objective
    "infonce": {"global": {"name": "infonce"}},
    "fane": FANE,
    "sista": {"positive_miner": {"name": "sista.fn_elimination", "threshold": 0.3}},
    "cgns": {"negative_weighting": [{"name": "cmcgns.cluster_negatives", **CLUSTERS}]},
}
DDP_CASES = {  # objectives that mix gathered terms with per-process terms (heads)
    "cmcgns-head": {"local_heads": [{"name": "cmcgns.cross_attention", **CLUSTERS}]},
    "fane+tcsap": {**FANE, "local_heads": [{"name": "fane.tcsap"}]},
}


@pytest.fixture(scope="module")
def outcomes() -> dict[tuple[str, str, str], object]:
    """Every case in one spawn of a 2-process gloo group."""
    cases = [Case(label, objective, scope, "own") for label, objective in GLOBAL_CASES.items()
             for scope in ("local", "gathered")]
    cases += [Case(label, objective, scope, "ddp") for label, objective in DDP_CASES.items()
              for scope in ("local", "gathered")]
    # a wrong scope must be caught: local negatives compared with the gathered single-process loss
    cases += [Case(f"{label}-wrong", GLOBAL_CASES[label], "local", "own", reference_scope="gathered")
              for label in ("infonce", "cgns")]
    return {(o.case.label, o.case.scope, o.case.mode): o for o in check_cases(cases)}


#: the tests that start processes (a 2-process gloo group, torchrun) are integration tests; the
#: unit tests of this file (blocks, sharding, identity) run in the default run
multi_process = pytest.mark.integration


@multi_process
@pytest.mark.parametrize("label", list(GLOBAL_CASES))
@pytest.mark.parametrize("scope", ["local", "gathered"])
def test_two_processes_equal_the_single_process_reference(outcomes, label: str, scope: str) -> None:
    outcome = outcomes[(label, scope, "own")]
    assert outcome.ok, outcome.message
    assert set(outcome.worst) >= {"loss", "d/dimage_global", "d/dtext_global"}


@multi_process
@pytest.mark.parametrize("label", list(DDP_CASES))
@pytest.mark.parametrize("scope", ["local", "gathered"])
def test_ddp_averaged_step_equals_the_single_process_step(outcomes, label: str, scope: str) -> None:
    outcome = outcomes[(label, scope, "ddp")]
    assert outcome.ok, outcome.message


@multi_process
def test_the_compared_mechanisms_were_active(outcomes) -> None:
    cgns = outcomes[("cgns", "gathered", "own")].steps
    assert all("cmcgns.cluster_negatives/fn" in step["terms"] for step in cgns)
    assert any(step["stats"]["ignored"] > 0 for step in outcomes[("sista", "gathered", "own")].steps)
    assert any(step["stats"]["mined_positives"] > 0 for step in outcomes[("fane", "gathered", "own")].steps)
    head = outcomes[("cmcgns-head", "gathered", "ddp")].steps
    assert all({"cmcgns.cross_attention/sentence", "cmcgns.cross_attention/fn"} <= set(s["terms"]) for s in head)


@multi_process
@pytest.mark.parametrize("label", ["infonce", "cgns"])
def test_a_wrong_scope_is_caught(outcomes, label: str) -> None:
    outcome = outcomes[(f"{label}-wrong", "local", "own")]
    assert not outcome.ok and "differs" in outcome.message


def test_local_blocks_sit_on_the_diagonal_of_the_gathered_frame() -> None:
    from vlpbench.objective.contracts import DirectionAdjustment, NegativeAdjustment, Positives
    from vlpbench.objective.scope import block_diagonal
    from vlpbench.objective.scoped_inputs import to_local

    blocks = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 3, 3)
    full = block_diagonal(blocks, off_block=-1.0)
    assert torch.equal(full[:3, :3], blocks[0]) and torch.equal(full[3:, 3:], blocks[1])
    assert (full[:3, 3:] == -1).all() and (full[3:, :3] == -1).all()
    second = to_local(Positives(full, full > 10), World(1, 2), rows=3)
    assert torch.equal(second.affinity, blocks[1]) and torch.equal(second.ignore, blocks[1] > 10)
    adjustment = to_local(NegativeAdjustment(DirectionAdjustment(full, torch.arange(6.0).view(6, 1))), World(1, 2), 3)
    assert torch.equal(adjustment.image_to_text.extra_logits.flatten(), torch.tensor([3.0, 4.0, 5.0]))


def test_each_process_gets_its_share_of_the_global_batch(tmp_path: Path) -> None:
    from vlpbench.data.pipeline import PretrainTensors
    from vlpbench.models.tokenization import TokenizedReports

    n = 40
    tokens = TokenizedReports(torch.arange(n * 3).view(n, 3), torch.ones(n, 3, dtype=torch.long),
                              torch.zeros(n, 3, dtype=torch.long))
    data = PretrainTensors(torch.rand(n, 1, 8, 8), tokens, torch.zeros(n, 2))
    single = list(data.epoch_batches(1, 7, 8, augment=True))
    shares = [list(data.epoch_batches(1, 7, 8, augment=True, world=World(rank, 2))) for rank in range(2)]
    seen = []
    for step, whole in enumerate(single):
        parts = [shares[rank][step] for rank in range(2)]
        assert torch.equal(torch.cat([p.index for p in parts]), whole.index)  # rank 0 first half, rank 1 second
        assert torch.allclose(torch.cat([p.images for p in parts]), whole.images)  # same augmentation per sample
        seen += whole.index.tolist()
    assert len(seen) == len(set(seen)) == 5 * 8  # no sample twice in an epoch; the remainder is dropped, as before


def test_world_size_and_scopes_enter_the_identity_only_on_several_processes(tmp_path: Path, monkeypatch) -> None:
    from tests.conftest import TINY_EXPERIMENT
    from vlpbench.config.loader import load_experiment

    plain = tmp_path / "plain.yaml"
    plain.write_text(TINY_EXPERIMENT)
    scoped = tmp_path / "scoped.yaml"
    scoped.write_text(TINY_EXPERIMENT.replace("global: {name: infonce, temperature: 0.1}",
                                              "global: {name: infonce, temperature: 0.1}\n  negative_scope: gathered"))
    one = [load_experiment(p).runs[0].run_hash for p in (plain, scoped)]
    assert one[0] == one[1]  # one process: the same computation, the same run
    monkeypatch.setenv("WORLD_SIZE", "2")
    two = [load_experiment(p).runs[0].run_hash for p in (plain, scoped)]
    assert len({*one, *two}) == 3 and load_experiment(plain).runs[0].world_size == 2


def _torchrun(folder: Path, experiment: Path, results: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "vlpbench.cli", "run", str(experiment), "--results", str(results), "--quiet"]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@multi_process
def test_vlpbench_run_on_two_processes(tmp_path: Path) -> None:
    from tests.conftest import TINY_EXPERIMENT

    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(TINY_EXPERIMENT.replace("global: {name: infonce, temperature: 0.1}",
                                                  "global: {name: infonce, temperature: 0.1}\n  negative_scope: gathered"))
    finished = [_torchrun(tmp_path, experiment, tmp_path / f"results{i}") for i in range(2)]
    for done in finished:
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("experiment 'tiny'") == 1  # rank 0 alone reports
    runs = [next((tmp_path / f"results{i}" / "tiny" / "runs").iterdir()) for i in range(2)]
    provenance = json.loads((runs[0] / "provenance.json").read_text())
    assert provenance["distributed"]["world_size"] == 2
    assert provenance["distributed"]["negative_scope"]["global"] == "gathered"
    history = json.loads((runs[0] / "history.json").read_text())
    assert len(history["steps"]) == history["total_steps"] == 2 * (96 // 16)  # global batch 16 = 2 × 8
    first, second = (torch.load(r / "checkpoints" / "final.pt", weights_only=False)["model"] for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first if isinstance(first[k], torch.Tensor))  # same seed, same world
    assert (runs[0] / "metrics.json").read_text() == (runs[1] / "metrics.json").read_text()
    board = (tmp_path / "results0" / "tiny" / "leaderboard.md").read_text()
    assert re.search(r"\|\s+gathered\s+\|\s+2\s+\|", board)  # the ablation view: scope and processes


@multi_process
def test_a_two_process_run_skips_a_run_another_process_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 takes the run's lock and broadcasts the answer: both ranks skip the busy run together
    (neither trains it, neither hangs in a collective the other never joins)."""
    from tests.conftest import TINY_EXPERIMENT
    from vlpbench.config.loader import load_experiment
    from vlpbench.engine.lock import RunLock

    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(TINY_EXPERIMENT)
    with monkeypatch.context() as patch:
        patch.setenv("WORLD_SIZE", "2")  # the run's identity on two processes
        spec = load_experiment(experiment).runs[0]
    folder = tmp_path / "results" / "tiny" / "runs" / spec.run_id
    lock = RunLock(folder)
    assert lock.acquire()
    try:
        done = _torchrun(tmp_path, experiment, tmp_path / "results")
    finally:
        lock.release()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("in progress in another process") == 1  # rank 0 reports, once
    assert not (folder / "checkpoints").exists() and not (folder / "status.json").exists()
