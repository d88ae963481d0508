"""The smaller items of issue 21: a misspelt --baseline, a taken plugin name, nan% in mining-quality."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_tiny_run


def test_leaderboard_refuses_a_baseline_that_is_not_a_variant(tmp_path: Path, cli) -> None:
    path = write_tiny_run(tmp_path, "based", pretrain_size=48, extra="variants:\n  clip: {}\n")
    results = tmp_path / "results"
    assert cli("run", str(path), "--results", str(results), "--quiet")[0] == 0
    code, out, err = cli("leaderboard", str(results / "based"), "--baseline", "clipp")
    assert code == 2 and "did you mean 'clip'" in err and "comparison" in err
    code, out, err = cli("leaderboard", str(results / "based"), "--baseline", "clip")
    assert code == 0, err


def test_new_plugin_refuses_the_name_of_an_installed_plugin(tmp_path: Path, cli) -> None:
    for taken in ("fane", "vlpbench"):
        code, out, err = cli("new-plugin", taken, "--dest", str(tmp_path))
        assert code == 2 and "is taken" in err, err
    assert not list(tmp_path.iterdir())


def test_mining_quality_never_prints_nan_percent(cli) -> None:
    code, out, err = cli("mining-quality", "--miner", "identity", "--miner", "oracle", "--batches", "2",
                         "--batch-size", "16", "--size", "64")
    assert code == 0, err
    assert "nan" not in out.lower()
    identity = next(line for line in out.splitlines() if line.startswith("| identity"))
    assert "—" in identity and "|             0 |" in identity
    oracle = next(line for line in out.splitlines() if line.startswith("| oracle"))
    assert "100.0%" in oracle
