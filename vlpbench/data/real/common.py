"""Pieces every real-dataset adapter shares: roots, tables with column checks, image files
(JPG/PNG/DICOM) to float [H,W] in [0,1], RLE masks, bad-sample handling, split recipes, manifests.

Split recipes re-implement, with numpy only, the two random draws MGCA's preprocessing makes
(read in HKU-MedAI/MGCA ``mgca/preprocess/*.py``):

- scikit-learn's ``train_test_split(df, test_size=…, train_size=…, random_state=s)`` (shuffle on):
  a ``RandomState(s).permutation(n)`` whose first ``n_test`` positions are the test part and the
  next ``n_train`` the train part; ``n_test = ceil(test_size·n)``, ``n_train = floor(train_size·n)``
  for fractions, the complement when one is not given (:func:`shuffle_split`);
- pandas' ``df.sample(n=k, random_state=s)``: ``RandomState(s).choice(len, k, replace=False)``,
  which is the first ``k`` entries of ``RandomState(s).permutation(len)`` (:func:`sample_positions`).

How scikit-learn and pandas draw these is written from memory of their sources; the tests check
both against the libraries when they are installed (pandas always is; scikit-learn optionally).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from vlpbench.config.envpath import expand_path
from vlpbench.config.identity import canonical_hash
from vlpbench.core.errors import DataError


# ----------------------------------------------------------------------------------------------
# Roots and tables
# ----------------------------------------------------------------------------------------------
def resolve_root(root: str, dataset: str) -> Path:
    """``root`` with ``~`` and the allowed ``$VARS`` expanded (:mod:`vlpbench.config.envpath`); a clear error when
    it is not a folder.

    The experiment file keeps the literal text (e.g. ``${VLPBENCH_DATA}/chexpert``), so the run
    identity does not depend on where a user keeps the data; the manifest hash pins the content.
    """
    path = Path(expand_path(root, f"dataset '{dataset}': root"))
    if not path.is_dir():  # the message quotes the file's text, never the expansion (it lands in results)
        raise DataError(f"dataset '{dataset}': root = '{root}' is not a folder. Point `root` at your local copy "
                        f"(see the README section on {dataset}); `vlpbench data verify {dataset} --root PATH` "
                        "checks it.")
    return path


def find_table(root: Path, name: str, dataset: str, hint: str = "") -> Path:
    """``root/name``, or ``root/name.gz`` (MIMIC-CXR publishes its CSVs gzipped)."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"dataset '{dataset}': {root / name} is missing (nor is there a .gz of it). {hint}".strip())


def read_table(path: Path, columns: Sequence[str], dataset: str, *, sep: str = ",",
               names: Sequence[str] | None = None) -> Any:
    """A CSV (or space-separated text) file as a DataFrame of strings, with the columns checked.

    Column names are compared without surrounding spaces (SIIM's ``" EncodedPixels"``). Empty
    cells are NaN. A parse error or a missing column names the file, the line and the fix.
    """
    import pandas as pd

    try:
        table = pd.read_csv(path, sep=sep, header=None if names else "infer", names=list(names) if names else None,
                            dtype=str, skipinitialspace=False, engine="python" if sep != "," else "c")
    except FileNotFoundError:
        raise DataError(f"dataset '{dataset}': {path} is missing.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"dataset '{dataset}': {path} cannot be parsed as a table: {str(exc).strip()}. "
                        "Restore the file from the dataset's original download.") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset '{dataset}': {path} is empty. Restore it from the dataset's original download.") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"dataset '{dataset}': {path} lacks the column(s) {', '.join(repr(c) for c in missing)}; it has "
                        f"{', '.join(repr(c) for c in table.columns)}. The adapter reads the published layout: use the "
                        "file as distributed, without renaming its columns.")
    return table


def line_of(position: int, header: bool = True) -> int:
    """1-based line number in the file of data row ``position`` (0-based)."""
    return position + (2 if header else 1)


# ----------------------------------------------------------------------------------------------
# Records, bad samples
# ----------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One sample as the dataset's tables describe it (nothing read from its image yet)."""

    id: str
    image: Path
    source: str  # table file (relative to the root) the sample comes from
    lines: tuple[int, ...]  # its line number(s) in that file
    labels: np.ndarray  # uint8 [F]
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0, y0, x1, y1 in original pixels
    rles: list[str] = field(default_factory=list)  # SIIM-style run-length strings
    rle_lines: list[int] = field(default_factory=list)  # the line of each run-length string
    masks_from_boxes: bool = False
    sentences: list[str] = field(default_factory=list)
    impression_start: int = 0
    patient: str = ""

    @property
    def where(self) -> str:
        rows = ", ".join(str(n) for n in self.lines[:5]) + (", …" if len(self.lines) > 5 else "")
        return f"{self.source}, line{'s' if len(self.lines) > 1 else ''} {rows} [{self.id}]"


