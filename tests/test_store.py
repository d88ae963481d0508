"""The image store: one writer, keyed rebuilds, damage detection, no half stores, SynthCXR's pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vlpbench.data.store import ImageStore, StoreDamaged, key_digest, open_or_build, quantize
from vlpbench.data.synthcxr import SynthCXRConfig, generate, generate_stored
from vlpbench.core.errors import DataError


def _builder(calls: list[int], rows: int = 5, fail_at: int | None = None):
    def build(writer) -> None:
        calls.append(1)
        for i in range(rows):
            if i == fail_at:
                raise DataError("bad sample")
            writer.append(np.full((1, 4, 3), i, np.uint8), mask_bits=np.full((1, 4, 3), 10 + i, np.uint8))
        writer.arrays["keep"] = np.arange(rows)
        writer.meta["skipped"] = []
    return build


def test_built_once_then_mapped_read_only(tmp_path: Path) -> None:
    calls: list[int] = []
    first = open_or_build("demo", {"a": 1}, 5, (4, 3), _builder(calls), root=tmp_path, mapped=("mask_bits",))
    again = open_or_build("demo", {"a": 1}, 5, (4, 3), _builder(calls), root=tmp_path, mapped=("mask_bits",))
    assert len(calls) == 1
    assert isinstance(again.images, np.memmap) and not again.images.flags.writeable
    assert again.images[:, 0, 0].tolist() == [0, 1, 2, 3, 4] and again.mapped["mask_bits"][4, 3, 2] == 14
    assert np.array_equal(first.arrays["keep"], np.arange(5))
    again.verify()  # every CRC matches


def test_a_key_change_builds_a_new_store(tmp_path: Path) -> None:
    calls: list[int] = []
    a = open_or_build("demo", {"manifest": "x", "size": 4}, 5, (4, 3), _builder(calls), root=tmp_path, mapped=("mask_bits",))
    b = open_or_build("demo", {"manifest": "y", "size": 4}, 5, (4, 3), _builder(calls), root=tmp_path, mapped=("mask_bits",))
    assert len(calls) == 2 and a.folder != b.folder
    assert b.meta["key_sha256"] == key_digest({"manifest": "y", "size": 4})


def test_skipped_rows_shrink_the_store(tmp_path: Path) -> None:
    def build(writer) -> None:
        writer.append(np.ones((2, 4, 3), np.uint8))
        writer.meta["skipped"] = ["line 3: broken"]
    store = open_or_build("short", {"k": 1}, 10, (4, 3), build, root=tmp_path)
    assert store.count == 2 and (store.folder / "images.u8").stat().st_size == 2 * 12


def test_a_truncated_store_is_detected_and_rebuilt(tmp_path: Path) -> None:
    calls: list[int] = []
    messages: list[str] = []
    store = open_or_build("demo", {"a": 1}, 5, (4, 3), _builder(calls), root=tmp_path, mapped=("mask_bits",))
    folder = store.folder
    del store
    with (folder / "images.u8").open("r+b") as handle:
        handle.truncate(20)
    with pytest.raises(StoreDamaged, match="truncated"):
        ImageStore(folder, {"a": 1})
    rebuilt = open_or_build("demo", {"a": 1}, 5, (4, 3), _builder(calls), root=tmp_path, mapped=("mask_bits",),
                            log=messages.append)
    assert len(calls) == 2 and rebuilt.images.shape == (5, 4, 3)
    assert "damaged" in messages[0] and str(folder) in messages[0]


def test_changed_bytes_fail_the_full_verification(tmp_path: Path) -> None:
    store = open_or_build("demo", {"a": 1}, 5, (4, 3), _builder([]), root=tmp_path, mapped=("mask_bits",))
    with (store.folder / "images.u8").open("r+b") as handle:
        handle.seek(7)
        handle.write(b"\xff")
    with pytest.raises(StoreDamaged, match="CRC-32"):
        ImageStore(store.folder, {"a": 1}).verify()


def test_an_interrupted_build_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="bad sample"):
        open_or_build("demo", {"a": 1}, 5, (4, 3), _builder([], fail_at=3), root=tmp_path, mapped=("mask_bits",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"demo-{key_digest({'a': 1})[:16]}.lock"]


def test_leftovers_of_a_killed_builder_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / f"demo-{key_digest({'a': 1})[:16]}.building-99999"
    leftover.mkdir()
    (leftover / "images.u8").write_bytes(b"\0" * 7)
    open_or_build("demo", {"a": 1}, 5, (4, 3), _builder([]), root=tmp_path, mapped=("mask_bits",))
    assert not leftover.exists()


def test_an_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="VLPBENCH_STORE_DIR"):
        open_or_build("demo", {"a": 1}, 5, (4, 3), _builder([]), root=blocker / "store")


WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from vlpbench.data.store import open_or_build

    def build(writer):
        with open(sys.argv[2], "a") as log:
            log.write(f"{os.getpid()}\\n")
        time.sleep(1.0)  # long enough for the other process to reach the lock
        writer.append(np.arange(24, dtype=np.uint8).reshape(2, 4, 3))

    store = open_or_build("race", {"k": 1}, 2, (4, 3), build, root=sys.argv[1])
    print(int(store.images.sum()))
""")


