"""The HTML board opened in a real headless browser (Debian's chromium): the table renders and
sorts, the charts and loss curves are drawn. Marked integration; CI installs chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_leaderboard import write_run
from vlpbench.leaderboard import write_leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def board_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser") / "exp"
    for seed, (a, b, c) in enumerate([(0.5, 0.6, 0.9), (0.6, 0.8, 0.8), (0.7, 0.7, 0.85)]):
        for index, (variant, value) in enumerate((("a", a), ("b", b), ("c", c))):
            write_run(root, variant, seed, value, index=index)
            history = {"steps": [{"step": s, "total": 4.0 - s / 50, "global": 3.0 - s / 60} for s in range(100)]}
            (root / "runs" / f"{variant}__seed{seed}" / "history.json").write_text(json.dumps(history))
    write_leaderboard(root)
    return root / "leaderboard.html"


def chromium(*args: str, user_data: Path) -> str:
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={user_data}", *args],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def test_table_sorts_and_charts_render(board_page: Path, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", f"{board_page.as_uri()}#sort=2", user_data=tmp_path / "profile")
    rows = re.findall(r'<tr data-variant="([^"]+)">', dom)
    assert rows == ["c", "b", "a"]  # sorted by the first score column, descending, by the page's script
    assert 'data-sorted="2:desc"' in dom
    assert len(re.findall(r'<rect class="bar"', dom)) == 3  # one bar per variant
    assert len(re.findall(r'class="errorbar"', dom)) == 3
    assert len(re.findall(r'<polyline data-term="total"', dom)) == 9  # a loss curve per run


def test_screenshot_is_not_blank(board_page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "board.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1600", board_page.as_uri(), user_data=tmp_path / "profile")
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    drawn = sum(histogram[:250]) / sum(histogram)  # anything but the white page: text, table, bars, curves
    dark = sum(histogram[:100]) / sum(histogram)
    assert image.size == (1200, 1600) and 0.02 < drawn < 0.6 and dark > 0.001
