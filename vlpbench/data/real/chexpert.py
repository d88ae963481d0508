"""CheXpert (Stanford ML Group): the 5 competition labels with MGCA's split and uncertainty mapping.

Layout (the CheXpert-v1.0 or CheXpert-v1.0-small download): ``train.csv`` and ``valid.csv`` with
the columns ``Path``, ``Sex``, ``Age``, ``Frontal/Lateral``, ``AP/PA`` and 14 label columns
(1.0 positive, 0.0 negative, -1.0 uncertain, empty not mentioned); the images under ``train/`` and
``valid/``. ``Path`` starts with the release folder (``CheXpert-v1.0-small/train/patient00001/
study1/view1_frontal.jpg``); the adapter drops that first component and reads the rest under
``root``.

Split (MGCA, read in HKU-MedAI/MGCA ``mgca/preprocess/chexpert.py``, ``mgca/constants.py`` and
``mgca/datasets/classification_dataset.py``):

- test = the official validation set ``valid.csv`` (CheXpert's test labels are hidden);
- MGCA first sets aside "CheXpert 5×200": from the frontal rows of train.csv (empty cells as 0),
  for each competition label the rows where that label is 1 and the other 4 competition labels and
  the 8 other findings (not "No Finding") are 0, 200 drawn with ``sample(n=200, random_state=0)``;
- of the remaining rows, ``valid_size`` = 5000 positions drawn with ``np.random.seed(0)``;
  ``np.random.choice(n, 5000, replace=False)`` are the validation split;
- train = the remaining rows minus ``drop(valid_ids)``. MGCA drops by *index label* (positions in
  the original train.csv) rather than by position, so its train split keeps most validation rows
  and loses others. ``recipe: mgca`` reproduces that exactly (comparable with MGCA's numbers);
  ``recipe: mgca-disjoint`` removes exactly the validation rows from train instead;
- every split is then filtered to frontal views (``Frontal/Lateral == "Frontal"``).

Labels: Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion; empty → 0; uncertain
(-1) → 1 for Atelectasis, Edema, Pleural Effusion and → 0 for Cardiomegaly, Consolidation (MGCA's
``CHEXPERT_UNCERTAIN_MAPPINGS``, "based on the original CheXpert paper"). Multi-label AUROC.

Expected counts (train.csv 223,414 rows; valid.csv 234 rows, 202 of them frontal) are written from
memory of the v1.0 release, not from a source read here.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import Field

from vlpbench.data.real.base import RealDataset, RealParams
from vlpbench.data.real.common import Record, find_table, line_of, numeric_columns, read_table, sample_positions
from vlpbench.data.synthcxr import PROMPTS

COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
OTHER_FINDINGS = ("Enlarged Cardiomediastinum", "Lung Lesion", "Lung Opacity", "Pneumonia", "Pneumothorax",
                  "Pleural Other", "Fracture", "Support Devices")
ALL_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
              "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
              "Fracture", "Support Devices")
#: MGCA's CHEXPERT_UNCERTAIN_MAPPINGS (mgca/constants.py)
MGCA_UNCERTAIN = {"Atelectasis": 1, "Cardiomegaly": 0, "Consolidation": 0, "Edema": 1, "Pleural Effusion": 1}


def snake(name: str) -> str:
    return name.lower().replace(" ", "_")


def map_uncertain(values: np.ndarray, columns: tuple[str, ...], mode: str) -> np.ndarray:
    """float labels (NaN, -1, 0, 1) → uint8 with empty → 0 and uncertain by ``mode``."""
    values = np.nan_to_num(values, nan=0.0)
    out = values.copy()
    for j, column in enumerate(columns):
        fill = MGCA_UNCERTAIN.get(column, 0) if mode == "mgca" else (1 if mode == "ones" else 0)
        out[values[:, j] == -1, j] = fill
    return (out > 0.5).astype(np.uint8)


class CheXpert(RealDataset):
    """CheXpert with MGCA's split: multi-label (5 competition labels), frontal views."""

    name = "chexpert"
    protocol_version = "chexpert-mgca-1"
    provides = frozenset({"images", "labels", "prompts"})
    label_names = tuple(snake(c) for c in COMPETITION)
    expected_counts = {"train.csv rows": 223_414, "valid.csv rows": 234, "test samples": 202}

    class Params(RealParams):
        recipe: Literal["mgca", "mgca-disjoint"] = Field("mgca", description="mgca: MGCA's split exactly (its train "
                                                         "split overlaps validation); mgca-disjoint: without overlap")
        valid_size: int = Field(5000, ge=1, description="rows of train.csv drawn as the validation split (MGCA: 5000)")
        per_label_5x200: int = Field(200, ge=0, description="rows per label set aside as CheXpert 5x200 (MGCA: 200)")
        uncertain: Literal["mgca", "zeros", "ones"] = Field("mgca", description="mapping of uncertain (-1) labels")
        views: Literal["frontal", "all"] = "frontal"

    def prompts(self) -> dict[str, dict[str, tuple[str, ...]]]:
        return finding_prompts(self.label_names)

    def layout(self) -> list[tuple[str, str]]:
        return [("train.csv", "training labels"), ("valid.csv", "official validation labels (the test split)"),
                ("train", "training images"), ("valid", "validation images")]

    def recipe(self) -> dict[str, Any]:
        p = self.params
        return {"name": p.recipe, "source": "MGCA mgca/preprocess/chexpert.py", "test": "valid.csv",
                "valid": f"{p.valid_size} rows, np.random.seed(0) choice after removing CheXpert 5x{p.per_label_5x200}",
                "uncertain": p.uncertain, "views": p.views}

    def _image(self, path: str) -> Path:
        parts = PurePosixPath(path.replace("\\", "/")).parts
        return self.root.joinpath(*parts[1:]) if len(parts) > 1 else self.root / path

    def read_records(self) -> dict[str, list[Record]]:
        p = self.params
        columns = ("Path", "Frontal/Lateral", *ALL_LABELS)
        train_path, valid_path = find_table(self.root, "train.csv", self.name), find_table(self.root, "valid.csv", self.name)
        train, valid = read_table(train_path, columns, self.name), read_table(valid_path, columns, self.name)
        self.table_counts = {"train.csv rows": len(train), "valid.csv rows": len(valid)}
        values = numeric_columns(train, ALL_LABELS, train_path, self.name)
        filled = np.nan_to_num(values, nan=0.0)
        col = {c: j for j, c in enumerate(ALL_LABELS)}
        frontal = (train["Frontal/Lateral"] == "Frontal").to_numpy()
        set_aside: set[int] = set()
        if p.per_label_5x200:
            for task in COMPETITION:
                want = frontal.copy()
                for other in COMPETITION + OTHER_FINDINGS:
                    want &= filled[:, col[other]] == (1.0 if other == task else 0.0)
                candidates = np.flatnonzero(want)
                set_aside.update(int(candidates[i]) for i in sample_positions(len(candidates), p.per_label_5x200, 0,
                                                                    f"dataset 'chexpert' {train_path.name}, 5x200 rows of {task}"))
        rest = np.asarray([i for i in range(len(train)) if i not in set_aside], dtype=np.int64)
        valid_pos = sample_positions(len(rest), p.valid_size, 0, f"dataset 'chexpert' {train_path.name}, validation rows")  # np.random.seed(0); choice(n, k, replace=False)
        valid_rows = rest[valid_pos]
        if p.recipe == "mgca":  # df.drop(valid_ids): by original row label, not by position
            dropped = set(int(i) for i in valid_pos)
        else:
            dropped = set(int(i) for i in valid_rows)
        train_rows = np.asarray([i for i in rest if int(i) not in dropped], dtype=np.int64)
        competition = [col[c] for c in COMPETITION]
        labels = map_uncertain(values[:, competition], COMPETITION, p.uncertain)

        def make(table: Any, rows: np.ndarray, label_array: np.ndarray, source: str) -> list[Record]:
            keep_view = (table["Frontal/Lateral"] == "Frontal").to_numpy() if p.views == "frontal" else None
            out = []
            for i in rows:
                i = int(i)
                if keep_view is not None and not keep_view[i]:
                    continue
                path = str(table["Path"].iloc[i])
                out.append(Record(id=path, image=self._image(path), source=source, lines=(line_of(i),),
                                  labels=label_array[i], patient=_patient(path)))
            return out

        valid_values = numeric_columns(valid, ALL_LABELS, valid_path, self.name)
        valid_labels = map_uncertain(valid_values[:, competition], COMPETITION, p.uncertain)
        return {"train": make(train, train_rows, labels, train_path.name),
                "val": make(train, valid_rows, labels, train_path.name),
                "test": make(valid, np.arange(len(valid)), valid_labels, valid_path.name)}


def finding_prompts(names: tuple[str, ...]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Zero-shot prompts of the 5 competition findings: SynthCXR's phrasings, which are ordinary
    radiology sentences (an interpretation; MGCA composes its CheXpert prompts from severity,
    subtype and location words instead)."""
    return {name: PROMPTS[name] for name in names}


def _patient(path: str) -> str:
    return next((part for part in PurePosixPath(path).parts if part.startswith("patient")), "")