def test_one_writer_under_two_concurrent_processes(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(log)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(sum(range(24)))] * 2  # both mapped the complete store
    assert len(log.read_text().split()) == 1  # built exactly once


def test_synthcxr_pixels_in_the_store_are_the_rendered_ones_quantised(tmp_path: Path) -> None:
    config = SynthCXRConfig(seed=4, image_size=32)
    memory = generate("train", 150, config)
    stored = generate_stored("train", 150, config, str(tmp_path))
    assert stored.images.dtype == np.uint8 and isinstance(stored.images, np.memmap)
    assert np.array_equal(stored.images, quantize(memory.images))
    assert np.array_equal(stored.mask_bits, memory.mask_bits) and np.array_equal(stored.boxes, memory.boxes)
    assert stored.sentences == memory.sentences and np.array_equal(stored.labels, memory.labels)
    reopened = generate_stored("train", 150, config, str(tmp_path))  # from the store: no rendering
    assert reopened.sentences == memory.sentences and np.array_equal(reopened.images, stored.images)
    meta = json.loads((Path(stored.images.filename).parent / "meta.json").read_text())
    assert meta["key"]["split"] == "train" and meta["count"] == 150


def test_data_prepare_builds_the_stores_once_and_verifies_them(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLPBENCH_STORE_DIR", str(tmp_path / "stores"))
    sizes = ["--set", "pretrain_size=40", "--set", "train_size=16", "--set", "val_size=8", "--set", "test_size=8"]
    code, out, _ = cli("data", "prepare", "synthcxr", "--image-size", "32", *sizes, "--verify")
    assert code == 0 and "pretrain: 40 images" in out and "test: 8 images" in out and "checksums verified" in out
    folders = sorted(p.name for p in (tmp_path / "stores").iterdir() if p.is_dir())
    assert len(folders) == 4 and all(name.startswith("synthcxr-") and "-32px-" in name for name in folders)
    code, out, _ = cli("data", "prepare", "synthcxr", "--image-size", "32", *sizes, "--split", "pretrain")
    assert code == 0 and sorted(p.name for p in (tmp_path / "stores").iterdir() if p.is_dir()) == folders


def test_validate_prints_encoder_sizes_and_estimates(cli, tiny_experiment: Path) -> None:
    code, out, _ = cli("validate", str(tiny_experiment))
    assert code == 0
    assert "image encoder resnet18: 0.69 M parameters, 4×4 = 16 tokens at 32 px" in out
    assert "text encoder:" in out and "memory per process" in out and "image store: 240 SynthCXR images" in out
