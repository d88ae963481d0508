"""check-plugin covers every kind's whole interface: encoders give every feature the tasks use,
text encoders tokenize, tasks evaluate on SynthCXR with finite scores (issue 21)."""

from __future__ import annotations

import pytest

from vlpbench.devkit.conformance import check_plugin

PARTIAL = """
from vlpbench.core.hookspecs import hookimpl
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.tasks.zero_shot import ZeroShot


class NoMapsEncoder(TimmImageEncoder):
    feature_maps = None  # pretrains fine, then segmentation and detection have nothing to read


class NanTask(ZeroShot):
    def evaluate(self, encoders, source, device):
        outcome = super().evaluate(encoders, source, device)
        outcome.scores = {column: float("nan") for column in outcome.scores}
        return outcome


@hookimpl
def vlpbench_register(registrar):
    registrar.add("image_encoder", "partial.no_maps", "partialkit:NoMapsEncoder")
    registrar.add("image_encoder", "partial.timm", "vlpbench.models.image_timm:TimmImageEncoder")
    registrar.add("task", "partial.nan_task", "partialkit:NanTask")
    registrar.add("task", "partial.zero_shot", "vlpbench.tasks.zero_shot:ZeroShot")
"""


@pytest.fixture
def partial_plugin(throwaway_plugins) -> None:
    throwaway_plugins.install(throwaway_plugins.module("partialkit", PARTIAL, name="partial"))


def test_an_encoder_without_feature_maps_and_a_task_with_nan_scores_fail(partial_plugin) -> None:
    results = {(r.component, r.check): r for r in check_plugin("partial")}
    no_maps = results[("partial.no_maps", "gives every feature the tasks use")]
    assert no_maps.status == "FAIL" and "feature_maps" in no_maps.message and "segmentation" in no_maps.message
    assert results[("partial.no_maps", "builds from defaults")].status == "pass"  # the old checks let it through
    assert results[("partial.timm", "gives every feature the tasks use")].status == "pass"
    nan_task = results[("partial.nan_task", "evaluates on SynthCXR with finite scores")]
    assert nan_task.status == "FAIL" and "non-finite" in nan_task.message
    assert results[("partial.zero_shot", "evaluates on SynthCXR with finite scores")].status == "pass"


def test_the_builtin_encoders_and_tasks_pass_the_interface_checks() -> None:
    from vlpbench.devkit.conformance import _image_interface_check, _task_check, _text_interface_check

    assert "feature map" in _image_interface_check("timm")
    _text_interface_check("bert")
    for task in ("linear_probe", "retrieval", "segmentation"):
        assert _task_check(task)
