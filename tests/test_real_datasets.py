"""Real-dataset adapters on tiny copies written in each published layout (tests/real_data.py):
end to end through `vlpbench run`, `vlpbench data verify`, MGCA's split recipes, bad data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from tests import real_data
from vlpbench.core.errors import DataError

WRITERS = {"mimic_cxr": real_data.mimic_cxr, "chexpert": real_data.chexpert, "rsna_pneumonia": real_data.rsna,
           "siim_pneumothorax": real_data.siim, "covidx": real_data.covidx, "object_cxr": real_data.object_cxr}
#: fixture-size options (the defaults are the published sizes: 5000 validation rows, 5x200)
EXTRA = {"chexpert": {"valid_size": 10, "per_label_5x200": 2}}


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("real")
    return {name: writer(base / name) for name, writer in WRITERS.items()}


def dataset(name: str, root: Path, **params):
    from vlpbench.core.build import build_component
    from vlpbench.core.context import BuildContext
    from vlpbench.core.plugins import get_registry

    spec = {"name": name, "root": str(root), "image_size": 32, **EXTRA.get(name, {}), **params}
    return build_component(get_registry(), "dataset", spec, BuildContext())


def copy_root(roots: dict[str, Path], name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(roots[name], target)
    return target


EXPERIMENT = """\
name: real-tiny
seeds: [0]
data: {{name: mimic_cxr, root: "${{VLPBENCH_TEST_DATA}}/mimic_cxr", image_size: 32}}
model:
  image_encoder: {{name: timm, arch: resnet18}}
  text_encoder: {{name: bert, layers: 1, hidden: 32, heads: 2, vocab_size: 300}}
  embed_dim: 32
objective:
  global: {{name: infonce, temperature: 0.1}}
pretrain: {{epochs: 1, batch_size: 16, lr: 1.0e-3, threads: 1}}
tasks:
  - {{name: retrieval}}
  - {{name: zero_shot}}
  - {{name: linear_probe, fractions: [0.1, 1.0], max_epochs: 3, dataset: {chexpert}}}
  - {{name: linear_probe, fractions: [1.0], max_epochs: 3, dataset: {rsna}}}
  - {{name: linear_probe, fractions: [1.0], max_epochs: 3, dataset: {covidx}}}
  - {{name: linear_probe, fractions: [1.0], max_epochs: 3, dataset: {object}}}
  - {{name: segmentation, fractions: [1.0], max_epochs: 2, dataset: {rsna}}}
  - {{name: segmentation, fractions: [1.0], max_epochs: 2, dataset: {siim}}}
  - {{name: detection, fractions: [1.0], max_epochs: 2, dataset: {rsna}}}
  - {{name: detection, fractions: [1.0], max_epochs: 2, dataset: {object}}}
"""


def spec_text(name: str, **extra) -> str:
    params = {"name": name, "root": f"${{VLPBENCH_TEST_DATA}}/{name}", "image_size": 32, **EXTRA.get(name, {}), **extra}
    return json.dumps({k: v for k, v in params.items() if v is not None})


@pytest.fixture(scope="module")
def finished_real(roots: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The experiment above run once through the CLI (roots via an environment variable)."""
    from vlpbench.cli import main

    folder = tmp_path_factory.mktemp("real-run")
    text = EXPERIMENT.format(chexpert=spec_text("chexpert"), rsna=spec_text("rsna_pneumonia"),
                             covidx=spec_text("covidx", image_size=None), object=spec_text("object_cxr"),
                             siim=spec_text("siim_pneumothorax", on_error="skip"))
    (folder / "real.yaml").write_text(text)
    previous = os.environ.get("VLPBENCH_TEST_DATA")
    os.environ["VLPBENCH_TEST_DATA"] = str(next(iter(roots.values())).parent)
    try:
        code = main(["run", str(folder / "real.yaml"), "--results", str(folder / "results"), "--quiet"])
    finally:
        if previous is None:
            os.environ.pop("VLPBENCH_TEST_DATA", None)
        else:
            os.environ["VLPBENCH_TEST_DATA"] = previous
    run = next((folder / "results" / "real-tiny" / "runs").iterdir())
    return code, run


