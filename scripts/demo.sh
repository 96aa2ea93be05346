#!/usr/bin/env bash
# The demo, from a fresh machine: set up .venv, generate the synthetic shapes data, train the CPU recipe
# (experiment=shapes), then evaluate the last checkpoint on the held-out test split.
#   bash scripts/demo.sh [extra frcnn-train overrides]
# Output: outputs/demo/ (train run: checkpoints/, tensorboard/, train.log, metrics.json on the val split)
#         outputs/demo/test_eval/ (metrics.json and detections.json on the test split)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
RUN=outputs/demo
start=$(date +%s)
.venv/bin/frcnn-train experiment=shapes hydra.run.dir="$RUN" "$@"
trained=$(date +%s)
.venv/bin/frcnn-eval checkpoint="$RUN/checkpoints/last.pt" split=test hydra.run.dir="$RUN/test_eval"
echo "[demo] training + validation took $((trained - start)) s; test-split metrics: $RUN/test_eval/metrics.json"
echo "[demo] tensorboard --logdir $RUN/tensorboard"
