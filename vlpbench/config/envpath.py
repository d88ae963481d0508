"""``${VAR}`` in path parameters: only a documented few variables, and never echoed expanded.

Experiment files may name data folders relative to the environment (``root:
${VLPBENCH_DATA}/chexpert``), so a run's identity does not depend on where a user keeps the data.
Any variable would also let a file read a secret (``${AWS_SECRET_ACCESS_KEY}``) into an error
message, and messages land in ``status.json`` and on every board. So only :data:`ALLOWED` variables
expand — ``VLPBENCH_*`` and the usual folders ``HOME``, ``TMPDIR``, ``SCRATCH``, ``SLURM_TMPDIR`` —
``validate`` refuses any other reference anywhere in a config (:func:`disallowed_references`), and
messages about a path quote the literal text of the file, not its expansion.
"""

from __future__ import annotations

import os
import re
from typing import Any

from vlpbench.core.errors import ConfigError, DataError

ALLOWED = re.compile(r"^(VLPBENCH_[A-Z0-9_]*|HOME|TMPDIR|SCRATCH|SLURM_TMPDIR)$")
REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
ALLOWED_TEXT = "VLPBENCH_* (e.g. VLPBENCH_DATA), HOME, TMPDIR, SCRATCH and SLURM_TMPDIR"


def references(text: str) -> list[str]:
    """The variable names ``text`` refers to (``$NAME`` or ``${NAME}``)."""
    return [braced or bare for braced, bare in REFERENCE.findall(text)]


def expand_path(text: str, what: str) -> str:
    """``text`` with ``~`` and the allowed ``$VARS`` expanded; a one-paragraph error (quoting ``text``, never
    a value) for a variable that is not allowed or not set."""
    for name in references(text):
        if not ALLOWED.match(name):
            raise ConfigError(f"{what} = '{text}' refers to the environment variable ${name}, which vlpbench does "
                              f"not expand: only {ALLOWED_TEXT} may appear in paths. Use one of them or the folder "
                              "itself.")
        if name not in os.environ:
            raise DataError(f"{what} = '{text}' uses the environment variable ${name}, which is not set. Export it "
                            f"(e.g. `export {name}=/data`) or give the folder itself.")
    expanded = REFERENCE.sub(lambda m: os.environ[m.group(1) or m.group(2)], text)
    return os.path.expanduser(expanded)


def disallowed_references(value: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, variable) of every reference to a variable outside :data:`ALLOWED` in a config."""
    if isinstance(value, str):
        return [(loc, name) for name in references(value) if not ALLOWED.match(name)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in disallowed_references(item, loc + (key,))]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in disallowed_references(item, loc + (index,))]
    return []
