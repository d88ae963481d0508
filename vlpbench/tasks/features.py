"""Frozen features of downstream splits, streamed from the image store in batches, with a bounded cache.

The tasks never turn a whole split into float pixels: images are read from the image store
(:mod:`vlpbench.data.store`: uint8 memory maps) a batch at a time, normalised as pretraining does
(:func:`~vlpbench.data.pipeline.normalise`) and encoded on the run's device, under bf16 autocast
when the run's precision is bf16. Rows of a store's memory map are read with ``pread`` rather than
through the map, so the pages a task reads do not stay in the process's resident set (reading a
whole split through the map would count every page of it in the RSS).

Global features ([n, D]: a few KiB per image) are kept in memory. Dense feature maps (every
encoder stage from ``min_stride`` up: megabytes per image at 224 px) go to a
:class:`FeatureCache` that holds a split's maps

- in memory, as float32 (the former path, bit for bit), while the maps of the evaluation fit the
  memory budget (``VLPBENCH_FEATURE_CACHE``, default 2 GiB);
- otherwise on disk, as float16 rows (``VLPBENCH_FEATURE_CACHE_DTYPE=float32``: float32, the
  in-memory numbers exactly, twice the disk) in files under a temporary folder
  (``VLPBENCH_FEATURE_CACHE_DIR``, default ``$TMPDIR``), read back a batch at a time and removed
  when the evaluation ends (:meth:`FeatureCache.close`, or when the cache is garbage-collected);
- otherwise (no room on disk, or ``VLPBENCH_FEATURE_CACHE_MODE=recompute``) recomputed from the
  images for every batch the head sees.

``VLPBENCH_FEATURE_CACHE_MODE`` (``auto``, ``memory``, ``disk``, ``recompute``) forces a placement;
``auto`` is the order above. The placement changes neither the protocol nor the run identity: the
in-memory path is the former one exactly, and so are recomputation and a float32 disk cache; float16
features move scores by the rounding of the features only (tested in ``tests/test_feature_cache.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from vlpbench.core.errors import ConfigError
from vlpbench.data.pipeline import normalise

ENV_BUDGET = "VLPBENCH_FEATURE_CACHE"
ENV_MODE = "VLPBENCH_FEATURE_CACHE_MODE"
ENV_DIR = "VLPBENCH_FEATURE_CACHE_DIR"
ENV_DTYPE = "VLPBENCH_FEATURE_CACHE_DTYPE"
DISK_DTYPES = {"float16": np.float16, "float32": np.float32}
DEFAULT_BUDGET = 2 << 30
MODES = ("auto", "memory", "disk", "recompute")
#: free space kept on the disk cache's file system beyond the cache itself
DISK_MARGIN = 1 << 30

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str, where: str = ENV_BUDGET) -> int:
    """``"2GiB"``, ``"512 MiB"``, ``"1.5G"``, ``"0"`` → bytes; anything else is a clear error."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ConfigError(f"{where} = {text!r} is not a size: give bytes with an optional unit, e.g. 2GiB, 512MiB "
                          "or 0 (no dense features in memory).")
    return int(float(match.group(1)) * _UNITS[unit])


@dataclass
class FeatureCacheSettings:
    """Where dense feature maps may go: the memory budget in bytes, a forced mode, the disk folder."""

    memory_budget: int = DEFAULT_BUDGET
    mode: str = "auto"
    folder: str | None = None
    #: the disk cache's dtype: float16 (half the disk and reads) or float32 (the in-memory numbers exactly)
    disk_dtype: str = "float16"

    @classmethod
    def from_environment(cls) -> "FeatureCacheSettings":
        mode = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
        if mode not in MODES:
            raise ConfigError(f"{ENV_MODE} = {mode!r}: use one of {', '.join(MODES)} (auto: memory within "
                              f"{ENV_BUDGET}, then disk, then recomputation).")
        dtype = os.environ.get(ENV_DTYPE, "float16").strip().lower() or "float16"
        if dtype not in DISK_DTYPES:
            raise ConfigError(f"{ENV_DTYPE} = {dtype!r}: use float16 (half the disk) or float32 (exactly the "
                              "in-memory features).")
        budget = os.environ.get(ENV_BUDGET)
        return cls(memory_budget=DEFAULT_BUDGET if budget in (None, "") else parse_bytes(budget), mode=mode,
                   folder=os.environ.get(ENV_DIR) or None, disk_dtype=dtype)


