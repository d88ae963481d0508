"""SIIM-ACR Pneumothorax Segmentation: DICOM images and RLE-encoded masks.

Layout (the Kaggle/SIIM download as MGCA uses it): ``train-rle.csv`` with the columns ``ImageId``
and ``EncodedPixels`` (published with a leading space: ``" EncodedPixels"``; both spellings are
accepted), one row per mask component, ``-1`` for an image without pneumothorax; the DICOM files
anywhere under ``dicom-images-train/`` (the release nests them as
``<study UID>/<series UID>/<ImageId>.dcm``), found by file name. (File, folder and column names read
in HKU-MedAI/MGCA ``mgca/constants.py`` and ``mgca/preprocess/siim.py``; the nesting is from
memory.)

RLE: pairs of (offset from the previous run's end, run length) over the column-major pixel order
of the image (the DICOM's Rows × Columns, 1024 × 1024 in the release), as in MGCA's ``rle2mask``.
Several rows of one image are united. A string that runs past the image is a bad sample.

Split (MGCA ``mgca/preprocess/siim.py``): scikit-learn ``train_test_split`` of the *rows* of
train-rle.csv (test+val 30 %, ``random_state=0``), then halved (first half test, second half
validation). Because rows rather than images are split, an image with several mask rows can fall
into two splits (as in MGCA); each split groups its own rows by image, and ``verify`` reports how
many images are shared. Label ``pneumothorax`` (any mask), binary AUROC; masks for segmentation.
MGCA additionally balances positives and negatives when it trains segmentation; vlpbench's
segmentation task does not (a documented difference). The row count is from memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vlpbench.data.real.base import RealDataset
from vlpbench.data.real.common import Record, find_table, line_of, read_table, shuffle_split

TABLE = "train-rle.csv"
IMAGES = "dicom-images-train"


class SIIMPneumothorax(RealDataset):
    """SIIM-ACR Pneumothorax: binary label and RLE masks; MGCA's split."""

    name = "siim_pneumothorax"
    protocol_version = "siim-mgca-1"
    provides = frozenset({"images", "labels", "masks"})
    label_names = ("pneumothorax",)
    local_findings = ("pneumothorax",)
    expected_counts: dict[str, int] = {}  # the release's row count is not known here: only presence is checked

    def layout(self) -> list[tuple[str, str]]:
        return [(TABLE, "RLE mask table"), (IMAGES, "DICOM images (nested folders)")]

    def recipe(self) -> dict[str, Any]:
        return {"name": "mgca", "source": "MGCA mgca/preprocess/siim.py",
                "split": "train_test_split(rows, test_size=0.3, random_state=0), then halves (test, val) random_state=0"}

    def read_records(self) -> dict[str, list[Record]]:
        path = find_table(self.root, TABLE, self.name)
        table = read_table(path, ("ImageId", "EncodedPixels"), self.name)
        files: dict[str, Path] = {f.stem: f for f in sorted((self.root / IMAGES).rglob("*.dcm"))}
        image_ids = table["ImageId"].fillna("").to_numpy(dtype=str)
        rles = table["EncodedPixels"].fillna("-1").to_numpy(dtype=str)
        train, rest = shuffle_split(len(table), test_size=0.3, random_state=0)
        test, val = shuffle_split(len(rest), test_size=0.5, random_state=0)

        def group(rows: np.ndarray) -> list[Record]:
            by_image: dict[str, list[int]] = {}
            for i in rows:
                by_image.setdefault(image_ids[int(i)], []).append(int(i))
            out = []
            for image_id, members in by_image.items():
                members = sorted(members)
                with_mask = [i for i in members if rles[i].strip() != "-1"]
                masks = [rles[i].strip() for i in with_mask]
                image = files.get(image_id, self.root / IMAGES / f"{image_id}.dcm")
                out.append(Record(id=image_id, image=image, source=path.name, lines=tuple(line_of(i) for i in members),
                                  labels=np.asarray([1 if masks else 0], np.uint8), rles=masks,
                                  rle_lines=[line_of(i) for i in with_mask], patient=image_id))
            return out

        splits = {"train": group(train), "val": group(rest[val]), "test": group(rest[test])}
        ids = [{r.id for r in recs} for recs in splits.values()]
        self.table_counts = {f"{TABLE} rows": len(table), "images": len(set(image_ids)),
                             "images in more than one split": len((ids[0] & ids[1]) | (ids[0] & ids[2]) | (ids[1] & ids[2]))}
        return splits
