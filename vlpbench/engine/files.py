"""Atomic file writes: a crash never leaves a half-written result behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from vlpbench.config.yamlmap import load_bounded
from vlpbench.core.errors import ConfigError, DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Temporary files of :func:`atomic_write` end with this; :func:`remove_temporary` removes leftovers.
TMP_SUFFIX = ".vlpbench-tmp"


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A full disk, a missing permission or a read-only folder raises
    :class:`~vlpbench.core.errors.EnvironmentProblem` naming ``path``; nothing half-written stays behind.
    """
    try:
        _atomic_write(path, write, binary)
    except OSError as exc:
        from vlpbench.core.errors import EnvironmentProblem, environment_message

        if exc.filename is None:
            exc.filename = str(path)
        message = environment_message(exc)
        if message is None:
            raise
        raise EnvironmentProblem(message) from exc


def remove_temporary(folder: Path) -> list[Path]:
    """Remove the temporary files a killed :func:`atomic_write` left in ``folder`` (not below it).

    Only call it while holding the folder's lock (:mod:`vlpbench.engine.lock`), so no live write is hit.
    """
    removed = []
    for leftover in folder.glob(f".*{TMP_SUFFIX}") if folder.is_dir() else []:
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def _atomic_write(path: Path, write: Callable[[Any], None], binary: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda h: h.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"))


def write_yaml(path: Path, data: Any) -> None:
    atomic_write(path, lambda h: yaml.safe_dump(data, h, sort_keys=False))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda h: h.write(text))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (weights files can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CorruptFile(DataError):
    """A file of a results folder that cannot be read as what it should be; names the file and why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"'{path}' is unreadable: {reason}. Only this run is affected; move its folder away "
                         "(or delete the file) and rerun to recompute it.")


#: JSON files of a results folder are small; anything bigger is not ours.
MAX_JSON_BYTES = 256 << 20


def read_json(path: Path, expect: type | None = None) -> Any:
    """The JSON value in ``path``; :class:`CorruptFile` (naming the file and the reason) when it is not
    readable JSON or, with ``expect``, not of that type. A missing file stays ``FileNotFoundError``."""
    path = Path(path)
    try:
        if path.is_dir():
            raise CorruptFile(path, "it is a folder, not a file")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CorruptFile(path, f"it has {path.stat().st_size:,} bytes, far more than a vlpbench JSON file")
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CorruptFile(path, "it is not UTF-8 text (a binary file?)") from None
    except json.JSONDecodeError as exc:
        raise CorruptFile(path, f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; "
                                "truncated?)") from None
    except RecursionError:
        raise CorruptFile(path, "its JSON nests too deeply") from None
    except PermissionError as exc:
        raise CorruptFile(path, f"it cannot be read ({exc.strerror})") from None
    if expect is not None and not isinstance(value, expect):
        raise CorruptFile(path, f"it holds a JSON {type(value).__name__}, not a {expect.__name__}")
    return value


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML mapping written by vlpbench (a run's ``config.yaml``), read within bounds; :class:`CorruptFile`
    when it is not one."""
    path = Path(path)
    try:
        if path.is_dir():
            raise CorruptFile(path, "it is a folder, not a file")
        value = load_bounded(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        raise CorruptFile(path, "it is not UTF-8 text (a binary file?)") from None
    except PermissionError as exc:
        raise CorruptFile(path, f"it cannot be read ({exc.strerror})") from None
    except ConfigError as exc:
        raise CorruptFile(path, str(exc).removeprefix(f"{path}").lstrip(":, ").rstrip(".")) from None
    if not isinstance(value, dict):
        raise CorruptFile(path, f"it holds a YAML {type(value).__name__}, not a mapping")
    return value
