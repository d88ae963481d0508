"""Where a result came from: vlpbench's own version and source commit, libraries, plugins, hardware.

The commit is that of the *installed vlpbench package's* source tree — never of the directory the
command runs in (a user's own project). It is read only when the package's files are tracked by
the git repository around them, so a vlpbench installed into a virtual environment inside some other
repository reports no commit rather than that repository's; a pip install from a VCS URL reports
the commit pip recorded (``direct_url.json``).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from vlpbench import __version__
from vlpbench.core.plugins import get_plugins
from vlpbench.engine.files import write_json

LIBRARIES = ("torch", "torchvision", "timm", "transformers", "torchmetrics", "monai", "numpy", "scipy", "pydantic")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None


def source() -> dict[str, Any]:
    """vlpbench's version, source commit, dirty flag and where it is installed."""
    package = Path(__file__).resolve().parents[1]
    info: dict[str, Any] = {"version": __version__, "commit": None, "dirty": None, "path": str(package)}
    tracked = _git(package, "ls-files", "--error-unmatch", "__init__.py")
    head = _git(package, "rev-parse", "HEAD")
    if tracked is not None and tracked.returncode == 0 and head is not None and head.returncode == 0:
        status = _git(package, "status", "--porcelain", "--untracked-files=no", "--", ".")
        top = _git(package, "rev-parse", "--show-toplevel")
        if top is not None and top.returncode == 0:  # plugins in the same checkout count too
            status = _git(Path(top.stdout.strip()), "status", "--porcelain", "--untracked-files=no")
        info.update(commit=head.stdout.strip(), dirty=bool(status and status.stdout.strip()))
        return info
    try:  # installed from a VCS URL: pip recorded the commit
        direct = metadata.distribution("vlpbench").read_text("direct_url.json")
        commit = (json.loads(direct or "{}").get("vcs_info") or {}).get("commit_id")
        if commit:
            info.update(commit=commit, dirty=False)
    except Exception:  # noqa: BLE001  (not installed as a distribution: no commit, said so by None)
        pass
    return info


def git_commit() -> str | None:
    """The commit of the vlpbench source (``-dirty`` when its tree has uncommitted changes); None
    when it cannot be known (see :func:`source`)."""
    info = source()
    if info["commit"] is None:
        return None
    return info["commit"] + ("-dirty" if info["dirty"] else "")


def libraries() -> dict[str, Any]:
    """Versions of the libraries results depend on, CUDA's and cuDNN's (None: not installed)."""
    found: dict[str, Any] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        import torch

        found["cuda"] = torch.version.cuda
        found["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001
        found["cuda"] = found["cudnn"] = None
    return found


def hardware(device: Any) -> dict[str, Any]:
    import torch  # lazy: run planning and status import this module and need no torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
    }
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    if os.environ.get("SLURMD_NODENAME"):  # the Slurm node (several can share a host name)
        info["slurm_node"] = os.environ["SLURMD_NODENAME"]
    return info


def record() -> dict[str, Any]:
    """Everything :mod:`runner` and ``vlpbench eval`` write about the software: the versions that decide
    staleness, vlpbench's source (version, commit, dirty), every library and CUDA version."""
    src = source()
    commit = None if src["commit"] is None else src["commit"] + ("-dirty" if src["dirty"] else "")
    return {"versions": versions(), "git_commit": commit, "source": src, "libraries": libraries()}


def versions() -> dict[str, Any]:
    """vlpbench and every loaded plugin's version (a change marks finished runs stale)."""
    return {"vlpbench": __version__, "plugins": get_plugins().versions()}


def write_provenance(path: Path, *, seed: int, run_hash: str, device: Any, data: Any, timings: dict[str, Any],
                     task_data: dict[str, Any] | None = None, **specific: Any) -> None:
    """``provenance.json`` of a run or an evaluation, the one writer of it: the software
    (:func:`record`), the identity, the data protocol, the hardware and the timings, then what is
    ``specific`` to how the run was made (pretraining, distribution, an evaluated checkpoint)."""
    write_json(path, {**record(), "seed": seed, "run_hash": run_hash, "data": data,
                      **({"task_data": task_data} if task_data else {}), "hardware": hardware(device),
                      "timings": timings, **specific})
