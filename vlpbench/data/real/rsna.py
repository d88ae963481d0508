"""RSNA Pneumonia Detection Challenge: DICOM images and the box CSV; classification, detection and
segmentation (masks = the filled boxes, as MGCA builds them).

Layout (the Kaggle download): ``stage_2_train_labels.csv`` with the columns ``patientId``, ``x``,
``y``, ``width``, ``height``, ``Target`` (one row per box; a negative image has one row with empty
box cells and Target 0) and the images ``stage_2_train_images/<patientId>.dcm``. (Columns and
folder names read in HKU-MedAI/MGCA ``mgca/constants.py`` and ``mgca/preprocess/rsna.py``.)

Split (MGCA ``mgca/preprocess/rsna.py``): the rows grouped by ``patientId`` (sorted, one sample per
image; its boxes the image's rows), then scikit-learn ``train_test_split(random_state=0)`` twice:
``recipe: classification`` (``preprocess_rsna_data``) sets aside 30 % for test+validation,
``recipe: detection`` (``prepare_detection_data``, also MGCA's segmentation data) sets aside
2 × 5337 images; that part is halved again (the first half test, the second validation).
MGCA's detection dataset keeps the negative images (empty boxes); so does this one.

Labels: ``pneumonia`` (Target), binary AUROC. Boxes ``x, y, x + width, y + height`` in the image's
pixels, scaled to ``image_size``. Expected counts (30,227 rows for 26,684 images) are written from
memory of the stage-2 release; the split sizes follow from them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from vlpbench.data.real.base import RealDataset, RealParams
from vlpbench.data.real.common import Record, find_table, line_of, numeric_columns, read_table, shuffle_split, split_sizes
from vlpbench.core.errors import DataError

TABLE = "stage_2_train_labels.csv"
IMAGES = "stage_2_train_images"


class RSNAPneumonia(RealDataset):
    """RSNA Pneumonia: binary label, boxes, masks from filled boxes; MGCA's split."""

    name = "rsna_pneumonia"
    protocol_version = "rsna-mgca-1"
    provides = frozenset({"images", "labels", "masks", "boxes"})
    label_names = ("pneumonia",)
    local_findings = ("pneumonia",)
    expected_counts = {f"{TABLE} rows": 30_227, "images": 26_684}

    class Params(RealParams):
        recipe: Literal["classification", "detection"] = Field(
            "classification", description="MGCA's classification split (30 % test+val) or its detection/segmentation "
                                          "split (2 x 5337 test+val)")

    def layout(self) -> list[tuple[str, str]]:
        return [(TABLE, "box table"), (IMAGES, "DICOM images")]

    def expected(self) -> dict[str, int]:
        """The release's counts and the split sizes the recipe gives for them (18,678 / 4,003 /
        4,003 for classification, 16,010 / 5,337 / 5,337 for detection)."""
        train, held = split_sizes(self.expected_counts["images"], self._held_out())
        halves = split_sizes(held, 0.5)
        return {**self.expected_counts, "train samples": train, "val samples": halves[1], "test samples": halves[0]}

    def _held_out(self) -> float | int:
        return 0.3 if self.params.recipe == "classification" else 2 * 5337

    def recipe(self) -> dict[str, Any]:
        held = "0.3" if self.params.recipe == "classification" else "2 x 5337"
        return {"name": f"mgca-{self.params.recipe}", "source": "MGCA mgca/preprocess/rsna.py",
                "split": f"train_test_split(test_size={held}, random_state=0), then halves (test, val) random_state=0"}

    def read_records(self) -> dict[str, list[Record]]:
        path = find_table(self.root, TABLE, self.name)
        table = read_table(path, ("patientId", "x", "y", "width", "height", "Target"), self.name)
        values = numeric_columns(table, ("x", "y", "width", "height", "Target"), path, self.name)
        ids = table["patientId"].fillna("").to_numpy(dtype=str)
        grouped: dict[str, list[int]] = {}
        for i, pid in enumerate(ids):
            if not pid:
                raise DataError(f"dataset '{self.name}': {path}, line {line_of(i)}: empty patientId.")
            grouped.setdefault(pid, []).append(i)
        records = []
        for pid in sorted(grouped):
            rows = grouped[pid]
            boxes = []
            for i in rows:
                x, y, w, h, target = values[i]
                if target == 1:
                    if np.isnan([x, y, w, h]).any():
                        raise DataError(f"dataset '{self.name}': {path}, line {line_of(i)} ({pid}): Target is 1 but the "
                                        "box (x, y, width, height) is incomplete.")
                    boxes.append((x, y, x + w, y + h))
            records.append(Record(id=pid, image=self.root / IMAGES / f"{pid}.dcm", source=path.name,
                                  lines=tuple(line_of(i) for i in rows), labels=np.asarray([1 if boxes else 0], np.uint8),
                                  boxes=boxes, masks_from_boxes=True, patient=pid))
        self.table_counts = {f"{TABLE} rows": len(table), "images": len(records)}
        held = self._held_out()
        train, rest = shuffle_split(len(records), test_size=held, random_state=0, what=f"dataset '{self.name}' {TABLE}")
        test, val = shuffle_split(len(rest), test_size=0.5, random_state=0)
        return {"train": [records[i] for i in train], "val": [records[rest[i]] for i in val],
                "test": [records[rest[i]] for i in test]}
