#!/usr/bin/env bash
# The GPU checks as one prepared run on a CUDA machine (README, "GPU"): the gpu-marked tests, the benchmark table
# against torchvision (eager, then with train.compile), host syncs per step, and the demo recipe's training time.
#   bash scripts/gpu_check.sh [OUTPUT_DIR [PART...]]   (default outputs/gpu_check, every part)
# Parts: gpu_tests bench_bf16 bench_fp32 bench_compiled demo resume. Within a 10-minute command limit run them as
# two calls, e.g. `gpu_tests demo resume`, then `bench_bf16 bench_fp32 bench_compiled` (not yet timed on a GPU).
# The environment must already have torch, torchvision, hydra-core, omegaconf, pycocotools, tqdm, tensorboard and
# the project (pip install -e ., or --no-deps beside an image's own torch, or the project on PYTHONPATH).
# Each part writes its own log, and a failing part does not stop the others; the exit status counts the failures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/gpu_check}
shift || true
PARTS=" ${*:-gpu_tests bench_bf16 bench_fp32 bench_compiled demo resume} "
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
failures=0
part() {  # part PART NAME COMMAND...: when PART is asked for, run it, keep its output in $OUT/NAME.log
  local group=$1 name=$2; shift 2
  [[ $PARTS == *" $group "* ]] || return 0
  echo "[gpu_check] $name: $*"
  local start=$SECONDS
  "$@" >"$OUT/$name.log" 2>&1 || { failures=$((failures + 1)); echo "[gpu_check] $name FAILED (see $OUT/$name.log)"; }
  echo "[gpu_check] $name took $((SECONDS - start)) s"
  tail -n 25 "$OUT/$name.log"
}

"$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"

part gpu_tests gpu_tests "$PY" -m pytest -q -p no:cacheprovider -m gpu tests
# The table of the README's GPU section: VGG16 and ResNet-50/101-C4, batch 1, 4, 8, bf16 (and fp32 at batch 1),
# both models on the same batch in the same process; syncs counted by CUDA's sync debug mode.
BENCH=("$PY" scripts/benchmark.py --device cuda --size 600x1000 --reps 5 --warmup 2 --sync-debug)
part bench_bf16 bench_bf16 "${BENCH[@]}" --backbone vgg16,resnet50,resnet101 --batch-size 1,4,8 --amp bf16 \
  --json "$OUT/bench_bf16.json"
part bench_fp32 bench_fp32 "${BENCH[@]}" --backbone vgg16,resnet50 --batch-size 1 --amp off --json "$OUT/bench_fp32.json"
# The compiled training step (3 warmup steps pay the compile), eager inference as frcnn-train evaluates.
part bench_compiled bench_compiled "${BENCH[@]}" --warmup 3 --backbone vgg16,resnet101 --batch-size 8 --amp bf16 \
  --override train.compile=true --json "$OUT/bench_compiled.json"
# The demo recipe on the GPU: images/s from its log, and the seconds for the whole run.
DEMO=outputs/gpu_demo
part demo demo "$PY" -m frcnn.cli.train experiment=shapes device=cuda train.amp=bf16 hydra.run.dir="$DEMO" \
  train.overwrite=true train.progress_bar=false
part demo demo_eval "$PY" -m frcnn.cli.eval checkpoint="$DEMO/checkpoints/last.pt" split=test \
  hydra.run.dir="$DEMO/test_eval"
part resume resume_bf16 bash scripts/kill_resume_check.sh cuda bf16
part resume resume_fp16 bash scripts/kill_resume_check.sh cuda fp16
echo "[gpu_check] done: $failures part(s) failed; logs and JSON in $OUT"
exit "$failures"
