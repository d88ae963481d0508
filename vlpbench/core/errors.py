"""User-facing errors.

Everything that is the *user's* mistake (a bad experiment file, an unknown component, a missing
data file, a broken plugin in strict mode) raises a :class:`UserError`. The CLI prints its message
as one paragraph and exits with status 2, without a traceback. Anything else is a bug in vlpbench
and is allowed to propagate with its traceback (exit status 1).
"""

from __future__ import annotations

import difflib
import errno as errno_module


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


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler or ``kill``): like Ctrl-C, the current run is marked interrupted."""


_termination = {"requested": False}


def request_termination() -> None:
    """Remember that SIGTERM arrived. The signal handler also raises :class:`Terminated`, but Python
    runs a handler wherever the main thread is, a finaliser (``__del__``, a weakref callback) included,
    and an exception raised there is printed and dropped; the loops call :func:`check_termination`
    so that the request is never lost."""
    _termination["requested"] = True


def check_termination() -> None:
    """Raise :class:`Terminated` if SIGTERM arrived (cheap: a dictionary read)."""
    if _termination["requested"]:
        raise Terminated("SIGTERM")


def clear_termination() -> None:
    _termination["requested"] = False


class EnvironmentProblem(UserError):
    """The machine, not the input: a full disk, a missing permission, a read-only folder, memory.

    Exits with status 3 and one paragraph naming the path or the resource and the fix.
    """

    exit_code = 3


#: errno → (what happened, the fix) for the file-system errors that are the environment's.
_ERRNO_ADVICE = {
    "ENOSPC": ("there is no space left on the device", "free some space or point --results at another disk"),
    "EDQUOT": ("the disk quota is exhausted", "free some space or point --results at another disk"),
    "EACCES": ("permission is denied", "fix the folder's permissions or point --results at a folder you can write"),
    "EPERM": ("the operation is not permitted", "fix the folder's permissions or point --results at a folder you can write"),
    "EROFS": ("the file system is read-only", "point --results at a writable folder"),
    "ENOTDIR": ("a part of the path is a file, not a folder", "check the path (is --results a file?)"),
    "EISDIR": ("it is a folder where a file was expected", "remove or rename that folder"),
    "EMFILE": ("this process has too many open files", "raise `ulimit -n`"),
    "ENAMETOOLONG": ("the file name is too long for the file system", "use shorter names"),
}


def environment_message(exc: BaseException) -> str | None:
    """One paragraph for an error that comes from the environment, or ``None`` for any other error.

    Finished results are never touched by these errors (every result file is written atomically), so
    the paragraph also says that a rerun continues where it stopped.
    """
    keep = "Finished results are kept; rerun the same command to continue."
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno_module.errorcode.get(exc.errno, "")
        if name in _ERRNO_ADVICE:
            what, fix = _ERRNO_ADVICE[name]
            where = f" writing or reading '{exc.filename}'" if exc.filename else ""
            return f"{what}{where} ({exc.strerror or name}): {fix}. {keep}"
    if type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("torch"):  # torch.cuda.OutOfMemoryError
        return ("the GPU ran out of memory: lower pretrain.batch_size (or a task's batch_size), use "
                f"pretrain.precision: bf16, or a smaller model. {keep}")
    if isinstance(exc, MemoryError):
        return ("the machine ran out of memory (RAM): use smaller sizes (data sizes, image_size, batch_size) "
                f"or a machine with more memory. {keep}")
    return None


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """Return a '; did you mean …?' suffix for ``name`` among ``choices`` (or '')."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    if not close:
        # Namespaced names: also match on the part after the last dot.
        tails = {c.rsplit(".", 1)[-1]: c for c in choices}
        close = [tails[t] for t in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(tails), n=n, cutoff=0.6)]
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
