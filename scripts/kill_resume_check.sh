#!/usr/bin/env bash
# Kill -9 a training run right after its first periodic checkpoint, resume it with train.resume=auto, and check
# that it finishes with the iteration count it was asked for and a readable last.pt. On a GPU machine this is the
# CUDA resume check (torch.load of the checkpoint, RNG states, optimizer state on the device).
#   bash scripts/kill_resume_check.sh [device] [amp]      e.g. cuda bf16 (default: cpu off)
# Uses .venv's commands when there is one, else the frcnn-train on the PATH, else python3 -m frcnn.cli.train (the
# project on PYTHONPATH only, as on a GPU machine whose image brings its own torch).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cpu}
AMP=${2:-off}
PYTHON=$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)
if [[ -x .venv/bin/frcnn-train ]]; then TRAIN=(.venv/bin/frcnn-train)
elif command -v frcnn-train >/dev/null; then TRAIN=(frcnn-train)
else TRAIN=("$PYTHON" -m frcnn.cli.train); fi
WORK=$(mktemp -d)
RUN="$WORK/run"
ARGS=(experiment=shapes "dataset.root=$WORK/shapes" dataset.shapes.num_train=40 dataset.shapes.num_val=4
      dataset.shapes.num_test=4 "device=$DEVICE" "train.amp=$AMP" train.max_iters=40 train.checkpoint_period=10
      train.log_period=5 train.progress_bar=false "hydra.run.dir=$RUN")
"${TRAIN[@]}" "${ARGS[@]}" > "$WORK/first.log" 2>&1 &
PID=$!
for _ in $(seq 600); do  # until the first periodic checkpoint exists (at most 10 minutes)
  [[ -f "$RUN/checkpoints/iter_0000010.pt" ]] && break
  kill -0 $PID 2>/dev/null || { echo "[check] the run ended before its first checkpoint"; cat "$WORK/first.log"; exit 1; }
  sleep 1
done
kill -9 $PID; wait $PID 2>/dev/null || true
echo "[check] killed the run after: $(ls "$RUN/checkpoints")"
"${TRAIN[@]}" "${ARGS[@]}" train.resume=auto > "$WORK/resumed.log" 2>&1 || { cat "$WORK/resumed.log"; exit 1; }
grep -h "resumed from" "$RUN/train.log"
"$PYTHON" - "$RUN" <<'PY'
import json, sys
from frcnn.engine.checkpoint import load_checkpoint
run = sys.argv[1]
state = load_checkpoint(f"{run}/checkpoints/last.pt")
assert state["iteration"] == 40, state["iteration"]
metrics = json.load(open(f"{run}/metrics.json"))
print(f"[check] resumed run finished: iteration {state['iteration']}, val mAP {metrics['mAP']:.3f}")
PY
rm -rf "$WORK"
