#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install frcnn with its test tools and the
# cluster extra (Hydra's launcher and sweeper plugins).
# Usage: bash scripts/setup_env.sh            (idempotent: a second run only re-installs frcnn itself)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FRCNN_VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Pins for this environment, and why:
#  - torch 2.14.1 + torchvision 0.29.1 are a matching pair; torchvision's compiled ops (nms, roi_align) only load
#    with the torch they were built against. The machine also holds a CPU-only torch 2.13.0 wheel, but no
#    torchvision build matches it ("operator torchvision::nms does not exist"), so we cannot use that one.
#  - Unpinned, pip would pick the newest torch from the registry: a multi-GB download on every fresh machine.
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')))" 2>/dev/null; then
  echo "[setup] installing ${TORCH_PINS[*]} (about a minute from the local package cache)"
  "$PY" -m pip install -q --disable-pip-version-check "${TORCH_PINS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
fi
# cluster: Hydra's joblib/submitit launchers and Optuna sweeper (pyproject.toml pins them); the launcher tests use them.
# export: onnx, onnxscript, onnxruntime for frcnn-export / backend=onnxruntime; the export tests use them.
echo "[setup] installing frcnn (editable) with test, cluster and export extras"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test,cluster,export]" "${TORCH_PINS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import torch, torchvision, frcnn; from torchvision.ops import nms; print('[setup] torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
"$PY" -c "import optuna, submitit, joblib, hydra_plugins.hydra_optuna_sweeper, hydra_plugins.hydra_joblib_launcher, hydra_plugins.hydra_submitit_launcher; print('[setup] optuna', optuna.__version__, 'submitit', submitit.__version__, 'joblib', joblib.__version__)"
"$PY" -c "import onnx, onnxscript, onnxruntime; print('[setup] onnx', onnx.__version__, 'onnxscript', onnxscript.__version__, 'onnxruntime', onnxruntime.__version__)"
