"""Tiny copies of the real datasets, written in each one's published layout (tests only).

Every writer makes a root folder with the dataset's own file names, columns, folder nesting and
file formats (JPG/PNG through Pillow, DICOM through pydicom, SIIM's run-length strings), small
enough to run end to end in seconds. Images carry a faint bright blob where the labels say there is
something, so the probes have a signal to find.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np

CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
                   "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                   "Fracture", "Support Devices")
COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def picture(rng: np.random.Generator, size: tuple[int, int], positive: bool,
            box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """float [H, W] in [0, 1]: noise, plus a bright patch (``box``, or the centre) when positive."""
    h, w = size
    image = 0.3 + 0.1 * rng.standard_normal((h, w))
    if positive:
        x0, y0, x1, y1 = box or (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        image[y0:y1, x0:x1] += 0.5
    return np.clip(image, 0, 1)


def write_jpg(path: Path, image: np.ndarray, fmt: str = "JPEG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).astype(np.uint8), mode="L").save(path, format=fmt)


def write_dicom(path: Path, image: np.ndarray, monochrome1: bool = False) -> None:
    """A minimal valid DICOM file (secondary capture, 12-bit unsigned, explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = (image * 4095).astype(np.uint16)
    if monochrome1:
        pixels = 4095 - pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_csv(path: Path, header: list[str], rows: list[list[object]], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def mask_to_rle(mask: np.ndarray) -> str:
    """bool [H, W] → SIIM's relative run-length string (column-major)."""
    flat = np.concatenate([[0], mask.T.flatten().astype(np.int8), [0]])
    changes = np.flatnonzero(np.diff(flat))
    starts, ends = changes[0::2], changes[1::2]
    out, previous = [], 0
    for start, end in zip(starts, ends):
        out += [int(start - previous), int(end - start)]
        previous = end
    return " ".join(map(str, out)) if out else "-1"


# ----------------------------------------------------------------------------------------------
def chexpert(root: Path, train_rows: int = 90, valid_rows: int = 24, seed: int = 0) -> Path:
    """train.csv / valid.csv (CheXpert-v1.0-small paths), JPG images; every 3rd image lateral."""
    rng = np.random.default_rng(seed)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]

    def rows(split: str, n: int) -> list[list[object]]:
        out = []
        for i in range(n):
            view = "Lateral" if i % 3 == 2 else "Frontal"
            rel = f"{split}/patient{i:05d}/study1/view{1 if view == 'Frontal' else 2}_{view.lower()}.jpg"
            cells = {name: "" for name in CHEXPERT_LABELS}
            if i % 4 == 0:  # a "5x200" candidate: exactly one competition label
                cells[COMPETITION[(i // 4) % 5]] = "1.0"
                for other in CHEXPERT_LABELS[1:]:
                    cells[other] = cells[other] or "0.0"
            else:
                for name in COMPETITION:
                    cells[name] = str(rng.choice(["1.0", "0.0", "-1.0", ""]))
            positive = any(cells[c] == "1.0" for c in COMPETITION)
            write_jpg(root / rel, picture(rng, (40, 36), positive))
            out.append([f"CheXpert-v1.0-small/{rel}", "Female", 60, view, "PA" if view == "Frontal" else "",
                        *[cells[name] for name in CHEXPERT_LABELS]])
        return out

    write_csv(root / "train.csv", header, rows("train", train_rows))
    write_csv(root / "valid.csv", header, rows("valid", valid_rows))
    return root


def rsna(root: Path, patients: int = 60, seed: int = 1) -> Path:
    """stage_2_train_labels.csv (one row per box) and stage_2_train_images/<patientId>.dcm."""
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(patients):
        pid = f"{i:04d}a1b2-c3d4-e5f6-{rng.integers(1e6):06d}"
        size = 64
        if i % 3 == 0:
            boxes = [(8, 10, 20, 24)] + ([(36, 30, 16, 20)] if i % 2 == 0 else [])
            for x, y, w, h in boxes:
                rows.append([pid, x, y, w, h, 1])
            image = picture(rng, (size, size), True, (8, 10, 28, 34))
        else:
            rows.append([pid, "", "", "", "", 0])
            image = picture(rng, (size, size), False)
        path = root / "stage_2_train_images" / f"{pid}.dcm"
        if i == 1:  # one of pydicom's own test files (a 128 x 128 CT slice, signed pixels)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(get_testdata_file("CT_small.dcm"), path)
        else:
            write_dicom(path, image, monochrome1=i % 5 == 0)
    write_csv(root / "stage_2_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], rows)
    return root


def siim(root: Path, images: int = 48, seed: int = 2) -> Path:
    """train-rle.csv (" EncodedPixels", several rows for some images) and nested DICOMs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(images):
        image_id = f"1.2.276.0.7230010.3.1.4.{8323329 + i}.{1517875157 + i}.{rng.integers(1e6)}"
        size = 64
        positive = i % 3 == 0
        image = picture(rng, (size, size), positive, (40, 4, 60, 24))
        if positive:
            mask = np.zeros((size, size), bool)
            mask[4:24, 40:60] = True
            if i % 2 == 0:  # two components, two rows
                first, second = np.zeros_like(mask), np.zeros_like(mask)
                first[4:14, 40:60], second[14:24, 40:60] = True, True
                rows += [[image_id, " " + mask_to_rle(first)], [image_id, " " + mask_to_rle(second)]]
            else:
                rows.append([image_id, " " + mask_to_rle(mask)])
        else:
            rows.append([image_id, " -1"])
        study, series = f"1.2.276.0.7230010.3.1.2.{i}", f"1.2.276.0.7230010.3.1.3.{i}"
        write_dicom(root / "dicom-images-train" / study / series / f"{image_id}.dcm", image)
    write_csv(root / "train-rle.csv", ["ImageId", " EncodedPixels"], rows)
    return root


def covidx(root: Path, train: int = 60, test: int = 21, seed: int = 3) -> Path:
    """train.txt / test.txt ('patient filename class source'), PNG and JPG images."""
    rng = np.random.default_rng(seed)
    classes = ("normal", "pneumonia", "COVID-19")
    for split, n in (("train", train), ("test", test)):
        lines = []
        for i in range(n):
            klass = classes[i % 3]
            name = f"{split}-{i:03d}.{'png' if i % 2 else 'jpg'}"
            image = picture(rng, (48, 48), klass != "normal", (4, 4, 24, 24) if klass == "pneumonia" else (24, 24, 44, 44))
            write_jpg(root / split / name, image, fmt="PNG" if i % 2 else "JPEG")
            lines.append(f"{1000 + i} {name} {klass} {'cohen' if i % 2 else 'rsna'}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def object_cxr(root: Path, train: int = 50, dev: int = 20, seed: int = 4) -> Path:
    """train.csv / dev.csv (image_name, annotation with rectangles, ellipses, polygons), JPGs."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("dev", dev)):
        rows = []
        for i in range(n):
            height, width = (60, 50) if i % 2 else (48, 48)
            name = f"{i:05d}.jpg"
            kind = i % 4
            if kind == 0:
                annotation, box = "", None
            elif kind == 1:
                annotation, box = "0 5 6 20 22", (5, 6, 20, 22)
            elif kind == 2:
                annotation, box = "1 10 12 30 28;0 30 30 40 44", (10, 12, 30, 28)
            else:
                annotation, box = "2 8 8 25 10 20 30 6 24", (6, 8, 25, 30)
            write_jpg(root / split / name, picture(rng, (height, width), box is not None, box))
            rows.append([name, annotation])
        write_csv(root / f"{split}.csv", ["image_name", "annotation"], rows)
    return root


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough.

 COMPARISON:  None.

 FINDINGS:

 {findings}

 IMPRESSION:

 {impression}
"""


def mimic_cxr(root: Path, subjects: int = 30, seed: int = 5) -> Path:
    """The three CSVs (metadata gzipped, as PhysioNet ships them), JPGs and report text files."""
    rng = np.random.default_rng(seed)
    meta, split_rows, labels = [], [], []
    names = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
             "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
             "Pneumothorax", "Support Devices")
    for s in range(subjects):
        subject = f"{10000032 + s * 7919}"
        official = "test" if s % 6 == 0 else ("validate" if s % 6 == 1 else "train")
        for k in range(2):
            study = f"{50000000 + s * 100 + k}"
            effusion = (s + k) % 3 == 0
            findings = ("There is a moderate left pleural effusion. The heart size is normal." if effusion else
                        "The lungs are clear. The cardiomediastinal silhouette is normal. No pneumothorax.")
            impression = "Left pleural effusion." if effusion else "No acute cardiopulmonary process."
            report = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(REPORT.format(findings=findings, impression=impression))
            row = {n: "" for n in names}
            row["Pleural Effusion"] = "1.0" if effusion else "0.0"
            row["Edema"] = "-1.0" if s % 4 == 0 else ""
            labels.append([subject, study, *[row[n] for n in names]])
            for view in ("PA", "LATERAL"):
                dicom = f"{rng.integers(16**8):08x}-{s:04d}{k}{view[0]}"
                meta.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 48, 48])
                split_rows.append([dicom, study, subject, official])
                write_jpg(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg",
                          picture(rng, (48, 48), effusion, (26, 26, 46, 46)))
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                                                        "ViewPosition", "Rows", "Columns"], meta, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", *names], labels)
    return root
