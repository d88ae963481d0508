"""MIMIC-CXR-JPG (PhysioNet, credentialed) with the MIMIC-CXR reports, for pretraining.

Layout (files and columns read in HKU-MedAI/MGCA ``mgca/constants.py``, ``mgca/preprocess/
mimic_cxr.py`` and ``mgca/preprocess/utils.py``):

- ``mimic-cxr-2.0.0-metadata.csv`` (or ``.csv.gz``, as PhysioNet publishes it, from memory): ``dicom_id``,
  ``subject_id``, ``study_id``, ``ViewPosition``, …;
- ``mimic-cxr-2.0.0-split.csv(.gz)``: ``dicom_id``, ``study_id``, ``subject_id``, ``split`` with
  the values ``train``, ``validate``, ``test``;
- ``mimic-cxr-2.0.0-chexpert.csv(.gz)``: ``subject_id``, ``study_id`` and the CheXpert label
  columns (MGCA reads the 5 competition labels from it by CheXpert's column names);
- images ``files/p<first 2 digits of subject>/p<subject>/s<study>/<dicom_id>.jpg``;
- reports (from the MIMIC-CXR package, ``mimic-cxr-reports.zip``)
  ``files/p<2 digits>/p<subject>/s<study>.txt`` under ``reports_dir`` (default: the root, where
  unzipping the reports next to the JPG folders puts them).

Splits: the official ``split`` column: ``pretrain`` (and the downstream ``train``, the same rows)
= ``train``, ``val`` = ``validate``, ``test`` = ``test`` (MGCA merges validate and test into one
"valid" split that it uses for both; kept apart here). Only frontal views (``ViewPosition`` PA or
AP, as MGCA). Reports are sectioned into findings and impression (the last ``FINDINGS:`` and the
last ``IMPRESSION:``/``CONCLUSION:`` section, a simplified form of the MIT-LCP sectioning MGCA
uses); a study is kept when the two together have at least ``min_words`` words (MGCA: 3 tokens) and
``min_sentences`` sentences (FaNe pretrains on reports with ≥ 4). Labels: the 5 CheXpert
competition labels from the chexpert CSV (uncertain mapped as MGCA does), zeros for a study the CSV
lacks (counted). Expected counts (377,110 metadata and split rows, 227,827 chexpert rows) are
written from memory of release 2.0.0.

Memory: the engine keeps a split in memory (4·image_size² bytes per image), so pretraining on all
of MIMIC-CXR needs a small ``image_size`` or a large machine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from vlpbench.data.real.base import RealDataset, RealParams
from vlpbench.data.real.chexpert import COMPETITION, finding_prompts, map_uncertain, snake
from vlpbench.data.real.common import Record, find_table, line_of, numeric_columns, read_table
from vlpbench.core.errors import DataError

METADATA, SPLIT, LABELS = "mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-chexpert.csv"
OFFICIAL = {"train": "pretrain", "validate": "val", "test": "test"}
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z /()&,-]*[A-Z)])[ \t]*:", re.M)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def section(text: str) -> tuple[str, str]:
    """(findings, impression) text of a report; the last section of each name wins."""
    found: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        name = match.group(1).strip().lower()
        body = text[match.end():end].strip()
        if name in ("impression", "conclusion", "findings and impression", "findings/impression"):
            found["impression"] = body or found.get("impression", "")
        elif name in ("findings", "finding"):
            found["findings"] = body or found.get("findings", "")
    return found.get("findings", ""), found.get("impression", "")


def sentences(text: str) -> list[str]:
    text = " ".join(text.split())
    return [s.strip() for s in _SENTENCE.split(text) if re.search(r"[A-Za-z]", s)]


class MIMICCXR(RealDataset):
    """MIMIC-CXR-JPG images with sectioned reports: pretraining pairs; official splits."""

    name = "mimic_cxr"
    protocol_version = "mimic-cxr-jpg-2.0.0-1"
    provides = frozenset({"images", "reports", "sentences", "labels", "prompts"})
    label_names = tuple(snake(c) for c in COMPETITION)
    aliases = {"train": "pretrain"}
    expected_counts = {f"{METADATA} rows": 377_110, f"{SPLIT} rows": 377_110, f"{LABELS} rows": 227_827}

    class Params(RealParams):
        image_size: int = Field(224, ge=16, le=1024, description="pixels (the run's image size: encoders are built for it)")
        reports_dir: str | None = Field(None, description="folder holding files/pXX/pSUBJECT/sSTUDY.txt (default: root)")
        views: list[str] = Field(default_factory=lambda: ["PA", "AP"], description="ViewPosition values kept")
        min_words: int = Field(3, ge=0, description="minimum words of findings + impression (MGCA: 3)")
        min_sentences: int = Field(1, ge=0, description="minimum sentences (FaNe: 4)")
        uncertain: Literal["mgca", "zeros", "ones"] = "mgca"

    def __init__(self, params: "MIMICCXR.Params", context: Any = None) -> None:
        self.missing_reports: list[str] = []
        super().__init__(params, context)

    def prompts(self) -> dict[str, dict[str, tuple[str, ...]]]:
        return finding_prompts(self.label_names)

    def layout(self) -> list[tuple[str, str]]:
        return [(METADATA, "image metadata"), (SPLIT, "official split"), (LABELS, "CheXpert labels of the reports"),
                ("files", "JPG images (files/pXX/pSUBJECT/sSTUDY/DICOM.jpg)")]

    def recipe(self) -> dict[str, Any]:
        p = self.params
        return {"name": "official", "source": SPLIT, "views": list(p.views), "min_words": p.min_words,
                "min_sentences": p.min_sentences, "uncertain": p.uncertain,
                "sections": "last FINDINGS and last IMPRESSION/CONCLUSION"}

    def read_records(self) -> dict[str, list[Record]]:
        p = self.params
        meta_path, split_path = find_table(self.root, METADATA, self.name), find_table(self.root, SPLIT, self.name)
        labels_path = find_table(self.root, LABELS, self.name)
        meta = read_table(meta_path, ("dicom_id", "subject_id", "study_id", "ViewPosition"), self.name)
        split = read_table(split_path, ("dicom_id", "study_id", "subject_id", "split"), self.name)
        chexpert = read_table(labels_path, ("subject_id", "study_id", *COMPETITION), self.name)
        values = map_uncertain(numeric_columns(chexpert, COMPETITION, labels_path, self.name), COMPETITION, p.uncertain)
        study_labels = {str(s): values[i] for i, s in enumerate(chexpert["study_id"])}
        split_of = dict(zip(split["dicom_id"], split["split"]))
        reports_root = Path(p.reports_dir).expanduser() if p.reports_dir else self.root
        self.table_counts = {f"{METADATA} rows": len(meta), f"{SPLIT} rows": len(split), f"{LABELS} rows": len(chexpert)}
        out: dict[str, list[Record]] = {name: [] for name in OFFICIAL.values()}
        texts: dict[str, tuple[list[str], int] | None] = {}
        without_labels = too_short = 0
        self.missing_reports = []
        for i, (dicom, subject, study, view) in enumerate(zip(meta["dicom_id"], meta["subject_id"], meta["study_id"],
                                                               meta["ViewPosition"])):
            if view not in p.views:
                continue
            official = split_of.get(dicom)
            if official not in OFFICIAL:
                raise DataError(f"dataset '{self.name}': {meta_path}, line {line_of(i)}: image {dicom} has "
                                f"{'no row' if official is None else f'split {official!r}'} in {split_path.name} "
                                "(expected train, validate or test). Use the split file of the same release.")
            folder = Path("files") / f"p{subject[:2]}" / f"p{subject}"
            if study not in texts:
                report = reports_root / folder / f"s{study}.txt"
                if not report.is_file():
                    self.missing_reports.append(f"{report} (report of study {study}, {meta_path.name} line {line_of(i)})")
                    texts[study] = None
                else:
                    findings, impression = section(report.read_text(encoding="utf-8", errors="replace"))
                    first, second = sentences(findings), sentences(impression)
                    words = sum(len(re.findall(r"\w+", s)) for s in first + second)
                    ok = words >= p.min_words and len(first + second) >= max(1, p.min_sentences)
                    texts[study] = (first + second, len(first)) if ok else None
                    too_short += not ok
            text = texts[study]
            if text is None:
                continue
            labels = study_labels.get(study)
            if labels is None:
                without_labels += 1
                labels = np.zeros(len(COMPETITION), np.uint8)
            out[OFFICIAL[official]].append(Record(
                id=dicom, image=self.root / folder / f"s{study}" / f"{dicom}.jpg", source=meta_path.name,
                lines=(line_of(i),), labels=labels, sentences=text[0], impression_start=text[1], patient=subject))
        if self.missing_reports and p.on_error == "raise" and not self._verifying:
            raise DataError(f"dataset '{self.name}': {len(self.missing_reports)} report file(s) are missing, e.g. "
                            f"{self.missing_reports[0]}. Unzip mimic-cxr-reports.zip under the root (or set "
                            "`reports_dir`), or set `on_error: skip` to leave those studies out (counted).")
        self.table_counts.update({"studies without a report file": len({m.split(' (')[0] for m in self.missing_reports}),
                                  "studies with too short a report": too_short,
                                  "images without CheXpert labels": without_labels})
        return out
