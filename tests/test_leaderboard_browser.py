"""The HTML board opened in a real headless browser (Debian's chromium): the table renders and
sorts, the charts, differences and loss curves are drawn, and the page fits a 1,400 px window.
Screenshots at two widths. Marked integration; CI installs chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_leaderboard import write_run
from vlpbench.board.leaderboard import write_leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")]

COLUMNS = [f"auroc@{f}%" for f in (1, 2, 5, 10, 20, 50, 100)] + [f"pooled@{f}%" for f in (1, 10, 100)]


@pytest.fixture(scope="module")
def board_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three variants × three seeds, ten columns of a task with declared metadata and per-case samples."""
    from vlpbench.engine.rundir import RunDir
    from vlpbench.engine.scoring import record_metrics, task_metrics
    from vlpbench.tasks.base import Column, Samples, TaskResult

    root = tmp_path_factory.mktemp("browser") / "exp"
    rng = np.random.default_rng(0)
    labels = (rng.random(120) < 0.4).astype(np.uint8)[:, None]
    for seed in range(3):
        for index, (variant, strength) in enumerate((("a", 0.8), ("b", 1.4), ("a_variant_with_a_long_name", 1.0))):
            write_run(root, variant, seed, 0.5, index=index)
            run = RunDir(root / "runs" / f"{variant}__seed{seed}")
            samples = {c: Samples("auroc", {"scores": (strength * labels + rng.normal(0, 1, labels.shape)).astype(np.float32),
                                           "labels": labels}) for c in COLUMNS}
            from vlpbench.board.resample import score

            scores = {c: float(score("auroc", s.arrays)[0]) for c, s in samples.items()}
            protocol = {"task": "linear_probe", "hash": "p"}
            outcome = TaskResult(scores, {c: protocol for c in scores}, {},
                                 {c: Column(headline=True, chance=0.5) for c in scores}, samples)
            record_metrics(run, {"linear_probe": task_metrics(type("T", (), {"metric_version": "1"})(), outcome)},
                           {"linear_probe": outcome.samples})
            history = {"steps": [{"step": s, "total": 4.0 - s / 50 + 0.1 * np.sin(s), "global": 3.0 - s / 60,
                                  "tiny_term": 1e-5 * (1 + s / 100)} for s in range(100)]}
            (run.path / "history.json").write_text(json.dumps(history))
    write_leaderboard(root)
    return root / "leaderboard.html"


def chromium(*args: str, user_data: Path) -> str:
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={user_data}", *args],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def test_table_sorts_charts_and_differences_render(board_page: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", "--window-size=1400,1000", f"{board_page.as_uri()}#sort=3",
                   user_data=tmp_path / "profile")
    rows = re.findall(r'<tr data-variant="([^"]+)">', dom)
    assert rows == ["b", "a_variant_with_a_long_name", "a"]  # sorted by the first score column, descending
    assert 'data-sorted="3:desc"' in dom
    assert len(re.findall(r'<circle class="point"', dom)) == 3 * len(COLUMNS)  # a point per variant and column
    assert len(re.findall(r'class="errorbar"', dom)) == 3 * len(COLUMNS)
    assert len(re.findall(r'class="chance"', dom)) == len(COLUMNS)
    low, high = map(float, re.search(r'data-axis="([^:]+):([^"]+)"', dom).groups())
    assert low > 0.3  # the axis spans the data and the chance level, it does not start at 0
    assert len(re.findall(r'<svg class="curve" data-term="tiny_term"', dom)) == 9  # own panel per term and run
    assert "Difference from the baseline" in dom and "adj." in dom and "Holm" in dom
    assert "Ablation view" in dom and "mean rank" in dom
    width = int(re.search(r'data-scroll-width="(\d+)"', dom).group(1))
    assert width <= 1400  # the page fits a 1,400 px window; the wide table scrolls inside it


@pytest.mark.parametrize("width", [1400, 900])
def test_screenshots_at_two_widths_are_drawn(board_page: Path, tmp_path: Path, width: int) -> None:
    from PIL import Image

    shot = tmp_path / f"board-{width}.png"
    chromium(f"--screenshot={shot}", f"--window-size={width},1600", board_page.as_uri(), user_data=tmp_path / "profile")
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    drawn = sum(histogram[:250]) / sum(histogram)  # anything but the white page: text, table, points, curves
    dark = sum(histogram[:100]) / sum(histogram)
    assert image.size == (width, 1600) and 0.02 < drawn < 0.6 and dark > 0.001
    right = np.asarray(image)[:, -12:]  # nothing is cut at the right edge: the margin stays white
    assert (right > 240).mean() > 0.97
