"""What the machine can hold: sizes are checked against it before anything is generated.

A ``pretrain_size: 1000000000`` used to pass ``validate`` and then grow memory for minutes; now the
parameter models bound sizes to what a benchmark can use (checked by ``validate``), and the data
sources compare their estimate with the memory available here before they allocate
(:func:`check_fits`), which is a check only ``run`` can make.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vlpbench.core.errors import EnvironmentProblem

#: Bytes per pixel SynthCXR holds while generating a split: float32 image, uint8 mask, the
#: concatenation's copy, and the tensors the pipeline makes of it.
SYNTHCXR_BYTES_PER_PIXEL = 12


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, what: str, fix: str) -> None:
    """Raise :class:`EnvironmentProblem` when ``needed`` bytes exceed 80 % of the available memory."""
    available = available_memory()
    if available is not None and needed > 0.8 * available:
        raise EnvironmentProblem(f"{what} needs about {needed / 2**30:,.1f} GiB of memory, but only "
                                 f"{available / 2**30:,.1f} GiB is available on this machine: {fix}.")


#: Bytes of process memory per SynthCXR study besides its pixels, which live in the memory-mapped
#: image store: the report as Python sentence lists, labels, locations and the token tensors.
SYNTHCXR_BYTES_PER_STUDY = 4096


def synthcxr_bytes(samples: int, image_size: int) -> int:
    """Memory of an in-memory generation (``data describe``): float pixels, masks and copies."""
    return samples * image_size * image_size * SYNTHCXR_BYTES_PER_PIXEL


def synthcxr_stored_bytes(samples: int) -> int:
    """Process memory of a split whose pixels are in the image store (they do not count)."""
    return samples * SYNTHCXR_BYTES_PER_STUDY


def check_disk(needed: int, folder: "os.PathLike[str] | str", what: str, fix: str) -> None:
    """Raise :class:`EnvironmentProblem` when ``needed`` bytes exceed the free space where ``folder`` is."""
    place = Path(folder)
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return
    if needed > free:
        raise EnvironmentProblem(f"{what} needs about {needed / 2**30:,.2f} GiB on disk under {folder}, but only "
                                 f"{free / 2**30:,.2f} GiB is free there: {fix}.")
