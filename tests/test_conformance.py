"""check-plugin catches deliberately broken components, naming the component and the property."""

from __future__ import annotations

import re

import pytest

from vlpbench.devkit.conformance import check_plugin, format_results
from vlpbench.core.plugins import get_registry

BROKEN = """
import torch
from pydantic import BaseModel, ConfigDict, Field
from vlpbench.core.hookspecs import hookimpl
from vlpbench.objective.miners import IdentityMiner


class NanHead(torch.nn.Module):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, params, context):
        super().__init__()

    def forward(self, inputs):
        return {"x": inputs.image.patch_emb.sum() * float("nan")}


class OrderHead(torch.nn.Module):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, params, context):
        super().__init__()

    def forward(self, inputs):
        return {"x": inputs.image.global_emb[0].square().sum()}  # only the first sample counts


class StrictMiner(IdentityMiner):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int = Field(5, ge=10)  # its own default breaks its own constraint


class DenseMiner(IdentityMiner):
    # reads the patch features, which exist only per process: it cannot run in the gathered scope

    def forward(self, inputs):
        from vlpbench.objective.contracts import Positives

        return Positives.identity(inputs.image.patch_emb.shape[0], inputs.image.global_emb.device)


@hookimpl
def vlpbench_register(registrar):
    registrar.add("local_head", "broken.nan_head", "brokenkit:NanHead")
    registrar.add("local_head", "broken.order_head", "brokenkit:OrderHead")
    registrar.add("positive_miner", "broken.strict_miner", "brokenkit:StrictMiner")
    registrar.add("positive_miner", "broken.dense_miner", "brokenkit:DenseMiner")
"""
WRONG_HOOK = """
from vlpbench.core.hookspecs import hookimpl

@hookimpl
def vlpbench_register(registrar, extra_argument):
    pass
"""


@pytest.fixture
def broken_plugins(throwaway_plugins) -> None:
    kit = throwaway_plugins.module("brokenkit", BROKEN)
    throwaway_plugins.share(kit)  # seen by the 2-process checks
    with pytest.warns(UserWarning, match="wronghook"):
        throwaway_plugins.install(kit, throwaway_plugins.module("wronghook", WRONG_HOOK))


def failures(results) -> dict[tuple[str, str], str]:
    return {(r.component, r.check): r.message for r in results if r.status == "FAIL"}


def test_broken_components_are_each_caught(broken_plugins) -> None:
    results = check_plugin("brokenkit")
    failed = failures(results)
    assert ("broken.nan_head", "finite loss and gradients (CNN)") in failed
    assert "non-finite" in failed[("broken.nan_head", "finite loss and gradients (CNN)")]
    assert ("broken.order_head", "invariant to batch order") in failed
    assert ("broken.order_head", "finite loss and gradients (CNN)") not in failed
    assert ("broken.strict_miner", "defaults valid against own JSON Schema") in failed
    scope_check = "gathered scope on 2 processes = 1 process"
    assert ("broken.dense_miner", scope_check) in failed and "image.patch_emb is not available in the gathered" in failed[("broken.dense_miner", scope_check)]
    assert ("broken.dense_miner", "local scope on 2 processes = 1 process") not in failed
    assert ("broken.dense_miner", "finite loss and gradients (CNN)") not in failed
    table = format_results(results)
    assert "broken.nan_head" in table and "FAIL" in table and "failed" in table.splitlines()[-1]


def test_a_hook_with_a_wrong_signature_fails_the_hook_check(broken_plugins, cli) -> None:
    code, out, _ = cli("check-plugin", "wronghook")
    assert code == 1 and "hooks match the hookspecs" in out and "extra_argument" in out


def test_the_method_plugins_pass(cli) -> None:
    code, out, err = cli("check-plugin", "vlpbench-sista")
    assert code == 0, out + err
    # the table's rows: component, check, result (columns apart by two or more spaces)
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()[1:-1]]
    results = {(row[0], row[1]): row[2] for row in rows}
    assert set(results.values()) == {"pass"}, out  # nothing failed, nothing skipped
    assert out.strip().splitlines()[-1].endswith("checks passed (0 skipped)")
    components = [e.name for e in get_registry().all_entries() if e.origin == "sista" and e.kind != "preset"]
    assert {"sista.fn_elimination", "sista.sparse_token"} <= set(components)
    per_component = ("imports", "defaults valid against own JSON Schema", "parameters round-trip through JSON",
                     "finite loss and gradients (CNN)", "finite loss and gradients (ViT)", "invariant to batch order",
                     "float32 = float64", "local scope on 2 processes = 1 process",
                     "gathered scope on 2 processes = 1 process")
    expected = {(name, check) for name in components for check in per_component}
    expected |= {("sista", "hooks match the hookspecs"), ("sista", "imports")}  # the plugin's hooks and its preset
    assert expected <= set(results), sorted(expected - set(results))
