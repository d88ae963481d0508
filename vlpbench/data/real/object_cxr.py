"""Object-CXR (JF Healthcare, MIDL 2020 challenge): foreign objects on chest X-rays, boxes.

Layout: ``train.csv`` and ``dev.csv`` with the columns ``image_name`` and ``annotation``; the JPG
images under ``train/`` and ``dev/``. An annotation lists objects separated by ``;``, each
``TYPE x1 y1 x2 y2 …`` with TYPE 0 = rectangle and 1 = ellipse (given by two corners) and
2 = polygon (its vertices); an empty annotation means no foreign object. (Files, folders, columns
and the annotation format read in HKU-MedAI/MGCA ``mgca/constants.py`` and
``mgca/preprocess/object_cxr.py``.) Every object becomes the bounding box of its points; MGCA
turns polygons into a square around a pole of inaccessibility instead (shapely ``polylabel``), a
documented difference.

Split (MGCA): test = ``dev.csv`` (the official development set); train.csv split with
scikit-learn ``train_test_split(test_size=0.1, random_state=0)`` into train and validation.
Label ``foreign_object`` (any object), binary AUROC; boxes for detection. Expected counts
(8,000 train and 1,000 dev images) are written from memory of the challenge release.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlpbench.data.real.base import RealDataset
from vlpbench.data.real.common import Record, find_table, line_of, read_table, shuffle_split, split_sizes
from vlpbench.core.errors import DataError


def annotation_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """``"0 x1 y1 x2 y2;2 x y x y x y"`` → bounding boxes (x0, y0, x1, y1); ValueError if malformed."""
    boxes = []
    for item in text.split(";"):
        fields = item.split()
        if not fields:
            continue
        if fields[0] not in ("0", "1", "2"):
            raise ValueError(f"object type '{fields[0]}' is not 0 (rectangle), 1 (ellipse) or 2 (polygon)")
        numbers = [float(v) for v in fields[1:]]
        if len(numbers) < 4 or len(numbers) % 2:
            raise ValueError(f"object '{item.strip()[:40]}' needs an even number (≥ 4) of coordinates")
        xs, ys = numbers[0::2], numbers[1::2]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return boxes


class ObjectCXR(RealDataset):
    """Object-CXR: binary label and boxes; dev.csv as test, MGCA's 90/10 train/validation split."""

    name = "object_cxr"
    protocol_version = "object-cxr-mgca-1"
    provides = frozenset({"images", "labels", "boxes"})
    label_names = ("foreign_object",)
    local_findings = ("foreign_object",)
    expected_counts = {"train.csv rows": 8000, "dev.csv rows": 1000}

    def expected(self) -> dict[str, int]:
        train, val = split_sizes(self.expected_counts["train.csv rows"], 0.1)
        return {**self.expected_counts, "train samples": train, "val samples": val,
                "test samples": self.expected_counts["dev.csv rows"]}

    def layout(self) -> list[tuple[str, str]]:
        return [("train.csv", "training annotations"), ("dev.csv", "development annotations (the test split)"),
                ("train", "training images"), ("dev", "development images")]

    def recipe(self) -> dict[str, Any]:
        return {"name": "mgca", "source": "MGCA mgca/preprocess/object_cxr.py", "test": "dev.csv",
                "valid": "train_test_split(train.csv, test_size=0.1, random_state=0)", "objects": "bounding boxes of points"}

    def _read(self, file: str, folder: str) -> list[Record]:
        path = find_table(self.root, file, self.name)
        table = read_table(path, ("image_name", "annotation"), self.name)
        out = []
        for i, (name, annotation) in enumerate(zip(table["image_name"], table["annotation"])):
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"dataset '{self.name}': {path}, line {line_of(i)}: empty image_name.")
            try:
                boxes = annotation_boxes(annotation) if isinstance(annotation, str) else []
            except ValueError as exc:
                raise DataError(f"dataset '{self.name}': {path}, line {line_of(i)} ({name}): bad annotation: {exc}. "
                                "Restore the file from the original download.") from None
            out.append(Record(id=f"{folder}/{name}", image=self.root / folder / name, source=file, lines=(line_of(i),),
                              labels=np.asarray([1 if boxes else 0], np.uint8), boxes=boxes, patient=name))
        return out

    def read_records(self) -> dict[str, list[Record]]:
        published, test = self._read("train.csv", "train"), self._read("dev.csv", "dev")
        self.table_counts = {"train.csv rows": len(published), "dev.csv rows": len(test)}
        train, val = shuffle_split(len(published), test_size=0.1, random_state=0)
        return {"train": [published[i] for i in train], "val": [published[i] for i in val], "test": test}
