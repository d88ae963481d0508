"""``test_cases: N``: a task scores the first N cases of its test split. On SynthCXR the first N
studies of a larger split are the N-study split, so detection, zero-shot and retrieval with
``test_cases: 24`` on a 40-study test split score what they score on a 24-study split, while
another task of the same evaluation reads all 40."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlpbench.core.context import BuildContext
from vlpbench.core.errors import ConfigError
from vlpbench.data.synthcxr_source import SynthCXRSource
from vlpbench.models.image_timm import TimmImageEncoder
from vlpbench.models.text_bert import BertTextEncoder
from vlpbench.tasks.base import Encoders
from vlpbench.tasks.detection import Detection
from vlpbench.tasks.retrieval import Retrieval
from vlpbench.tasks.zero_shot import ZeroShot

SIZES = {"image_size": 32, "pretrain_size": 16, "train_size": 48, "val_size": 16}


@pytest.fixture(scope="module")
def sources() -> tuple[SynthCXRSource, SynthCXRSource]:
    small = SynthCXRSource(SynthCXRSource.Params(**SIZES, test_size=24), None)
    large = SynthCXRSource(SynthCXRSource.Params(**SIZES, test_size=40), None)
    return small, large


@pytest.fixture(scope="module")
def encoders(sources: tuple[SynthCXRSource, SynthCXRSource]) -> Encoders:
    torch.manual_seed(0)
    context = BuildContext(embed_dim=16, image_size=32, corpus=sources[0].split("pretrain").reports)
    return Encoders(TimmImageEncoder(TimmImageEncoder.Params(arch="resnet18"), context),
                    BertTextEncoder(BertTextEncoder.Params(layers=1, hidden=32, heads=2), context))


def test_the_first_cases_of_a_larger_split_are_the_smaller_split(sources) -> None:
    small, large = (source.split("test") for source in sources)
    assert np.array_equal(np.asarray(large.images[:24]), np.asarray(small.images))
    assert np.array_equal(large.labels[:24], small.labels) and large.sentences[:24] == small.sentences
    assert np.array_equal(large.boxes[large.boxes[:, 0] < 24], small.boxes)


@pytest.mark.parametrize("task", [ZeroShot, Retrieval])
def test_global_tasks_score_the_first_cases_as_the_smaller_split(task, sources, encoders: Encoders) -> None:
    small, large = sources
    cpu = torch.device("cpu")
    alone = task(task.Params()).evaluate(Encoders(encoders.image, encoders.text), small, cpu)
    first = task(task.Params(test_cases=24)).evaluate(Encoders(encoders.image, encoders.text), large, cpu)
    every = task(task.Params()).evaluate(Encoders(encoders.image, encoders.text), large, cpu)
    assert first.scores == pytest.approx(alone.scores, abs=1e-6)
    assert every.scores != pytest.approx(alone.scores, abs=1e-6)  # all 40 cases score otherwise
    column = next(iter(first.samples))
    assert len(next(iter(first.samples[column].arrays.values()))) == 24


def test_detection_scores_the_first_cases_as_the_smaller_split(sources, encoders: Encoders) -> None:
    small, large = sources
    cpu, params = torch.device("cpu"), {"fractions": [1.0], "max_epochs": 2, "channels": 8, "min_stride": 8}
    alone = Detection(Detection.Params(**params)).evaluate(Encoders(encoders.image), small, cpu)
    first = Detection(Detection.Params(**params, test_cases=24)).evaluate(Encoders(encoders.image), large, cpu)
    assert first.scores == pytest.approx(alone.scores, abs=1e-6) and 0 < first.scores["mAP@100%"] <= 1
    assert len(first.samples["mAP@100%"].arrays["gt_count"]) == 24
    assert first.protocols["mAP@100%"]["test_cases"] == 24 and "test_cases" not in alone.protocols["mAP@100%"]


def test_more_test_cases_than_the_split_holds_is_a_clear_error(sources, encoders: Encoders) -> None:
    with pytest.raises(ConfigError, match=r"zero_shot.test_cases = 30, but its test split has only 24 cases.*"
                                          r"data.test_size"):
        ZeroShot(ZeroShot.Params(test_cases=30)).evaluate(encoders, sources[0], torch.device("cpu"))


def test_an_unset_test_cases_leaves_a_run_identity_unchanged() -> None:
    """Runs made before the option keep their identity: the unset field is not in the dumped params."""
    assert "test_cases" not in Detection.Params().model_dump()
    assert ZeroShot.Params(test_cases=600).model_dump()["test_cases"] == 600


def test_validate_refuses_more_test_cases_than_synthcxr_makes(cli, tmp_path) -> None:
    """Caught before pretraining: the experiment file's line, the key and the fix."""
    path = tmp_path / "exp.yaml"
    path.write_text("name: e\ndata: {name: synthcxr, image_size: 32, pretrain_size: 64, train_size: 16, val_size: 8, "
                    "test_size: 16}\ntasks:\n  - {name: linear_probe}\n  - {name: zero_shot, test_cases: 40}\n")
    code, out, err = cli("validate", str(path))
    assert code == 2, err
    assert "line 5" in err and "tasks[1].test_cases" in err and "only 16 cases" in err and "raise test_size" in err
    path.write_text(path.read_text().replace("test_cases: 40", "test_cases: 16"))
    code, out, err = cli("validate", str(path))
    assert code == 0, err
