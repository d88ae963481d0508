"""User-facing errors.

Everything that is the *user's* mistake (a bad experiment file, an unknown component, a missing
data file, a broken plugin in strict mode) raises a :class:`UserError`. The CLI prints its message
as one paragraph and exits with status 2, without a traceback. Anything else is a bug in vlpbench
and is allowed to propagate with its traceback (exit status 1).
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the place and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """An experiment file (or CLI override) is malformed or invalid."""


class RegistryError(UserError):
    """A component name is unknown, or a component cannot be built."""


class PluginError(UserError):
    """A plugin failed to load or register (fatal only in strict mode)."""


class DataError(UserError):
    """A data source is missing or malformed."""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """Return a '; did you mean …?' suffix for ``name`` among ``choices`` (or '')."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        # Namespaced names: also match on the part after the last dot.
        tails = {c.rsplit(".", 1)[-1]: c for c in choices}
        close = [tails[t] for t in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(tails), n=n, cutoff=0.6)]
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