def test_every_dataset_runs_end_to_end(finished_real, roots) -> None:
    code, run = finished_real
    assert code == 0, (run / "status.json").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["linear_probe#2"]["scores"]) == {"auroc@10%", "auroc@100%"}  # CheXpert: 5-label AUROC
    assert set(metrics["linear_probe#3"]["scores"]) == {"auroc@100%"}  # RSNA: binary AUROC
    assert set(metrics["linear_probe#4"]["scores"]) == {"accuracy@100%"}  # COVIDx: 3-class accuracy
    assert "dice@100%" in metrics["segmentation#6"]["scores"] and "dice@100%" in metrics["segmentation#7"]["scores"]
    assert "map@100%" in {k.lower() for k in metrics["detection#8"]["scores"]}
    assert "auroc/pleural_effusion" in metrics["zero_shot"]["scores"]  # MIMIC-CXR has prompts and reports
    assert all(0.0 <= v <= 1.0 for task in metrics.values() for v in task["scores"].values() if v == v)
    provenance = json.loads((run / "provenance.json").read_text())
    # the pretraining data and every task dataset record their manifest hash
    assert provenance["data"]["dataset"] == "mimic_cxr"
    assert provenance["data"]["manifest_sha256"] == dataset("mimic_cxr", roots["mimic_cxr"]).manifest_sha256()
    chexpert_sha = dataset("chexpert", roots["chexpert"]).manifest_sha256()
    assert provenance["task_data"]["linear_probe#2"]["protocol"]["manifest_sha256"] == chexpert_sha
    assert metrics["linear_probe#2"]["protocols"]["auroc@100%"]["dataset"]["manifest_sha256"] == chexpert_sha
    assert provenance["task_data"]["segmentation#7"]["skipped_samples"] == {}
    assert provenance["task_data"]["linear_probe#4"]["protocol"]["image_size"] == 32  # the run's size by default
    config = (run / "config.yaml").read_text()
    assert "${VLPBENCH_TEST_DATA}/chexpert" in config and str(roots["chexpert"]) not in config


def test_verify_writes_the_manifest_and_its_hash(roots, cli, tmp_path: Path) -> None:
    out = tmp_path / "chexpert.json"
    code, text, _ = cli("data", "verify", "chexpert", "--root", str(roots["chexpert"]), "--set", "valid_size=10",
                        "--set", "per_label_5x200=2", "--out", str(out))
    assert code == 1 and "DIFFERENT: train.csv rows: 90, expected 223414" in text  # a tiny copy is not the release
    code, text, _ = cli("data", "verify", "chexpert", "--root", str(roots["chexpert"]), "--set", "valid_size=10",
                        "--set", "per_label_5x200=2", "--out", str(out), "--skip-counts")
    assert code == 0 and "OK" in text
    manifest = json.loads(out.read_text())
    source = dataset("chexpert", roots["chexpert"])
    assert manifest["sha256"] == source.manifest_sha256() and manifest["sha256"] in text
    assert set(manifest["splits"]) == {"train", "val", "test"}
    assert {"train@1%", "train@10%"} <= set(manifest["fractions"])
    assert set(manifest["fractions"]["train@1%"]) <= set(manifest["fractions"]["train@10%"]) <= set(manifest["splits"]["train"])
    assert manifest["splits"]["test"] == [r.id for r in source.records()["test"]]


def test_verify_names_what_is_missing(roots, cli, tmp_path: Path) -> None:
    root = copy_root(roots, "covidx", tmp_path)
    (root / "test" / "test-004.jpg").unlink()
    code, text, _ = cli("data", "verify", "covidx", "--root", str(root), "--out", str(tmp_path / "m.json"))
    assert code == 1 and "MISSING (1)" in text and "test-004.jpg (test.txt, line 5" in text
    shutil.rmtree(root / "train")
    code, text, _ = cli("data", "verify", "covidx", "--root", str(root), "--out", str(tmp_path / "m.json"))
    assert code == 1 and f"{root / 'train'} (training images)" in text


