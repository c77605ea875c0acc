#!/usr/bin/env bash
# Everything a GPU session owes, batched into few device calls (each call ≤ 10 min).
# On the device machine, from the repo root, after `bash ../shared/device/stage.sh` here:
#   source .device/setup.sh && bash scripts/gpu_checks.sh kernels   # JIT build, CUDA tests, sanitizer, benchmark
#   source .device/setup.sh && bash scripts/gpu_checks.sh distill   # short DM/TM runs on the CIFAR-10 pack + evals
# The device tool returns at most 8 files from $OUT, so each phase writes only
# $OUT/<phase>.log (every step's output), $OUT/summary.txt (exit code and seconds per step) and, for
# kernels, $OUT/bench.json; distilled sets and buffers stay in $WORK.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=${WORK:-/tmp/gsdd-gpu}
PHASE=${1:-kernels}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/$PHASE.log"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
PY=${PYTHON:-python3}
G="$PY -m gsdd_cli"
status=0
run() {  # run NAME CMD...: output appended to $LOG, exit code and seconds to summary.txt
  local name=$1; shift
  local t0=$(date +%s)
  echo "===== $name: $*" >> "$LOG"
  "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "[$name] rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || status=1
}

case "$PHASE" in
  kernels)
    run nvidia_smi nvidia-smi
    run jit_build "$PY" -c "import gsdd_cuda, sys; ok = gsdd_cuda.is_available(); print(ok, gsdd_cuda.unavailable_reason()); sys.exit(0 if ok else 1)"
    run test_cuda "$PY" -m pytest -q tests/cuda -m "not build" -rs
    run sanitize bash scripts/sanitize.sh
    run bench "$PY" bench/render.py --out "$OUT/bench.json"
    ;;
  distill)
    # Overridable for a CPU smoke test: DATASET=digits DEVICE=cpu ITERS=3 EPOCHS=2 INIT=5 ...
    DS=${DATASET:-cifar10}; IT=${ITERS:-300}; EP=${EPOCHS:-300}; IN=${INIT:-2000}
    D="--device ${DEVICE:-cuda} --data-dir ${GSDD_DATA_DIR:?source .device/setup.sh first}"
    run experts $G experts "$DS" --num 4 --epochs 10 --out "$WORK/buffers" $D -q
    run dm $G distill "$DS" --algo dm --ipc 10 --init-steps "$IN" --iterations "$IT" --out "$WORK/dm10.gsd" $D -q
    run tm $G distill "$DS" --algo tm --ipc 10 --buffers "$WORK/buffers" --max-start-epoch 8 --init-steps "$IN" --iterations "$IT" --out "$WORK/tm10.gsd" $D -q
    run eval_dm $G eval "$WORK/dm10.gsd" --arch convnet --runs 3 --epochs "$EP" $D --json
    run eval_tm $G eval "$WORK/tm10.gsd" --arch convnet --runs 3 --epochs "$EP" $D --json
    run eval_rr10 $G eval --baseline random-real --dataset "$DS" --ipc 10 --runs 3 --epochs "$EP" $D --json
    run eval_full $G eval --baseline full --dataset "$DS" --runs 1 --epochs $(( EP < 50 ? EP : 50 )) $D --json
    ;;
  *)
    echo "usage: $0 kernels|distill" >&2; exit 2 ;;
esac
exit $status
