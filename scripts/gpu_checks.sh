#!/usr/bin/env bash
# The GPU checks the project owes, batched so a session with a lent H100/H200 spends few calls.
#
#   OUT=<dir> bash scripts/gpu_checks.sh quick     # <= 6 min on an H100, the JIT build included:
#       build (a missing extension fails), tests/cuda (multi-chunk 128² case, GPU tile boxes,
#       determinism, CPU vs CUDA), compute-sanitizer memcheck/racecheck/initcheck on a small case,
#       and the benchmark JSON ($OUT/bench.json)
#   OUT=<dir> bash scripts/gpu_checks.sh distill   # short DM/TM runs on the CIFAR-10 pack + evals
#   OUT=<dir> bash scripts/gpu_checks.sh bench     # bench/equal_bytes.py (DM, IPC 10) and bench/tm_memory.py
#   CPU_SMOKE=1 OUT=<dir> bash scripts/gpu_checks.sh quick   # the CPU-runnable part, on CPU (no GPU steps)
#
# Run from anywhere (it cds to the repo root). Needs the project's Python dependencies (pydantic,
# typer, ...), torch with CUDA, nvcc and ninja. The device tool returns at most 8 files from $OUT,
# so each phase writes only $OUT/<phase>.log (every step's output), $OUT/summary.txt (exit code and
# seconds per step) and, for quick, $OUT/bench.json. Distilled sets and buffers stay in $WORK.
# `kernels` is an alias of `quick`. Exit code: 0 if every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=${WORK:-/tmp/gsdd-gpu}
PHASE=${1:-quick}
[ "$PHASE" = kernels ] && PHASE=quick
mkdir -p "$OUT" "$WORK"
LOG="$OUT/$PHASE.log"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export GSDD_REQUIRE_BUILD=1          # tests: a missing extension is a failure, never a skip
export GSDD_EXT_DIR=${GSDD_EXT_DIR:-$WORK/ext}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
G="$PY -m gsdd_cli"
status=0
run() {  # run NAME SECONDS CMD...: output appended to $LOG, exit code and seconds to summary.txt
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "===== $name: $*" >> "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "[$name] rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || status=1
}

case "$PHASE" in
  quick)
    if [ "${CPU_SMOKE:-0}" = 1 ]; then
      DEV=cpu
    else
      DEV=cuda
      run nvidia_smi 30 nvidia-smi
    fi
    # 1. build both libraries (JIT, cached in $GSDD_EXT_DIR); unavailable = failure
    run build 300 "$PY" -c "
import sys, time, torch, gsdd_cuda
from gsdd_cuda import _backend
t = time.time()
for dev in ('cpu',) + (('cuda',) if '$DEV' == 'cuda' else ()):
    ok = gsdd_cuda.is_available(dev)
    print(dev, 'available' if ok else 'UNAVAILABLE', gsdd_cuda.unavailable_reason(dev), _backend.origin(dev), flush=True)
    if not ok:
        sys.exit(1)
print(f'built/loaded in {time.time() - t:.1f}s; torch {torch.__version__}, cuda {torch.version.cuda}')
"
    # 2. the kernel tests: CPU kernels vs reference, loading, and (on a GPU) the CUDA kernels
    run tests 240 "$PY" -m pytest -q tests/cuda -m "not build" -rs -x -p no:cacheprovider
    # 3. compute-sanitizer on a small case
    if [ "$DEV" = cuda ]; then
      run sanitize 150 env TOOLS="memcheck racecheck initcheck" PYTHON="$PY" bash scripts/sanitize.sh
    fi
    # 4. the benchmark (checks the native op against the reference before timing)
    if [ "$DEV" = cuda ]; then
      run bench 240 "$PY" bench/render.py --device cuda --reps 10 --ref-reps 2 --out "$OUT/bench.json"
    else
      run bench 240 "$PY" bench/render.py --device cpu --settings tiny --reps 2 --ref-reps 1 --out "$OUT/bench.json"
    fi
    ;;
  distill)
    # Overridable for a CPU smoke test: DATASET=digits DEVICE=cpu ITERS=3 EPOCHS=2 INIT=5 ...
    DS=${DATASET:-cifar10}; IT=${ITERS:-300}; EP=${EPOCHS:-300}; IN=${INIT:-2000}
    D="--device ${DEVICE:-cuda} --data-dir ${GSDD_DATA_DIR:?set GSDD_DATA_DIR to the folder holding the data}"
    run experts 1800 $G experts "$DS" --num 4 --epochs 10 --out "$WORK/buffers" $D -q
    run dm 1800 $G distill "$DS" --algo dm --ipc 10 --init-steps "$IN" --iterations "$IT" --out "$WORK/dm10.gsd" $D -q
    run tm 1800 $G distill "$DS" --algo tm --ipc 10 --buffers "$WORK/buffers" --max-start-epoch 8 --init-steps "$IN" --iterations "$IT" --out "$WORK/tm10.gsd" $D -q
    run eval_dm 1800 $G eval "$WORK/dm10.gsd" --arch convnet --runs 3 --epochs "$EP" $D --json
    run eval_tm 1800 $G eval "$WORK/tm10.gsd" --arch convnet --runs 3 --epochs "$EP" $D --json
    run eval_rr10 1800 $G eval --baseline random-real --dataset "$DS" --ipc 10 --runs 3 --epochs "$EP" $D --json
    run eval_full 1800 $G eval --baseline full --dataset "$DS" --runs 1 --epochs $(( EP < 50 ? EP : 50 )) $D --json
    ;;
  bench)
    # Equal bytes (Gaussian vs pixel vs random real, DM, IPC 10) and the TM memory curve at the
    # paper's CIFAR-10 IPC-1 setting (300 images per step), on the CIFAR-10 pack: JSON in $OUT.
    DD="--data-dir ${GSDD_DATA_DIR:?set GSDD_DATA_DIR to the folder holding the data}"
    run equal_bytes 1800 "$PY" bench/equal_bytes.py --dataset "${DATASET:-cifar10}" $DD --ipc 10 --algos dm \
        --device "${DEVICE:-cuda}" --out "$OUT/equal_bytes.json"
    run tm_memory 1200 "$PY" bench/tm_memory.py --dataset "${DATASET:-cifar10}" $DD --ipc 1 --batch-syn 300 \
        --device "${DEVICE:-cuda}" --out "$OUT/tm_memory.json"
    ;;
  *)
    echo "usage: $0 quick|kernels|distill|bench" >&2; exit 2 ;;
esac
exit $status