class BadSample(Exception):
    """A sample that cannot be used (missing or unreadable image, box or mask that does not fit)."""


class SampleProblems:
    """``on_error: raise`` stops at the first bad sample; ``skip`` drops it and counts it."""

    def __init__(self, dataset: str, on_error: Literal["raise", "skip"]) -> None:
        self.dataset, self.on_error = dataset, on_error
        self.skipped: dict[str, list[str]] = {}

    def handle(self, split: str, record: Record, message: str) -> None:
        text = f"{record.where}: {message}"
        if self.on_error == "raise":
            raise DataError(f"dataset '{self.dataset}' ({split} split): {text}. Fix or remove that row, or set "
                            "`on_error: skip` in the dataset spec to skip bad samples (they are counted in the "
                            "run's provenance).")
        self.skipped.setdefault(split, []).append(text)


# ----------------------------------------------------------------------------------------------
# Images, masks, boxes
# ----------------------------------------------------------------------------------------------
def read_pixels(path: Path, draft: int | None = None) -> np.ndarray:
    """The pixels of an image file as float32 [H, W] in [0, 1] (before resizing).

    ``draft``: for a JPEG, let the decoder skip detail it would throw away when the image is then
    resized to ``draft`` px (Pillow's ``draft``: DCT scaling by 1/2, 1/4 or 1/8, never below
    ``draft`` on either side); several times faster on MIMIC-sized files. The returned shape is
    then the reduced one, so callers that scale boxes or masks by the original size must not use it.

    DICOM (pydicom): the stored pixel values, min–max scaled (MONAI ``ScaleIntensity``), inverted
    when the photometric interpretation is MONOCHROME1 (so that bone is bright, as in MGCA's
    reader). 8-bit JPG/PNG (Pillow): divided by 255; 16-bit PNG: min–max scaled. Colour images
    become the mean of their channels.
    """
    if not path.is_file():
        raise BadSample(f"image file {path} is missing")
    try:
        if path.suffix.lower() in (".dcm", ".dicom"):
            import pydicom

            dataset = pydicom.dcmread(path)
            pixels = np.asarray(dataset.pixel_array, dtype=np.float32)
            if pixels.ndim == 3:
                pixels = pixels.mean(-1) if int(dataset.get("SamplesPerPixel", 1)) > 1 else pixels[0]
            pixels = _scale(pixels)
            if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
                pixels = 1.0 - pixels
            return pixels
        from PIL import Image

        with Image.open(path) as image:
            if draft and image.format == "JPEG":
                image.draft(image.mode if image.mode in ("L", "RGB") else None, (draft, draft))
            array = np.asarray(image)
        eight_bit = array.dtype == np.uint8
        if array.ndim == 3:
            array = array[..., :3].mean(-1)
        if eight_bit:
            return np.asarray(array, dtype=np.float32) / 255.0
        if array.dtype == np.bool_:
            return array.astype(np.float32)
        return _scale(np.asarray(array, dtype=np.float32))
    except BadSample:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file, reported with its name
        raise BadSample(f"image file {path} cannot be read ({type(exc).__name__}: {str(exc).strip()[:200]})") from None


def _scale(pixels: np.ndarray) -> np.ndarray:
    from monai.transforms import ScaleIntensity

    if pixels.size == 0:
        raise BadSample("the image has no pixels")
    return np.asarray(ScaleIntensity(minv=0.0, maxv=1.0)(pixels[None]))[0].astype(np.float32)


def resize(array: np.ndarray, size: int, mode: str = "area") -> np.ndarray:
    """[H, W] → [size, size] with MONAI ``Resize`` (``area`` for images, ``nearest`` for masks).

    Non-square images are stretched to a square (boxes are scaled the same way); MGCA pads to a
    square instead, a documented difference.
    """
    from monai.transforms import Resize

    if array.shape == (size, size):
        return array.astype(np.float32, copy=False)
    out = Resize(spatial_size=(size, size), mode=mode)(np.asarray(array, dtype=np.float32)[None])
    return np.asarray(out)[0].astype(np.float32)


