"""The base of every real-dataset adapter: parameters, the in-memory split, manifests, checks.

An adapter says where its files are (:meth:`RealDataset.layout`) and turns the dataset's own
tables into :class:`~vlpbench.data.real.common.Record` lists per split with the published split
files or MGCA's recipe (:meth:`RealDataset.read_records`). Everything else is shared here:

- ``split(name)`` reads the images of a split once (resized to ``image_size``), builds masks and
  boxes at that size and returns a :class:`RealSplit` with the attributes of ``SynthCXRSplit``
  that pretraining and the tasks use; the pixels (and masks) live in the image store
  (:mod:`vlpbench.data.store`: uint8 memory maps keyed by manifest hash and size, built once by one
  process and shared by every run and rank);
- the *manifest*: the IDs of train / val / test, of the 1 % and 10 % training fractions (the
  linear probe's draw: :func:`~vlpbench.tasks.base.nested_stratified_fractions`, seed 42) and the
  recipe, with its SHA-256. ``protocol()`` carries that hash, so every result records it;
- bad samples raise a :class:`DataError` naming the file and line, or with ``on_error: skip`` are
  dropped, counted per split and recorded in ``protocol()`` and ``statistics()``;
- :meth:`RealDataset.verify`: files present, columns, counts against the expected ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vlpbench.config.envpath import expand_path
from vlpbench.core.component import Component
from vlpbench.data.real.common import BadSample, Record, SampleProblems, canonical_sha256, resolve_root
from vlpbench.data.real.decoding import decode_records
from vlpbench.core.errors import DataError
from vlpbench.data.store import open_or_build

SPLITS = ("train", "val", "test")
MANIFEST_FRACTIONS = (0.01, 0.1)
MANIFEST_SEED = 42


@dataclass
class RealSplit:
    """One split of a real dataset, in memory (the attributes ``SynthCXRSplit`` has for the tasks)."""

    name: str
    images: np.ndarray  # float32 [n, H, W] in [0, 1]
    labels: np.ndarray  # uint8 [n, F]
    mask_bits: np.ndarray  # uint8 [n, H, W]: bit k set where local_findings[k] is (zeros [n,1,1] without masks)
    boxes: np.ndarray  # float32 [K, 6]: sample, label index, x0, y0, x1, y1 (pixels at image_size)
    sentences: list[list[str]]
    impression_start: np.ndarray
    patient_ids: np.ndarray  # str [n]
    ids: list[str]
    label_names: tuple[str, ...]
    local_findings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def reports(self) -> list[str]:
        return ["FINDINGS: " + " ".join(s[:cut]) + " IMPRESSION: " + " ".join(s[cut:])
                for s, cut in zip(self.sentences, self.impression_start)]

    def masks(self, finding: str) -> np.ndarray:
        if finding not in self.local_findings:
            raise DataError(f"this dataset has masks for {', '.join(self.local_findings) or 'no finding'}, not '{finding}'.")
        bits = (self.mask_bits >> self.local_findings.index(finding)) & 1 == 1
        return np.broadcast_to(bits, self.images.shape) if bits.shape != self.images.shape else bits

    def any_mask(self, findings: Sequence[str] | None = None) -> np.ndarray:
        findings = self.local_findings if findings is None else findings
        unknown = [f for f in findings if f not in self.local_findings]
        if unknown:
            raise DataError(f"this dataset has masks for {', '.join(self.local_findings) or 'no finding'}, not '{unknown[0]}'.")
        bits = sum(1 << self.local_findings.index(f) for f in findings)
        mask = (self.mask_bits & bits) != 0
        return np.broadcast_to(mask, self.images.shape) if mask.shape != self.images.shape else mask

    def boxes_of(self, index: int) -> np.ndarray:
        return self.boxes[self.boxes[:, 0] == index, 1:]


class RealParams(BaseModel):
    """What every real dataset takes; adapters add their own options."""

    model_config = ConfigDict(extra="forbid")
    root: str = Field(description="folder of your local copy; ~ and $VARS are expanded at run time (the "
                                  "literal text enters the run identity, the manifest hash the protocol)")
    image_size: int | None = Field(None, ge=16, le=1024, description="pixels (default: the run's image size, "
                                                                  "i.e. the pretraining data's)")
    on_error: Literal["raise", "skip"] = Field("raise", description="bad samples: stop with an error naming the "
                                                                    "file and line, or skip and count them")
    workers: int = Field(4, ge=1, le=256, description="processes decoding images into the image store (threads for "
                                                     "small splits); the result does not depend on it")
    cache_dir: str | None = Field(None, description="image store folder (default: $VLPBENCH_STORE_DIR or "
                                                    "~/.cache/vlpbench/store); stores are keyed by manifest hash and size")
    manifest_sha256: str | None = Field(None, description="expected manifest hash (from `vlpbench data verify`); "
                                                          "a copy that gives another is an error")


_RECORDS: dict[tuple, tuple[dict[str, list[Record]], dict[str, int]]] = {}
_SPLITS: dict[tuple, tuple[RealSplit, list[str]]] = {}


class RealDataset(Component[RealParams]):
    """Base of the adapters (registered ``dataset`` components)."""

    name: ClassVar[str] = ""
    protocol_version: ClassVar[str] = ""
    provides: ClassVar[frozenset[str]] = frozenset({"images", "labels"})
    label_names: ClassVar[tuple[str, ...]] = ()
    local_findings: ClassVar[tuple[str, ...]] = ()
    #: "multilabel" or "multiclass": how the linear probe scores the labels.
    label_type: ClassVar[str] = "multilabel"
    #: split names served by another split's records (MIMIC-CXR: the downstream train split is the pretraining one)
    aliases: ClassVar[dict[str, str]] = {}
    #: expected counts of a complete copy ({what: count}); see each adapter for their source.
    expected_counts: ClassVar[dict[str, int]] = {}
    #: True where ``expected_counts`` come from memory rather than a source that was read
    counts_from_memory: ClassVar[bool] = True
    Params: ClassVar[type[RealParams]] = RealParams
    #: report files the tables name but the root lacks (MIMIC-CXR fills it); ``verify`` lists them
    missing_reports: Sequence[str] = ()
    #: True while ``verify`` reads the tables (a missing report is then listed, not raised)
    _verifying: bool = False
    #: the records the cached manifest hash was computed from
    _manifest_of: Any = None

    def __init__(self, params: RealParams, context: Any = None) -> None:
        super().__init__(params, context)
        self.root = resolve_root(params.root, self.name)
        self._image_size = int(params.image_size or getattr(context, "image_size", None) or 224)
        self.problems = SampleProblems(self.name, params.on_error)
        #: rows of the dataset's own tables, set by ``read_records`` (compared with ``expected_counts``)
        self.table_counts: dict[str, int] = {}
        self._key = (type(self).__qualname__, str(self.root.resolve()), params.model_dump_json(), self._image_size)
        if params.manifest_sha256 and params.manifest_sha256.lower() != self.manifest_sha256():
            raise DataError(
                f"dataset '{self.name}': the copy at {self.root} gives manifest {self.manifest_sha256()}, but the "
                f"experiment pins manifest_sha256 = {params.manifest_sha256}. Run `vlpbench data verify {self.name} "
                f"--root {self.root}` to see which IDs differ from the recipe, or update the pin.")

    # -- what adapters implement ------------------------------------------------------------------
    def layout(self) -> list[tuple[str, str]]:
        """(relative path, description) of every file and folder the adapter reads."""
        raise NotImplementedError

    def read_records(self) -> dict[str, list[Record]]:
        """Records of every split this dataset serves, from its tables (no image is read)."""
        raise NotImplementedError

    def recipe(self) -> dict[str, Any]:
        """How the splits are made (enters the manifest and the protocol)."""
        raise NotImplementedError

    def expected(self) -> dict[str, int]:
        """Expected counts of a complete copy (tables and, where the recipe fixes them, splits)."""
        return dict(self.expected_counts)

    def counts(self, records: dict[str, list[Record]]) -> dict[str, int]:
        """Counts compared with ``expected_counts`` (default: samples per split)."""
        return {**self.table_counts, **{f"{name} samples": len(recs) for name, recs in records.items()}}

    # -- shared -----------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self._image_size

    def records(self, fresh: bool = False) -> dict[str, list[Record]]:
        """Records per split (read once per root and split-defining parameters)."""
        key = self._key[:2] + (self.params.model_dump_json(exclude={"image_size", "cache_dir", "manifest_sha256", "workers"}),)
        if fresh or key not in _RECORDS:
            records = self.read_records()
            _RECORDS[key] = (records, dict(self.table_counts))
        records, self.table_counts = _RECORDS[key][0], dict(_RECORDS[key][1])
        return records

    def manifest(self) -> dict[str, Any]:
        """IDs per split and per training fraction, with the recipe (what the SHA-256 covers)."""
        from vlpbench.tasks.base import nested_stratified_fractions  # lazy: torch; config loading imports this

        records = self.records()
        splits = {name: [r.id for r in records[name]] for name in records}
        train = records.get(self.aliases.get("train", "train"), [])  # MIMIC-CXR: the pretraining split
        fractions = {}
        if train:
            labels = np.stack([r.labels for r in train])
            for fraction, subset in nested_stratified_fractions(labels, list(MANIFEST_FRACTIONS), MANIFEST_SEED).items():
                fractions[f"train@{fraction * 100:g}%"] = [train[i].id for i in subset]
        return {"dataset": self.name, "protocol_version": self.protocol_version, "recipe": self.recipe(),
                "label_names": list(self.label_names), "splits": splits,
                "fractions": {"procedure": "vlpbench nested_stratified_fractions over the train labels, seed "
                                           f"{MANIFEST_SEED} (the linear probe's default draw)", **fractions}}

    def manifest_sha256(self) -> str:
        records = self.records()
        if self._manifest_of is not records:
            self._manifest_sha, self._manifest_of = canonical_sha256(self.manifest()), records
        return self._manifest_sha

    def split(self, name: str) -> RealSplit:
        if name == "pretrain" and "pretrain" not in self.records():
            raise DataError(
                f"dataset '{self.name}' is a downstream dataset: it has no pretraining split and no reports. Use it "
                f"as a task's `dataset:` (e.g. tasks: [{{name: linear_probe, dataset: {{name: {self.name}, root: ...}}}}]) "
                "and pretrain on mimic_cxr or synthcxr (`data:`).")
        canonical = self.aliases.get(name, name)
        records = self.records()
        if canonical not in records:
            raise DataError(f"dataset '{self.name}' has the splits {', '.join(records)}, not '{name}'.")
        key = self._key + (canonical,)
        if key not in _SPLITS:
            _SPLITS[key] = self._load_split(canonical, records[canonical])
        split, skipped = _SPLITS[key]
        if skipped:
            self.problems.skipped[canonical] = skipped
        return split

    def prepare(self) -> None:
        """Check every downstream split and build its image store now (the runner calls this before
        pretraining, so that a missing file or a bad sample stops a run at its start), without keeping
        the splits: the tasks open them again from the store after pretraining, so the downstream
        data is not held in memory through pretraining."""
        for name in SPLITS:
            key = self._key + (self.aliases.get(name, name),)
            held = key in _SPLITS
            self.split(name)
            if not held:
                _SPLITS.pop(key, None)

    def store_key(self, split: str) -> dict[str, Any]:
        """What the image store of ``split`` depends on (a change of any of it builds a new store)."""
        return {"dataset": self.name, "protocol_version": self.protocol_version, "manifest": self.manifest_sha256(),
                "root": str(self.root.resolve()), "image_size": self.image_size, "on_error": self.params.on_error,
                "split": split}

    def _load_split(self, name: str, records: list[Record]) -> tuple[RealSplit, list[str]]:
        """The split with its images (and masks) mapped from the image store, built on first use.

        The store lives under ``cache_dir`` (default ``VLPBENCH_STORE_DIR`` or the user cache) and
        is built once, by one process, whatever the number of runs and ranks that want it.
        """
        size = self.image_size
        has_masks = bool(self.local_findings) and "masks" in self.provides
        mapped = ("mask_bits",) if has_masks else ()

        def build(writer: Any) -> None:
            problems = SampleProblems(self.name, self.params.on_error)
            box_rows: list[np.ndarray] = []
            keep: list[int] = []
            for index, outcome in self._read_all(records, has_masks):
                record = records[index]
                if isinstance(outcome, BadSample):
                    problems.handle(name, record, str(outcome))
                    continue
                image, boxes, small_mask = outcome
                writer.append(image[None], **({"mask_bits": small_mask[None]} if has_masks else {}))
                if len(boxes):
                    box_rows.append(np.concatenate([np.full((len(boxes), 2), [len(keep), self._box_label], np.float32),
                                                    boxes], 1))
                keep.append(index)
            if not keep:
                raise DataError(f"dataset '{self.name}': every sample of the {name} split was skipped as bad "
                                f"({'; '.join(problems.skipped.get(name, [])[:3])}). Check the root and the image folders.")
            writer.arrays["keep"] = np.asarray(keep, dtype=np.int64)
            writer.arrays["boxes"] = np.concatenate(box_rows) if box_rows else np.zeros((0, 6), np.float32)
            writer.meta["skipped"] = problems.skipped.get(name, [])

        root = None
        if self.params.cache_dir:
            root = expand_path(self.params.cache_dir, f"dataset '{self.name}': cache_dir")
        store = open_or_build(f"{self.name}-{name}-{size}px", self.store_key(name), len(records), (size, size), build,
                              root=root, mapped=mapped)
        kept = [records[i] for i in store.arrays["keep"]]
        mask_bits = store.mapped["mask_bits"] if has_masks else np.zeros((store.count, 1, 1), np.uint8)
        return self._assemble(name, kept, store.images, mask_bits, store.arrays["boxes"]), list(store.meta["skipped"])

    def _read_all(self, records: list[Record], has_masks: bool) -> Iterator[tuple[int, Any]]:
        """(index, (uint8 image, boxes, mask) or BadSample) in record order (:func:`~vlpbench.data.
        real.decoding.decode_records`, with the dataset's ``workers``)."""
        return decode_records(records, self.image_size, has_masks, self.params.workers)

    def _assemble(self, name: str, kept: list[Record], images: np.ndarray, mask_bits: np.ndarray,
                  boxes: np.ndarray) -> RealSplit:
        return RealSplit(
            name=name, images=images, labels=np.stack([r.labels for r in kept]).astype(np.uint8),
            mask_bits=mask_bits, boxes=boxes, sentences=[list(r.sentences) for r in kept],
            impression_start=np.asarray([r.impression_start for r in kept], dtype=np.int64),
            patient_ids=np.asarray([r.patient or r.id for r in kept]), ids=[r.id for r in kept],
            label_names=self.label_names, local_findings=self.local_findings,
            meta={"dataset": self.name, "split": name},
        )

    @property
    def _box_label(self) -> int:
        return self.label_names.index(self.local_findings[0]) if self.local_findings else 0

    def skipped_counts(self) -> dict[str, int]:
        return {name: len(items) for name, items in self.problems.skipped.items()}

    def protocol(self) -> dict[str, Any]:
        """What defines the data (enters every protocol hash): recipe, size and the manifest hash."""
        out = {"dataset": self.name, "protocol_version": self.protocol_version, "recipe": self.recipe(),
               "image_size": self.image_size, "on_error": self.params.on_error,
               "manifest_sha256": self.manifest_sha256()}
        if self.params.on_error == "skip":
            out["skipped_samples"] = self.skipped_counts()
        return out

    def statistics(self, split: str | None = None) -> dict[str, Any]:
        """Samples, label prevalence and skipped samples (with where and why) of the loaded splits."""
        records = self.records()
        name = split or ("pretrain" if "pretrain" in records else "train")
        labels = np.stack([r.labels for r in records[self.aliases.get(name, name)]])
        return {"split": name, "samples": {k: len(v) for k, v in records.items()},
                "prevalence": {n: float(v) for n, v in zip(self.label_names, labels.mean(0))},
                "manifest_sha256": self.manifest_sha256(),
                "skipped_samples": self.skipped_counts(),
                "skipped": {k: v[:50] for k, v in self.problems.skipped.items()}}

    def provenance(self) -> dict[str, Any]:
        """What a run records about this dataset when a task uses it: protocol and skipped samples."""
        return {"protocol": self.protocol(), "skipped_samples": self.skipped_counts(),
                "skipped": {k: v[:50] for k, v in self.problems.skipped.items()}}

    def prompts(self) -> dict[str, dict[str, tuple[str, ...]]]:
        raise DataError(f"dataset '{self.name}' has no zero-shot prompts.")

    # -- checking a local copy --------------------------------------------------------------------
    def verify(self) -> "Verification":
        """Files present, columns, image files, counts; the manifest (when the tables can be read)."""
        result = Verification(self.name)
        for relative, what in self.layout():
            if not (self.root / relative).exists() and not (self.root / f"{relative}.gz").exists():
                result.missing.append(f"{self.root / relative} ({what})")
        if result.missing:
            return result
        self._verifying = True
        try:
            records = self.records(fresh=True)
        except DataError as exc:
            result.problems.append(str(exc))
            return result
        finally:
            self._verifying = False
        result.missing += list(self.missing_reports)
        for name, recs in records.items():
            result.missing += [f"{r.image} ({r.where})" for r in recs if not r.image.is_file()]
        actual = self.counts(records)
        for what, expected in self.expected().items():
            if what in actual and actual[what] != expected:
                result.different.append(f"{what}: {actual[what]}, expected {expected}"
                                        + (" (expected count written from memory of the published release)"
                                           if self.counts_from_memory else ""))
        result.counts = actual
        result.manifest = self.manifest()
        return result


@dataclass
class Verification:
    dataset: str
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.problems)
