"""The image store: a dataset split decoded and resized once into memory-mapped uint8 arrays.

Pretraining on MIMIC-CXR (about 217k images) cannot hold the corpus as floats in every process.
The store keeps each split of each dataset as raw C-order ``uint8`` files that every process and
every rank maps read-only: the pages are shared through the page cache, so a process's anonymous
memory does not grow with the corpus.

Layout (under the store root, ``VLPBENCH_STORE_DIR`` or ``~/.cache/vlpbench/store``)::

    <name>-<key16>/            one split of one dataset at one size
        meta.json              key, shapes, dtype, count, CRC-32 of every array, extra fields
        images.u8              uint8 [count, H, W]
        <array>.u8 / .npy      e.g. mask_bits (uint8 [count, H, W]), boxes, keep (small .npy)
    <name>-<key16>.lock        the builders' lock

``key16`` is the first 16 hex digits of the SHA-256 of the *key* (dataset, manifest hash or
generator version, image size, split, ...): a change of any of them builds a new store.
Exactly one process builds a store: builders take an exclusive ``flock`` on the lock file, look
again, and build into a temporary folder that is renamed into place only when complete, so an
interrupted build leaves no half store (its leftover folder is removed by the next builder).
Opening checks meta.json, the key and every file's size; ``verify(full=True)`` (``vlpbench data
prepare --verify``) also checks the CRC-32 of every array.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vlpbench.core.errors import DataError

STORE_VERSION = 1
_CRC_BLOCK = 64 << 20  # bytes read at a time when checksumming


def store_root(configured: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding every store: the given one, ``$VLPBENCH_STORE_DIR``, or the user cache."""
    raw = configured or os.environ.get("VLPBENCH_STORE_DIR") or "~/.cache/vlpbench/store"
    return Path(os.path.expandvars(str(raw))).expanduser()


def key_digest(key: dict[str, Any]) -> str:
    text = json.dumps({"store_version": STORE_VERSION, **key}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _crc_of(path: Path) -> str:
    crc = 0
    with path.open("rb") as handle:
        while block := handle.read(_CRC_BLOCK):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


@dataclass
class StoreWriter:
    """What a build function fills: ``images`` (and ``mapped`` arrays) row by row, then ``finish``.

    Rows are appended in order with :meth:`append`; samples a build skips are simply not appended,
    so the final count may be lower than the capacity given at creation (the files are cut to it).
    """

    folder: Path
    capacity: int
    image_shape: tuple[int, int]
    mapped_names: tuple[str, ...] = ()
    count: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True)
        shape = (max(1, self.capacity), *self.image_shape)
        self._maps = {name: np.memmap(self.folder / f"{name}.u8", dtype=np.uint8, mode="w+", shape=shape)
                      for name in ("images", *self.mapped_names)}

    def append(self, images: np.ndarray, **mapped: np.ndarray) -> None:
        """Append rows: ``images`` uint8 [k, H, W] and the same rows of every mapped array."""
        k = images.shape[0]
        if self.count + k > self.capacity:
            raise ValueError(f"store build wrote {self.count + k} rows into a store of {self.capacity}")
        self._maps["images"][self.count:self.count + k] = images
        for name in self.mapped_names:
            self._maps[name][self.count:self.count + k] = mapped[name]
        self.count += k

    def finish(self) -> None:
        """Flush, cut the files to the rows written, write the checksums and meta.json last."""
        row = int(np.prod(self.image_shape))
        checksums = {}
        for array in self._maps.values():
            array.flush()
        names = list(self._maps)
        self._maps.clear()  # unmap before cutting the files
        for name in names:
            path = self.folder / f"{name}.u8"
            os.truncate(path, self.count * row)
            checksums[path.name] = _crc_of(path)
        for name, array in self.arrays.items():
            path = self.folder / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            checksums[path.name] = _crc_of(path)
        meta = {**self.meta, "count": self.count, "image_shape": list(self.image_shape),
                "mapped": ["images", *self.mapped_names], "arrays": sorted(self.arrays), "crc32": checksums}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


