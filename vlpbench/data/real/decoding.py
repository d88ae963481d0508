"""Decoding a real dataset's samples for the image store: one sample per call, many in a pool.

:func:`decode_record` reads one image (with a JPEG draft at the target size where the original size
is not needed), resizes and quantises it, scales its boxes and rasterises its masks, or returns the
:class:`~vlpbench.data.real.common.BadSample` that says what is wrong. :func:`decode_records` runs it
over a split in record order: large splits in a process pool (decoding is CPU-bound Python and C),
small ones in threads (no start-up cost), in chunks so that a bad sample stops the build early.
"""

from __future__ import annotations

import functools
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np

from vlpbench.data.real.common import BadSample, Record, boxes_to_mask, read_pixels, resize, rle_to_mask, scale_boxes
from vlpbench.data.store import quantize

#: Splits with at least this many images are decoded by a process pool (else threads).
PROCESS_POOL_MIN = 512


def decode_record(record: Record, size: int, has_masks: bool) -> Any:
    """One sample for the store: (uint8 image [size, size], boxes at ``size``, uint8 mask or None),
    or the :class:`BadSample` that says what is wrong with it (a top-level function: it runs in
    worker processes)."""
    try:
        exact = bool(record.boxes) or (has_masks and bool(record.rles))  # these need the original size
        pixels = read_pixels(record.image, draft=None if exact else size)
        height, width = pixels.shape
        image = quantize(resize(pixels, size))
        boxes = scale_boxes(record.boxes, height, width, size) if record.boxes else np.zeros((0, 4), np.float32)
        small = None
        if has_masks:
            mask = np.zeros((height, width), dtype=bool)
            for k, rle in enumerate(record.rles):
                try:
                    mask |= rle_to_mask(rle, height, width)
                except BadSample as exc:
                    line = record.rle_lines[k] if k < len(record.rle_lines) else None
                    raise BadSample(f"{f'line {line}: ' if line else ''}{exc}") from None
            small = resize(mask.astype(np.float32), size, mode="nearest") > 0.5 if record.rles else \
                np.zeros((size, size), dtype=bool)
            if record.masks_from_boxes:
                small |= boxes_to_mask(boxes, size)
            small = small.astype(np.uint8)
        return image, boxes, small
    except BadSample as exc:
        return exc


def decode_records(records: list[Record], size: int, has_masks: bool, workers: int) -> Iterator[tuple[int, Any]]:
    """(index, (uint8 image, boxes, mask) or BadSample) in record order, decoded by ``workers``
    processes for splits of at least :data:`PROCESS_POOL_MIN` records, else by threads."""
    workers = max(1, workers)
    decode = functools.partial(decode_record, size=size, has_masks=has_masks)
    pool: Executor = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                      if workers > 1 and len(records) >= PROCESS_POOL_MIN else ThreadPoolExecutor(workers))
    chunk = 256 * workers
    with pool:
        for start in range(0, len(records), chunk):
            part = records[start:start + chunk]
            for offset, outcome in enumerate(pool.map(decode, part, chunksize=16)):
                yield start + offset, outcome
