#!/usr/bin/env bash
# Create .venv (if missing) and install vlpbench, its method plugins and the test tools into it.
# Safe to run again: pip only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
plugins=()
for plugin in plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && plugins+=(-e "$plugin")
done
# The extras CI tests too: Ray Tune sweeps with Optuna, and Slurm through submitit.
.venv/bin/python -m pip install --quiet -e ".[test,sweep,optuna,slurm,tensorboard,mlflow,wandb]" "${plugins[@]}"
echo "vlpbench installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