class ImageStore:
    """An opened store: ``images`` (read-only uint8 memmap [n, H, W]), other arrays, meta."""

    def __init__(self, folder: Path, key: dict[str, Any]) -> None:
        self.folder = folder
        self.meta = self._read_meta(folder, key)
        self.count = int(self.meta["count"])
        self.image_shape = tuple(int(v) for v in self.meta["image_shape"])
        row = int(np.prod(self.image_shape))
        self.mapped: dict[str, np.ndarray] = {}
        for name in self.meta["mapped"]:
            path = folder / f"{name}.u8"
            size = path.stat().st_size if path.is_file() else -1
            if size != self.count * row:
                raise StoreDamaged(f"{path} has {size} bytes, not {self.count} × {row} (truncated or replaced)")
            self.mapped[name] = (np.memmap(path, dtype=np.uint8, mode="r", shape=(self.count, *self.image_shape))
                                 if self.count else np.zeros((0, *self.image_shape), np.uint8))
        self.arrays: dict[str, np.ndarray] = {}
        for name in self.meta["arrays"]:
            path = folder / f"{name}.npy"
            try:
                self.arrays[name] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise StoreDamaged(f"{path}: {exc}") from None

    @property
    def images(self) -> np.ndarray:
        return self.mapped["images"]

    @staticmethod
    def _read_meta(folder: Path, key: dict[str, Any]) -> dict[str, Any]:
        path = folder / "meta.json"
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise StoreDamaged(f"{path}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("key_sha256") != key_digest(key):
            raise StoreDamaged(f"{path} belongs to another key")
        return meta

    def verify(self) -> None:
        """Check the CRC-32 of every file against meta.json (reads the whole store)."""
        for name, expected in self.meta["crc32"].items():
            actual = _crc_of(self.folder / name)
            if actual != expected:
                raise StoreDamaged(f"{self.folder / name} has CRC-32 {actual}, meta.json says {expected}")

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


class StoreDamaged(Exception):
    """A store folder that is incomplete, truncated or of another key (it is rebuilt)."""


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_or_build(name: str, key: dict[str, Any], capacity: int, image_shape: tuple[int, int],
                  build: Callable[[StoreWriter], None], *, root: str | os.PathLike[str] | None = None,
                  mapped: tuple[str, ...] = (), log: Callable[[str], None] | None = None) -> ImageStore:
    """The store of ``key``, built by ``build(writer)`` if no complete one exists (one builder only).

    ``build`` appends rows and fills ``writer.arrays`` / ``writer.meta``; it may raise (a bad sample
    under ``on_error: raise``): nothing is left behind and the error propagates.
    """
    digest = key_digest(key)
    base = store_root(root)
    folder = base / f"{name}-{digest[:16]}"
    with contextlib.suppress(StoreDamaged, FileNotFoundError):
        return ImageStore(folder, key)
    try:
        with _exclusive(base / f"{folder.name}.lock"):
            try:
                return ImageStore(folder, key)  # another process built it while this one waited
            except (StoreDamaged, FileNotFoundError) as exc:
                if folder.exists():
                    if log:
                        log(f"image store {folder} is damaged ({exc}); rebuilding it")
                    shutil.rmtree(folder)
            for leftover in base.glob(f"{folder.name}.building-*"):
                shutil.rmtree(leftover, ignore_errors=True)  # an interrupted build (we hold the lock)
            from vlpbench.core.resources import check_disk

            check_disk(capacity * int(np.prod(image_shape)) * (1 + len(mapped)), base, f"the image store of {name}",
                       "free space there or point VLPBENCH_STORE_DIR (or the dataset's cache_dir) elsewhere")
            temporary = base / f"{folder.name}.building-{os.getpid()}"
            writer = StoreWriter(temporary, capacity, tuple(image_shape), tuple(mapped))
            writer.meta.update({"name": name, "key": key, "key_sha256": digest})
            try:
                build(writer)
                writer.finish()
                temporary.rename(folder)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
            return ImageStore(folder, key)
    except OSError as exc:
        raise DataError(f"the image store under {base} cannot be written ({exc.strerror or exc}): set "
                        "VLPBENCH_STORE_DIR (or the dataset's cache_dir) to a writable folder with room for "
                        f"{capacity} × {image_shape[0]}×{image_shape[1]} bytes.") from None


def estimate_bytes(count: int, image_size: int, mapped_arrays: int = 1) -> int:
    """Disk size of a store of ``count`` images at ``image_size`` px with ``mapped_arrays`` uint8 planes."""
    return count * image_size * image_size * mapped_arrays


def quantize(images: np.ndarray) -> np.ndarray:
    """float images in [0, 1] → uint8 (rounded); the loader maps them back with ``/ 255``."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