def rle_to_mask(rle: str, height: int, width: int) -> np.ndarray:
    """SIIM-ACR run-length string → bool [H, W].

    Pairs of (offset, length): each offset counts from the end of the previous run, positions run
    down the columns (column-major), as in the competition's ``mask_functions.py`` and MGCA's
    ``rle2mask`` (read in HKU-MedAI/MGCA ``mgca/datasets/segmentation_dataset.py``). "-1" is an
    empty mask. A string that is not integers, has an odd count, or runs past the image is a
    :class:`BadSample`.
    """
    text = rle.strip()
    if text in ("-1", ""):
        return np.zeros((height, width), dtype=bool)
    try:
        numbers = np.asarray([int(t) for t in text.split()], dtype=np.int64)
    except ValueError:
        raise BadSample(f"the RLE string '{text[:40]}…' is not a list of integers") from None
    if len(numbers) % 2 or (numbers < 0).any():
        raise BadSample("the RLE string must hold pairs of non-negative (offset, length) integers")
    starts = np.cumsum(numbers[0::2] + np.concatenate([[0], numbers[1::2][:-1]]))
    ends = starts + numbers[1::2]
    if len(ends) and int(ends.max()) > height * width:
        raise BadSample(f"the RLE string runs to pixel {int(ends.max())}, past the {width}×{height} image "
                        f"({height * width} pixels): it does not belong to this image")
    flat = np.zeros(height * width + 1, dtype=np.int32)
    np.add.at(flat, starts, 1)
    np.add.at(flat, ends, -1)
    return (np.cumsum(flat[:-1]) > 0).reshape(width, height).T


def scale_boxes(boxes: Sequence[tuple[float, float, float, float]], height: int, width: int,
                size: int) -> np.ndarray:
    """Boxes in original pixels → [k, 4] at ``size`` px; a box outside the image is a BadSample."""
    out = []
    for x0, y0, x1, y1 in boxes:
        if not (x1 > x0 and y1 > y0) or x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise BadSample(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) does not lie inside the {width}×{height} image")
        sx, sy = size / width, size / height
        out.append([max(0.0, x0) * sx, max(0.0, y0) * sy, min(float(width), x1) * sx, min(float(height), y1) * sy])
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


def boxes_to_mask(boxes: np.ndarray, size: int) -> np.ndarray:
    """Filled boxes (at ``size`` px) → bool [size, size] (RSNA segmentation, as MGCA builds it)."""
    mask = np.zeros((size, size), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[int(math.floor(y0)):int(math.ceil(y1)), int(math.floor(x0)):int(math.ceil(x1))] = True
    return mask


# ----------------------------------------------------------------------------------------------
# Split recipes (MGCA's draws, numpy only)
# ----------------------------------------------------------------------------------------------
def split_sizes(n: int, test_size: float | int | None = None,
                train_size: float | int | None = None) -> tuple[int, int]:
    """(n_train, n_test) as scikit-learn computes them: ceil for a test fraction, floor for a train one."""
    if test_size is None and train_size is None:
        test_size = 0.25
    n_test = None if test_size is None else (math.ceil(test_size * n) if isinstance(test_size, float) else int(test_size))
    n_train = None if train_size is None else (math.floor(train_size * n) if isinstance(train_size, float) else int(train_size))
    if n_train is None:
        n_train = n - n_test
    if n_test is None:
        n_test = n - n_train
    return n_train, n_test


def shuffle_split(n: int, test_size: float | int | None = None, train_size: float | int | None = None,
                  random_state: int = 0, what: str = "the table") -> tuple[np.ndarray, np.ndarray]:
    """Positions (train, test) that ``sklearn.model_selection.train_test_split`` gives (shuffled)."""
    n_train, n_test = split_sizes(n, test_size, train_size)
    if n_test < 0 or n_train < 0 or n_train + n_test > n:
        raise DataError(f"{what}: a split of {n} rows into {n_train} + {n_test} is impossible; the copy is smaller "
                        "than the recipe expects (a partial copy? `vlpbench data verify` compares the counts).")
    permutation = np.random.RandomState(random_state).permutation(n)
    return permutation[n_test:n_test + n_train], permutation[:n_test]


def sample_positions(n: int, k: int, random_state: int, what: str = "the table") -> np.ndarray:
    """Positions that ``DataFrame.sample(n=k, random_state=random_state)`` picks, in its order."""
    if k > n:
        raise DataError(f"{what}: cannot draw {k} rows from {n}; the copy is smaller than the recipe expects (a partial "
                        "copy? `vlpbench data verify` compares the counts; the recipe's sizes are parameters).")
    return np.random.RandomState(random_state).permutation(n)[:k]


# ----------------------------------------------------------------------------------------------
# Manifests
# ----------------------------------------------------------------------------------------------
def canonical_sha256(payload: Any) -> str:
    """A manifest's identity: :func:`vlpbench.config.identity.canonical_hash` of its JSON content."""
    return canonical_hash(payload)


def numeric_columns(table: Any, columns: Sequence[str], path: Path, dataset: str) -> np.ndarray:
    """float [n, len(columns)] of label columns (empty cells NaN); a non-number names its line."""
    import pandas as pd

    out = np.empty((len(table), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & table[column].notna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"dataset '{dataset}': {path}, line {line_of(first)}, column '{column}': "
                            f"'{table[column].iloc[first]}' is not a number. Restore the file from the original download.")
        out[:, j] = values
    return out