def test_mgca_recipes_match_pandas_and_scikit_learn(roots) -> None:
    """The numpy re-implementations give the rows that MGCA's pandas / scikit-learn calls give."""
    import pandas as pd

    from vlpbench.data.real.common import sample_positions, shuffle_split

    frame = pd.DataFrame({"v": range(37)})
    assert frame.sample(n=11, random_state=0).index.tolist() == sample_positions(37, 11, 0).tolist()
    np.random.seed(0)
    assert np.random.choice(37, size=9, replace=False).tolist() == sample_positions(37, 9, 0).tolist()
    # CheXpert exactly as mgca/preprocess/chexpert.py does it (with its drop-by-label), on the fixture
    root = roots["chexpert"]
    df = pd.read_csv(root / "train.csv")
    filled = df.fillna(0)
    filled = filled[filled["Frontal/Lateral"] == "Frontal"]
    competition = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    others = ["Enlarged Cardiomediastinum", "Lung Lesion", "Lung Opacity", "Pneumonia", "Pneumothorax",
              "Pleural Other", "Fracture", "Support Devices"]
    aside = []
    for task in competition:
        keep = np.ones(len(filled), bool)
        for column in competition + others:
            keep &= (filled[column] == (1 if column == task else 0)).to_numpy()
        aside.append(filled[keep].sample(n=2, random_state=0))
    rest = df[~df["Path"].isin(pd.concat(aside)["Path"])]
    np.random.seed(0)
    valid_ids = np.random.choice(len(rest), size=10, replace=False)
    valid, train = rest.iloc[valid_ids], rest.drop(valid_ids, errors="ignore")
    frontal = lambda t: t[t["Frontal/Lateral"] == "Frontal"]["Path"].tolist()  # noqa: E731
    records = dataset("chexpert", root).records()
    assert [r.id for r in records["val"]] == frontal(valid)
    assert [r.id for r in records["train"]] == frontal(train)
    disjoint = dataset("chexpert", root, recipe="mgca-disjoint").records()
    assert not {r.id for r in disjoint["train"]} & {r.id for r in disjoint["val"]}
    from sklearn.model_selection import train_test_split  # the `test` extra installs it: fail, never skip

    for n, kwargs in ((37, {"test_size": 0.3}), (41, {"train_size": 0.8}), (50, {"test_size": 12}), (9, {"test_size": 0.5})):
        train_part, test_part = train_test_split(np.arange(n), random_state=0, **kwargs)
        mine = shuffle_split(n, random_state=0, **kwargs)
        assert train_part.tolist() == mine[0].tolist() and test_part.tolist() == mine[1].tolist()