@dataclass
class FeatureCache:
    """The dense-feature placements of one evaluation: memory used so far, the disk folder, decisions."""

    settings: FeatureCacheSettings = field(default_factory=FeatureCacheSettings.from_environment)
    memory_used: int = 0
    #: (what, bytes as float32, placement) of every split placed, in order (for tests and reports)
    decisions: list[tuple[str, int, str]] = field(default_factory=list)
    _folder: Path | None = field(default=None, repr=False)
    _finalizer: Any = field(default=None, repr=False)

    def place(self, what: str, float32_bytes: int) -> str:
        """``memory``, ``disk`` or ``recompute`` for maps of ``float32_bytes`` (float16 on disk: half)."""
        disk_bytes = float32_bytes * np.dtype(DISK_DTYPES[self.settings.disk_dtype]).itemsize // 4
        mode = self.settings.mode
        if mode == "auto":
            if self.memory_used + float32_bytes <= self.settings.memory_budget:
                mode = "memory"
            elif self._disk_free() >= disk_bytes + DISK_MARGIN:
                mode = "disk"
            else:
                mode = "recompute"
        if mode == "memory":
            self.memory_used += float32_bytes
        self.decisions.append((what, float32_bytes, mode))
        return mode

    def _disk_free(self) -> int:
        place = Path(self.settings.folder or tempfile.gettempdir())
        while not place.exists() and place != place.parent:
            place = place.parent
        try:
            return shutil.disk_usage(place).free
        except OSError:
            return 0

    def folder(self) -> Path:
        """The temporary folder of this evaluation's disk cache (made on first use)."""
        if self._folder is None:
            root = self.settings.folder
            if root:
                Path(root).mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="vlpbench-features-", dir=root))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._folder), True)
        return self._folder

    def close(self) -> None:
        """Remove the disk cache (its open maps must not be read afterwards)."""
        if self._finalizer is not None:
            self._finalizer()
        self._folder, self._finalizer = None, None
        self.memory_used = 0


# -- reading rows of a split ----------------------------------------------------------------------
def _whole_file_map(array: Any) -> str | None:
    """The file behind ``array`` when it is a C-order memory map of a whole file from offset 0
    (what the image store hands out), else None (then rows are read through numpy)."""
    name = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or not name or getattr(array, "offset", 1) != 0 or not array.flags.c_contiguous:
        return None
    try:
        return name if os.path.getsize(name) == array.nbytes else None
    except OSError:
        return None


