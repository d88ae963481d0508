"""COVIDx CXR (Wang et al., COVID-Net): the published split text files, 3 classes.

Layout: the split files (default ``train.txt`` and ``test.txt``; MGCA reads
``train_COVIDx9A.txt`` / ``test_COVIDx9A.txt``: set ``train_file`` / ``test_file``) with one image
per line, space-separated ``patient_id filename class data_source``, no header; the images under
``train/`` and ``test/``. (Format, folders and class handling read in HKU-MedAI/MGCA
``mgca/preprocess/covidx.py`` and ``mgca/datasets/classification_dataset.py``.)

Split: test = the published test file as it is; MGCA splits the published train file with
scikit-learn ``train_test_split(train_size=0.8, random_state=0)`` into train and validation, which
is what this adapter does. Classes ``normal``, ``pneumonia``, ``COVID-19`` (MGCA maps
normal → 0, pneumonia → 1, anything else → 2; here an unknown class is an error, because the later
binary COVIDx releases label ``positive``/``negative``). Multi-class accuracy. No expected counts:
they differ between COVIDx releases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from vlpbench.data.real.base import RealDataset, RealParams
from vlpbench.data.real.common import Record, shuffle_split
from vlpbench.core.errors import DataError

CLASSES = {"normal": 0, "pneumonia": 1, "covid-19": 2, "covid19": 2, "covid": 2}


class COVIDx(RealDataset):
    """COVIDx: 3-class, the published test file, MGCA's 80/20 train/validation split."""

    name = "covidx"
    protocol_version = "covidx-mgca-1"
    label_names = ("normal", "pneumonia", "covid19")
    label_type = "multiclass"

    class Params(RealParams):
        train_file: str = Field("train.txt", description="published train split file (MGCA: train_COVIDx9A.txt)")
        test_file: str = Field("test.txt", description="published test split file (MGCA: test_COVIDx9A.txt)")

    def layout(self) -> list[tuple[str, str]]:
        return [(self.params.train_file, "train split file"), (self.params.test_file, "test split file"),
                ("train", "training images"), ("test", "test images")]

    def recipe(self) -> dict[str, Any]:
        return {"name": "mgca", "source": "MGCA mgca/preprocess/covidx.py", "test": self.params.test_file,
                "valid": f"train_test_split({self.params.train_file}, train_size=0.8, random_state=0)"}

    def _read(self, file: str, folder: str) -> list[Record]:
        path = self.root / file
        if not path.is_file():
            raise DataError(f"dataset '{self.name}': {path} is missing. Give the published split file "
                            "(`train_file` / `test_file` name it).")
        out = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 3:
                raise DataError(f"dataset '{self.name}': {path}, line {number}: expected 'patient_id filename class "
                                f"[source]', got '{line.strip()[:80]}'. Use the split file as published.")
            klass = fields[2].lower()
            if klass not in CLASSES:
                raise DataError(f"dataset '{self.name}': {path}, line {number}: class '{fields[2]}' is not normal, "
                                "pneumonia or COVID-19 (this adapter reads the 3-class COVIDx releases).")
            labels = np.zeros(3, np.uint8)
            labels[CLASSES[klass]] = 1
            out.append(Record(id=f"{folder}/{fields[1]}", image=self.root / folder / fields[1], source=file,
                              lines=(number,), labels=labels, patient=fields[0]))
        if not out:
            raise DataError(f"dataset '{self.name}': {path} lists no images.")
        return out

    def read_records(self) -> dict[str, list[Record]]:
        published = self._read(self.params.train_file, "train")
        test = self._read(self.params.test_file, "test")
        self.table_counts = {f"{self.params.train_file} lines": len(published), f"{self.params.test_file} lines": len(test)}
        train, val = shuffle_split(len(published), train_size=0.8, random_state=0)
        return {"train": [published[i] for i in train], "val": [published[i] for i in val], "test": test}
