"""`vlpbench plugins --kind K --json` and `vlpbench describe COMPONENT` (issue 21)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_plugins_json_lists_every_component_of_a_kind(cli) -> None:
    from vlpbench.core.plugins import get_registry

    code, out, err = cli("plugins", "--kind", "positive_miner", "--json")
    assert code == 0, err
    data = json.loads(out)
    names = {c["name"] for c in data["components"]}
    assert names == set(get_registry().names("positive_miner"))
    assert {"identity", "oracle", "fane.adaptive_miner"} <= names
    assert {c["kind"] for c in data["components"]} == {"positive_miner"}
    fane = next(c for c in data["components"] if c["name"] == "fane.adaptive_miner")
    assert fane["origin"] == "fane" and fane["origin_version"] and fane["target"].startswith("vlpbench_fane.")
    assert {p["name"] for p in data["plugins"]} >= {"vlpbench", "fane", "sista", "cmcgns"}

    code, out, err = cli("plugins", "--kind", "task")  # the table filters too
    assert code == 0 and "linear_probe" in out and "infonce" not in out and "positive_miner" not in out

    code, out, err = cli("plugins", "--kind", "miner", "--json")
    assert code == 2 and "did you mean 'positive_miner'" in err


def test_plugins_json_does_not_import_torch() -> None:
    code = ("import sys, io, contextlib; from vlpbench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['plugins', '--json', '--kind', 'task'])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_describe_shows_parameters_defaults_doc_and_origin(cli) -> None:
    code, out, err = cli("describe", "fane.adaptive_miner")
    assert code == 0, err
    assert "positive_miner 'fane.adaptive_miner'" in out and "from plugin:  fane" in out
    assert "objective.positive_miner: {name: fane.adaptive_miner" in out
    assert "kappa" in out and "default 0.95" in out and "threshold" in out
    assert "exclusiveMinimum 0" in out  # momentum's constraint

    code, out, err = cli("describe", "timm", "--json")
    info = json.loads(out)
    params = {p["name"]: p for p in info["parameters"]}
    assert info["kind"] == "image_encoder" and info["origin"] == "vlpbench"
    assert params["arch"]["default"] == "resnet18" and params["arch"]["type"] == "str"
    assert "Base class for all neural network modules" not in info["doc"]  # never torch's inherited docstring

    code, out, err = cli("describe", "fane", "--json")  # a preset shows its overrides
    info = json.loads(out)
    assert info["kind"] == "preset" and info["overrides"]["objective.positive_miner"] == {"name": "fane.adaptive_miner"}


def test_describe_names_close_matches_and_filters_by_kind(cli) -> None:
    code, out, err = cli("describe", "fane.adaptive_minr")
    assert code == 2 and "did you mean 'fane.adaptive_miner'" in err and "Traceback" not in err
    code, out, err = cli("describe", "infonce", "--kind", "task")
    assert code == 2 and "of kind 'task'" in err
    code, out, err = cli("describe", "infonce", "--kind", "global_loss")
    assert code == 0 and "temperature" in out


def test_describe_matches_what_validation_accepts() -> None:
    """Every parameter `describe` lists is one the component's Params accepts, and only those."""
    from vlpbench.core.describe import describe_entry
    from vlpbench.core.plugins import get_plugins

    loaded = get_plugins()
    for entry in loaded.registry.all_entries():
        if entry.kind in ("preset", "launcher"):
            continue
        info = describe_entry(entry, loaded.versions())
        model = getattr(entry.load(), "Params", None)
        names = {p["name"] for p in info["parameters"]}
        expected = {f.alias or n for n, f in model.model_fields.items()} if model is not None else set()
        assert names == expected, entry.name