def _runs(rows: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(position in ``rows``, first row, count) of each run of consecutive values of sorted ``rows``."""
    if not len(rows):
        return
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(rows)]])
    for s, e in zip(starts.tolist(), ends.tolist()):
        yield s, int(rows[s]), e - s


def pread_rows(fd: int, row_shape: tuple[int, ...], dtype: np.dtype, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (any order, repeats allowed) of a C-order file of ``dtype`` rows, in that order."""
    rows = np.asarray(rows, dtype=np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    out = np.empty((len(unique), *row_shape), dtype=dtype)
    row_bytes = out[0].nbytes if len(unique) else 0
    view = memoryview(out.reshape(-1).view(np.uint8)) if len(unique) else None
    for position, first, count in _runs(unique):
        wanted = count * row_bytes
        got = os.preadv(fd, [view[position * row_bytes:position * row_bytes + wanted]], first * row_bytes)
        if got != wanted:
            raise OSError(f"short read of the feature or image file ({got} of {wanted} bytes)")
    return out if np.array_equal(unique, rows) else out[inverse.reshape(-1)]


def read_rows(array: Any, rows: np.ndarray | slice) -> np.ndarray:
    """Rows of a split's array (images, mask bits) as a fresh array, without keeping mapped pages."""
    if isinstance(rows, slice):
        rows = np.arange(*rows.indices(array.shape[0]))
    name = _whole_file_map(array)
    if name is None:
        return np.array(array[np.asarray(rows)])
    fd = os.open(name, os.O_RDONLY)
    try:
        return pread_rows(fd, tuple(array.shape[1:]), array.dtype, np.asarray(rows))
    finally:
        os.close(fd)


def model_images(array: Any, rows: np.ndarray | slice) -> Tensor:
    """Model-ready float [b,1,H,W] images of ``rows`` (as :func:`~vlpbench.data.pipeline.to_model_images`)."""
    return normalise(torch.from_numpy(read_rows(array, rows)).unsqueeze(1))


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast on ``device`` when the run's precision is bf16 (fp16: on CUDA), else nothing."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None or (dtype is torch.float16 and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def frozen(encoder: nn.Module) -> Iterator[None]:
    """The encoder in eval mode without gradients, its mode restored afterwards."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        encoder.train(was_training)


# -- dense maps -----------------------------------------------------------------------------------
class MemoryMaps:
    """Feature maps of one split, fine to coarse: a list of float32 [n, C_i, h_i, w_i] CPU tensors."""

    placement = "memory"

    def __init__(self, maps: list[Tensor]) -> None:
        self.maps = maps

    def __len__(self) -> int:
        return self.maps[0].shape[0]

    def batch(self, index: Tensor, device: torch.device) -> list[Tensor]:
        return [m[index].to(device) for m in self.maps]

    @property
    def channels(self) -> list[int]:
        return [m.shape[1] for m in self.maps]

    @property
    def strides_shapes(self) -> list[tuple[int, int]]:
        return [tuple(m.shape[-2:]) for m in self.maps]


class DiskMaps:
    """Feature maps of one split as float16 (or float32) rows in one file per level; batches read
    with ``pread`` and returned as float32 on the device."""

    placement = "disk"

    def __init__(self, paths: list[Path], shapes: list[tuple[int, int, int]], count: int,
                 dtype: Any = np.float16) -> None:
        self.paths, self.shapes, self.count, self.dtype = paths, shapes, count, np.dtype(dtype)
        self._fds = [os.open(p, os.O_RDONLY) for p in paths]
        self._finalizer = weakref.finalize(self, _close_all, list(self._fds))

    def __len__(self) -> int:
        return self.count

    def batch(self, index: Tensor, device: torch.device) -> list[Tensor]:
        rows = index.cpu().numpy()
        return [torch.from_numpy(pread_rows(fd, shape, self.dtype, rows)).to(device).float()
                for fd, shape in zip(self._fds, self.shapes)]

    @property
    def channels(self) -> list[int]:
        return [s[0] for s in self.shapes]

    @property
    def strides_shapes(self) -> list[tuple[int, int]]:
        return [(s[1], s[2]) for s in self.shapes]


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class RecomputedMaps:
    """Feature maps computed from the split's images for every batch asked for (nothing cached)."""

    placement = "recompute"

    def __init__(self, encoder: nn.Module, images: Any, min_stride: int, precision: str,
                 shapes: list[tuple[int, int, int]]) -> None:
        self.encoder, self.images, self.min_stride = encoder, images, min_stride
        self.precision, self.shapes = precision, shapes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: Tensor, device: torch.device) -> list[Tensor]:
        with frozen(self.encoder), autocast(device, self.precision):
            maps = self.encoder.feature_maps(model_images(self.images, index.cpu().numpy()).to(device),
                                             min_stride=self.min_stride)
        return [m.float() for m in maps]

    @property
    def channels(self) -> list[int]:
        return [s[0] for s in self.shapes]

    @property
    def strides_shapes(self) -> list[tuple[int, int]]:
        return [(s[1], s[2]) for s in self.shapes]


def dense_maps(encoder: nn.Module, images: Any, device: torch.device, min_stride: int = 4, batch_size: int = 128,
               cache: FeatureCache | None = None, precision: str = "fp32",
               what: str = "split", pooled: list[Tensor] | None = None) -> MemoryMaps | DiskMaps | RecomputedMaps:
    """Frozen pre-projection feature maps of ``images`` ([n,H,W] uint8 from the store, or floats in
    [0,1]), placed by ``cache`` (memory within its budget, else disk, else recomputation).

    With a list ``pooled``, the encoder's ``feature_maps_and_global`` also gives the global feature
    of each batch from the same pass, appended to ``pooled`` as float32 CPU rows (for recomputed
    maps only the first batch's: the caller then computes the global features on their own)."""
    cache = cache if cache is not None else FeatureCache()
    n = int(images.shape[0])
    mode, maps_out, files, shapes = None, None, None, None
    with frozen(encoder):
        for start in range(0, n, batch_size):
            batch = model_images(images, slice(start, start + batch_size)).to(device)
            with autocast(device, precision):
                if pooled is None:
                    maps = encoder.feature_maps(batch, min_stride=min_stride)
                else:
                    maps, batch_pooled = encoder.feature_maps_and_global(batch, min_stride=min_stride)
                    pooled.append(batch_pooled.float().cpu())
            maps = [m.float().cpu() for m in maps]
            if mode is None:
                shapes = [tuple(m.shape[1:]) for m in maps]
                per_image = sum(int(np.prod(s)) for s in shapes) * 4
                mode = cache.place(what, per_image * n)
                if mode == "recompute":
                    return RecomputedMaps(encoder, images, min_stride, precision, shapes)
                if mode == "memory":
                    maps_out = [torch.empty((n, *s), dtype=torch.float32) for s in shapes]
                else:
                    dtype = DISK_DTYPES[cache.settings.disk_dtype]
                    folder = Path(tempfile.mkdtemp(prefix="maps-", dir=cache.folder()))
                    paths = [folder / f"level{i}.f16" for i in range(len(shapes))]
                    files = [p.open("wb") for p in paths]
            stop = start + len(maps[0])
            if mode == "memory":
                for target, m in zip(maps_out, maps):
                    target[start:stop] = m
            else:
                for handle, m in zip(files, maps):
                    handle.write(m.numpy().astype(dtype).tobytes())
    if mode == "memory":
        return MemoryMaps(maps_out)
    for handle in files:
        handle.close()
    return DiskMaps(paths, shapes, n, dtype)


# -- global features ------------------------------------------------------------------------------
def global_batches(encoder: nn.Module, images: Any, device: torch.device, batch_size: int, precision: str,
                   embed: bool) -> Tensor:
    """Pre-projection global features (``embed`` False) or projected embeddings (True) of a split,
    [n, D] float32 on the CPU, computed batch by batch from the store."""
    n = int(images.shape[0])
    out: Tensor | None = None
    with frozen(encoder):
        for start in range(0, n, batch_size):
            if isinstance(images, Tensor) and images.dim() == 4:  # model-ready images (the former API)
                batch = images[start:start + batch_size].to(device)
            else:
                batch = model_images(images, slice(start, start + batch_size)).to(device)
            with autocast(device, precision):
                value = encoder(batch).global_emb if embed else encoder.global_features(batch)
            value = value.float().cpu()
            if out is None:
                out = torch.empty((n, *value.shape[1:]), dtype=torch.float32)
            out[start:start + len(value)] = value
    return out if out is not None else torch.empty(0)
