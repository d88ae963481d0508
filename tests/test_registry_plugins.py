"""Registry behaviour and plugin loading (broken plugin, duplicate names, strict mode)."""

from __future__ import annotations

import sys

import pytest

from vlpbench.core.errors import PluginError, RegistryError
from vlpbench.core.plugins import load_plugins
from vlpbench.core.registry import Entry, Registry


GOOD = """
from vlpbench.core.hookspecs import hookimpl

class Thing:
    pass

@hookimpl
def vlpbench_register(registrar):
    registrar.add("positive_miner", "{name}", "{module}:Thing", "a test miner")
"""


def test_unknown_name_suggests_close_matches() -> None:
    registry = load_plugins(entry_points=[]).registry
    with pytest.raises(RegistryError) as info:
        registry.get("global_loss", "infonse")
    assert "did you mean 'infonce'" in str(info.value)
    assert "sigmoid" in str(info.value)  # lists the available names


def test_duplicate_builtin_is_an_error() -> None:
    registry = Registry()
    registry.add(Entry("global_loss", "x", "m:A", "vlpbench"))
    with pytest.raises(RuntimeError):
        registry.add(Entry("global_loss", "x", "m:B", "vlpbench"))


def test_good_plugin_registers_with_its_origin(throwaway_plugins) -> None:
    ep = throwaway_plugins.module("goodplug", GOOD.format(name="goodplug.miner", module="goodplug"))
    loaded = load_plugins(entry_points=[ep])
    entry = loaded.registry.get("positive_miner", "goodplug.miner")
    assert entry.origin == "goodplug"
    assert entry.load().__name__ == "Thing"
    assert [p.status for p in loaded.plugins] == ["ok", "ok"]


def test_broken_plugin_warns_and_the_rest_keeps_working(throwaway_plugins) -> None:
    broken = throwaway_plugins.module("brokenplug", "raise ImportError('missing dependency foo')\n")
    good = throwaway_plugins.module("goodplug2", GOOD.format(name="goodplug2.miner", module="goodplug2"))
    with pytest.warns(UserWarning, match="brokenplug.*missing dependency foo"):
        loaded = load_plugins(entry_points=[broken, good])
    assert loaded.registry.get("positive_miner", "goodplug2.miner")
    status = {p.name: p.status for p in loaded.plugins}
    assert status == {"vlpbench": "ok", "brokenplug": "failed", "goodplug2": "ok"}


def test_plugin_whose_registration_raises_is_skipped(throwaway_plugins) -> None:
    ep = throwaway_plugins.module("raiser", """
        from vlpbench.core.hookspecs import hookimpl
        @hookimpl
        def vlpbench_register(registrar):
            raise ValueError("boom")
    """)
    with pytest.warns(UserWarning, match="raiser.*boom"):
        loaded = load_plugins(entry_points=[ep])
    assert loaded.registry.get("global_loss", "infonce")


def test_hook_with_wrong_signature_is_reported(throwaway_plugins) -> None:
    ep = throwaway_plugins.module("badsig", """
        from vlpbench.core.hookspecs import hookimpl
        @hookimpl
        def vlpbench_register(registrar, unexpected):
            pass
    """)
    with pytest.warns(UserWarning, match="badsig.*unexpected"):
        loaded = load_plugins(entry_points=[ep])
    assert {p.name: p.status for p in loaded.plugins}["badsig"] == "failed"


def test_strict_mode_makes_a_broken_plugin_fatal(throwaway_plugins, monkeypatch) -> None:
    ep = throwaway_plugins.module("brokenstrict", "raise ImportError('nope')\n")
    monkeypatch.setenv("VLPBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="brokenstrict"):
        load_plugins(entry_points=[ep])


def test_duplicate_plugin_name_is_refused_naming_both_origins(throwaway_plugins) -> None:
    ep = throwaway_plugins.module("thief", GOOD.format(name="identity", module="thief"))
    with pytest.warns(UserWarning, match="'thief'.*already taken by plugin 'vlpbench'"):
        loaded = load_plugins(entry_points=[ep])
    assert loaded.registry.get("positive_miner", "identity").origin == "vlpbench"


def test_every_builtin_component_imports() -> None:
    """Each built-in entry imports to the class its target names, built the way build_component
    builds it: ``cls(Params.model_validate(...) or None, context)``, with ``Params`` forbidding
    unknown keys (or absent for a component without parameters)."""
    import inspect

    from pydantic import BaseModel

    registry = load_plugins(entry_points=[]).registry
    entries = registry.all_entries()
    core = {"dataset", "image_encoder", "text_encoder", "global_loss", "positive_miner", "negative_weighting", "task"}
    assert core <= {entry.kind for entry in entries}
    for entry in entries:
        assert entry.origin == "vlpbench"
        loaded = entry.load()
        if entry.kind == "preset":
            assert isinstance(loaded, dict), entry.name
            continue
        module, _, attr = entry.target.partition(":")
        assert inspect.isclass(loaded) and loaded.__module__ == module and loaded.__qualname__ == attr, entry.target
        params = getattr(loaded, "Params", None)
        if params is not None:
            assert issubclass(params, BaseModel) and params.model_config.get("extra") == "forbid", entry.target
        assert list(inspect.signature(loaded.__init__).parameters)[1:3] == ["params", "context"], entry.target


def test_plugins_command_does_not_import_torch() -> None:
    import subprocess

    code = "import sys; from vlpbench.cli import main; main(['plugins']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_help_does_not_import_torch() -> None:
    import subprocess

    code = ("import sys\nfrom vlpbench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('heavy:', sorted(m for m in ('torch', 'transformers', 'ray', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("heavy: []")


def test_plugins_check_reports_a_component_that_fails_to_import(throwaway_plugins, monkeypatch, cli) -> None:
    import vlpbench.core.plugins as plugins_module

    ep = throwaway_plugins.module("halfbroken", """
        from vlpbench.core.hookspecs import hookimpl
        @hookimpl
        def vlpbench_register(registrar):
            registrar.add("local_head", "halfbroken.head", "halfbroken_missing_module:Head", "cannot import")
    """)
    monkeypatch.setattr(plugins_module, "_LOADED", load_plugins(entry_points=[ep]))
    code, out, _ = cli("plugins", "--check")
    assert code == 1
    line = next(line for line in out.splitlines() if "halfbroken.head" in line)
    assert "[halfbroken]" in line and "FAILED" in line and "halfbroken_missing_module" in line
    assert "check: 1 component(s) failed to import" in out
    plugin_line = next(line for line in out.splitlines() if line.strip().startswith("halfbroken "))
    assert "ok" in plugin_line