def test_labels_boxes_and_masks(roots) -> None:
    chexpert = dataset("chexpert", roots["chexpert"]).split("test")
    assert chexpert.label_names == ("atelectasis", "cardiomegaly", "consolidation", "edema", "pleural_effusion")
    # uncertain (-1) → 1 for atelectasis/edema/effusion, → 0 for cardiomegaly/consolidation (MGCA)
    import pandas as pd

    valid = pd.read_csv(roots["chexpert"] / "valid.csv")
    row = valid[valid["Path"] == chexpert.ids[0]].iloc[0]
    expected = [1 if row[c] == 1 or (row[c] == -1 and c in ("Atelectasis", "Edema", "Pleural Effusion")) else 0
                for c in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")]
    assert chexpert.labels[0].tolist() == expected
    rsna = dataset("rsna_pneumonia", roots["rsna_pneumonia"]).split("train")
    positive = int(np.flatnonzero(rsna.labels[:, 0])[0])
    boxes = rsna.boxes_of(positive)
    assert len(boxes) >= 1 and np.allclose(boxes[0], [0, 8 / 2, 10 / 2, 28 / 2, 34 / 2])  # 64 px → 32 px
    assert rsna.masks("pneumonia")[positive, 6, 5] and not rsna.masks("pneumonia")[positive, 0, 0]
    assert not rsna.any_mask()[rsna.labels[:, 0] == 0].any()
    siim = dataset("siim_pneumothorax", roots["siim_pneumothorax"]).split("train")
    positive = int(np.flatnonzero(siim.labels[:, 0])[0])
    mask = siim.masks("pneumothorax")[positive]
    assert mask[2:12, 20:30].all() and mask.sum() == 100  # rows 4:24, columns 40:60 of 64 px, at 32 px
    objects = dataset("object_cxr", roots["object_cxr"]).split("test")
    assert np.allclose(objects.boxes_of(3), [[0, 6 * 32 / 50, 8 * 32 / 60, 25 * 32 / 50, 30 * 32 / 60]])  # polygon → box
    covidx = dataset("covidx", roots["covidx"])
    assert covidx.label_type == "multiclass" and (covidx.split("test").labels.sum(1) == 1).all()
    mimic = dataset("mimic_cxr", roots["mimic_cxr"]).split("pretrain")
    assert mimic.sentences[0] and 0 < mimic.impression_start[0] < len(mimic.sentences[0])
    assert "FINDINGS:" in mimic.reports[0] and "IMPRESSION:" in mimic.reports[0]


def test_rle_round_trip_and_dicom_photometry(tmp_path: Path) -> None:
    from vlpbench.data.real.common import BadSample, read_pixels, rle_to_mask

    mask = np.zeros((16, 12), bool)
    mask[3:7, 2:5] = mask[10:12, 8:12] = True
    assert np.array_equal(rle_to_mask(real_data.mask_to_rle(mask), 16, 12), mask)
    with pytest.raises(BadSample, match="past the 12×16 image"):
        rle_to_mask("190 10", 16, 12)
    image = np.linspace(0, 1, 64).reshape(8, 8)
    real_data.write_dicom(tmp_path / "a.dcm", image)
    real_data.write_dicom(tmp_path / "b.dcm", image, monochrome1=True)
    a, b = read_pixels(tmp_path / "a.dcm"), read_pixels(tmp_path / "b.dcm")
    assert a[0, 0] < a[-1, -1] and np.allclose(a, b, atol=1e-3)  # MONOCHROME1 is inverted back
    from pydicom.data import get_testdata_file

    compressed = read_pixels(Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")))  # JPEG baseline, through Pillow
    assert compressed.shape == (100, 100) and 0.0 <= compressed.min() < compressed.max() <= 1.0
    with pytest.raises(BadSample, match=r"rtplan.dcm cannot be read .*no pixel data"):  # a DICOM without an image
        read_pixels(Path(get_testdata_file("rtplan.dcm")))


def test_downstream_datasets_cannot_pretrain(roots) -> None:
    with pytest.raises(DataError, match="no pretraining split and no reports.*task's `dataset:`"):
        dataset("rsna_pneumonia", roots["rsna_pneumonia"]).split("pretrain")


@pytest.mark.parametrize("damage, match", [
    ("missing_image", r"stage_2_train_images/.*\.dcm is missing"),
    ("corrupt_dicom", r"cannot be read"),
])
def test_bad_images_name_file_and_line_or_are_skipped(roots, tmp_path: Path, damage: str, match: str) -> None:
    root = copy_root(roots, "rsna_pneumonia", tmp_path)
    victim = sorted((root / "stage_2_train_images").iterdir())[7]
    if damage == "missing_image":
        victim.unlink()
    else:
        victim.write_bytes(b"DICM but not really" * 10)
    source = dataset("rsna_pneumonia", root)
    with pytest.raises(DataError, match=f"stage_2_train_labels.csv, line.*\\[{victim.stem}\\].*{match}.*on_error: skip"):
        source.prepare()
    skipping = dataset("rsna_pneumonia", root, on_error="skip")
    skipping.prepare()
    assert sum(skipping.skipped_counts().values()) == 1
    assert skipping.protocol()["skipped_samples"] == skipping.skipped_counts()
    assert victim.stem in json.dumps(skipping.provenance()["skipped"])
    assert sum(len(skipping.split(s)) for s in ("train", "val", "test")) == 59


def test_rle_that_does_not_fit_names_file_and_line(roots, tmp_path: Path) -> None:
    root = copy_root(roots, "siim_pneumothorax", tmp_path)
    table = (root / "train-rle.csv").read_text().splitlines()
    image_id = table[1].split(",")[0]
    table[1] = f"{image_id}, 4000 200"  # 64 x 64 = 4096 pixels
    (root / "train-rle.csv").write_text("\n".join(table) + "\n")
    with pytest.raises(DataError, match=rf"train-rle.csv, lines? [0-9, ]+ \[{image_id}\]: line 2: the RLE string runs to pixel 4200"):
        dataset("siim_pneumothorax", root).prepare()
    skipping = dataset("siim_pneumothorax", root, on_error="skip")
    skipping.prepare()
    assert sum(skipping.skipped_counts().values()) >= 1


def test_wrong_or_missing_columns_and_files(roots, tmp_path: Path) -> None:
    root = copy_root(roots, "object_cxr", tmp_path)
    text = (root / "dev.csv").read_text()
    (root / "dev.csv").write_text(text.replace("image_name,annotation", "image,annotation", 1))
    with pytest.raises(DataError, match=r"dev.csv lacks the column\(s\) 'image_name'; it has 'image', 'annotation'"):
        dataset("object_cxr", root).records()
    (root / "dev.csv").write_text(text.replace("0 5 6 20 22", "7 5 6 20 22", 1))
    with pytest.raises(DataError, match=r"dev.csv, line 3 \(00001.jpg\): bad annotation: object type '7'"):
        dataset("object_cxr", root).records()
    (root / "dev.csv").unlink()
    with pytest.raises(DataError, match="dev.csv is missing"):
        dataset("object_cxr", root).records()
    chexpert = copy_root(roots, "chexpert", tmp_path)
    rows = (chexpert / "valid.csv").read_text().splitlines()
    rows[3] = rows[3].replace("Female,60", "Female,60").rsplit(",", 1)[0] + ",maybe"
    (chexpert / "valid.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"valid.csv, line 4, column 'Support Devices': 'maybe' is not a number"):
        dataset("chexpert", chexpert).records()
    with pytest.raises(DataError, match=r"environment variable \$VLPBENCH_NOT_SET_ANYWHERE"):
        dataset("chexpert", "${VLPBENCH_NOT_SET_ANYWHERE}/chexpert")


def test_a_bad_task_dataset_fails_the_run_before_pretraining(roots, tmp_path: Path, cli) -> None:
    root = copy_root(roots, "covidx", tmp_path)
    (root / "test" / "test-002.jpg").write_bytes(b"not a jpeg")
    experiment = tmp_path / "bad.yaml"
    experiment.write_text(f"""\
name: bad
data: {{name: synthcxr, image_size: 32, pretrain_size: 32, train_size: 16, val_size: 16, test_size: 16}}
model:
  text_encoder: {{name: bert, layers: 1, hidden: 32, heads: 2, vocab_size: 300}}
  embed_dim: 32
pretrain: {{epochs: 1, batch_size: 16, threads: 1}}
tasks: [{{name: linear_probe, dataset: {{name: covidx, root: "{root}", image_size: 32}}}}]
""")
    code, out, _ = cli("run", str(experiment), "--results", str(tmp_path / "results"), "--quiet")
    assert code == 2 and "test.txt, line 3 [test/test-002.jpg]" in out and "cannot be read" in out
    run = next((tmp_path / "results" / "bad" / "runs").iterdir())
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    assert not (run / "history.json").exists()  # stopped before pretraining


def test_manifest_pin_and_disk_cache(roots, tmp_path: Path) -> None:
    sha = dataset("covidx", roots["covidx"]).manifest_sha256()
    dataset("covidx", roots["covidx"], manifest_sha256=sha)
    with pytest.raises(DataError, match="pins manifest_sha256"):
        dataset("covidx", roots["covidx"], manifest_sha256="0" * 64)
    cached = dataset("covidx", roots["covidx"], cache_dir=str(tmp_path / "cache"))
    first = cached.split("val")
    folders = list((tmp_path / "cache").glob("covidx-val-32px-*/meta.json"))
    assert len(folders) == 1 and first.images.dtype == np.uint8
    assert json.loads(folders[0].read_text())["key"]["manifest"] == sha
    from vlpbench.data.real import base, decoding

    base._SPLITS.clear()
    with mock.patch.object(decoding, "decode_record", side_effect=AssertionError("decoded again")):  # maps the store
        again = dataset("covidx", roots["covidx"], cache_dir=str(tmp_path / "cache")).split("val")
    assert np.array_equal(first.images, again.images) and first.ids == again.ids


def test_eval_released_weights_on_a_downstream_dataset_alone(roots, tmp_path: Path, cli) -> None:
    """`vlpbench eval` reads only the tasks' datasets: no copy of the pretraining data is needed."""
    import timm
    import torch

    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict(), weights)
    experiment = tmp_path / "chexpert.yaml"
    experiment.write_text(f"""\
name: chexpert-eval
data: {{name: mimic_cxr, root: "/nowhere/mimic-cxr-jpg", image_size: 32}}
tasks: [{{name: linear_probe, fractions: [1.0], max_epochs: 2, dataset: {spec_text("chexpert").replace("${VLPBENCH_TEST_DATA}/chexpert", str(roots["chexpert"]))}}}]
""")
    code, out, err = cli("eval", str(weights), "--arch", "resnet18", "--experiment", str(experiment), "--label", "released",
                         "--results", str(tmp_path / "results"))
    assert code == 0, err
    run = next((tmp_path / "results" / "chexpert-eval" / "runs").iterdir())
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["data"] is None
    assert provenance["task_data"]["linear_probe"]["protocol"]["manifest_sha256"] == \
        dataset("chexpert", roots["chexpert"]).manifest_sha256()


def test_prepare_builds_the_stores_but_holds_no_split(roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before pretraining the runner prepares a task's dataset: files checked and image stores built,
    but no split kept in memory through pretraining (the tasks map them from the store later)."""
    from vlpbench.data.real import base

    monkeypatch.setenv("VLPBENCH_STORE_DIR", str(tmp_path / "store"))
    source = dataset("rsna_pneumonia", copy_root(roots, "rsna_pneumonia", tmp_path))
    held = set(base._SPLITS)
    source.prepare()
    assert set(base._SPLITS) == held  # nothing new held
    stores = [p for p in (tmp_path / "store").glob("rsna_pneumonia-*px-*") if p.is_dir()]
    assert len(stores) == 3  # but every split's store is built
    assert len(source.split("test")) > 0  # and opened from it when a task asks
