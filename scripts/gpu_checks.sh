#!/usr/bin/env bash
# The GPU checks the project owes, batched so a session with a lent H100/H200 spends few calls.
# Three phases fit one 15-minute lease (about 4 + 5 + 5 minutes):
#
#   OUT=<dir> bash scripts/gpu_checks.sh quick     # <= 4 min on an H100, the JIT build included:
#       build (a missing extension fails), tests/cuda (multi-chunk 128² case, GPU tile boxes,
#       determinism, CPU vs CUDA), compute-sanitizer memcheck/racecheck/initcheck on a small case,
#       and the render benchmark ($OUT/bench.json)
#   OUT=<dir> bash scripts/gpu_checks.sh suite     # <= 5 min: the pipeline tests with
#       GSDD_TEST_DEVICE=cuda (init, DM/DC/TM Gaussian + pixel, experts, eval, export, the API,
#       bit-identical --resume, kill-and-resume, torchrun with NCCL); one JSON line per finished test
#       in $OUT/suite.jsonl, JUnit XML in $OUT/suite.xml when pytest finishes
#   GSDD_DATA_DIR=<dir with cifar10-pack.npz> OUT=<dir> bash scripts/gpu_checks.sh accuracy   # <= 5 min:
#       DM at IPC 10 and TM at IPC 1 (a few experts) on the CIFAR-10 pack, iterations chosen from a
#       measured per-iteration time so each run fits its share, each evaluated with --vs-random
#       (random real images of the same bytes); JSON in $OUT/accuracy/
#   OUT=<dir> bash scripts/gpu_checks.sh distill   # longer DM/TM runs on the CIFAR-10 pack + evals (not timed)
#   OUT=<dir> bash scripts/gpu_checks.sh bench     # bench/equal_bytes.py (DM, IPC 10) and bench/tm_memory.py
#   CPU_SMOKE=1 OUT=<dir> bash scripts/gpu_checks.sh quick|suite|accuracy   # the same steps on CPU with tiny
#       settings on the built-in digits set (proves the plumbing; no GPU steps, no GPU numbers)
#
# Run from anywhere (it cds to the repo root). Needs the project's Python dependencies (pydantic,
# typer, pytest, ...), torch with CUDA, nvcc and ninja. The device tool returns few files from $OUT,
# so each phase writes at most 8: $OUT/<phase>.log (every step's output), $OUT/summary.txt (exit
# code and seconds per step), $OUT/<phase>.steps.jsonl (the same as JSON, after a first line with
# date, commit, device and command) and the phase's results. Every step writes its result the moment
# it finishes, so a timeout keeps what finished. scripts/results_table.py turns $OUT into the rows of
# docs/results.md. Sets, buffers and the extension build stay in $WORK. GSDD_COMMIT names the commit
# where the copy has no .git. `kernels` is an alias of `quick`. Exit code: 0 if every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=${WORK:-/tmp/gsdd-gpu}
PHASE=${1:-quick}
[ "$PHASE" = kernels ] && PHASE=quick
case "$PHASE" in quick|suite|accuracy|distill|bench) ;; *)
  echo "usage: $0 quick|kernels|suite|accuracy|distill|bench   (CPU_SMOKE=1: quick, suite, accuracy on CPU)" >&2
  exit 2 ;;
esac
SMOKE=${CPU_SMOKE:-0}
if [ "$SMOKE" = 1 ]; then DEV=cpu; else DEV=cuda; fi
mkdir -p "$OUT" "$WORK"
LOG="$OUT/$PHASE.log"
STEPS="$OUT/$PHASE.steps.jsonl"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export GSDD_REQUIRE_BUILD=1          # tests: a missing extension is a failure, never a skip
export GSDD_EXT_DIR=${GSDD_EXT_DIR:-$WORK/ext}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
G="$PY -m gsdd_cli"
status=0
T0=$(date +%s)
DEADLINE=0                           # seconds after T0 by which every step must end (0: none)

# The phase's first record: where the numbers came from.
COMMIT=${GSDD_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
[ -z "${GSDD_COMMIT:-}" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && COMMIT="$COMMIT+dirty"
DEVNAME=$("$PY" -c "
import os, torch
print(torch.cuda.get_device_name(0) if '$DEV' == 'cuda' and torch.cuda.is_available() else f'cpu ({os.cpu_count()} cores)')
" 2>/dev/null || echo unknown)
printf '{"event": "start", "phase": "%s", "smoke": %s, "date": "%s", "commit": "%s", "device": "%s", "command": "%s"}\n' \
  "$PHASE" "$([ "$SMOKE" = 1 ] && echo true || echo false)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$COMMIT" "$DEVNAME" \
  "$([ "$SMOKE" = 1 ] && echo 'CPU_SMOKE=1 ')bash scripts/gpu_checks.sh $PHASE" >> "$STEPS"

record() {  # record NAME RC SECONDS: one line to summary.txt and one JSON line to $STEPS
  echo "[$1] rc=$2 seconds=$3" | tee -a "$OUT/summary.txt"
  printf '{"event": "step", "phase": "%s", "step": "%s", "rc": %d, "seconds": %d}\n' "$PHASE" "$1" "$2" "$3" >> "$STEPS"
  [ "$2" -eq 0 ] || status=1
}

limit_for() {  # limit_for SECONDS: the step's limit, cut to what is left before $DEADLINE
  local limit=$1
  if [ "$DEADLINE" -gt 0 ]; then
    local left=$(( DEADLINE - ($(date +%s) - T0) ))
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  echo "$limit"
}

run() {  # run NAME SECONDS CMD...: output appended to $LOG; rc 124 = its time limit, 125 = no time left
  local name=$1 limit; limit=$(limit_for "$2"); shift 2
  local t0; t0=$(date +%s)
  echo "===== $name (limit ${limit}s): $*" >> "$LOG"
  if [ "$limit" -lt 5 ]; then
    echo "skipped: the phase's time is up" >> "$LOG"; record "$name" 125 0; return
  fi
  timeout "$limit" "$@" >> "$LOG" 2>&1
  record "$name" $? $(( $(date +%s) - t0 ))
}

run_json() {  # run_json NAME SECONDS FILE CMD...: like run, stdout kept as FILE (renamed into place on success)
  local name=$1 limit file=$3; limit=$(limit_for "$2"); shift 3
  local t0; t0=$(date +%s)
  echo "===== $name (limit ${limit}s, stdout to $file): $*" >> "$LOG"
  if [ "$limit" -lt 5 ]; then
    echo "skipped: the phase's time is up" >> "$LOG"; record "$name" 125 0; return
  fi
  timeout "$limit" "$@" > "$file.part" 2>> "$LOG"
  local rc=$?
  if [ $rc -eq 0 ]; then mv "$file.part" "$file"; else cat "$file.part" >> "$LOG"; rm -f "$file.part"; fi
  record "$name" $rc $(( $(date +%s) - t0 ))
}

build_step() {  # both libraries (JIT, cached in $GSDD_EXT_DIR); unavailable = failure
  run build "$1" "$PY" -c "
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
}

plan_iterations() {  # plan_iterations NAME PROBE_LOG PROBE_SECONDS BUDGET_S CAP: iterations that fit BUDGET_S
  # From the probe run's log: the per-iteration time (median, the first iteration left out when there
  # are more) and its fixed cost (start-up, data, init = the probe's wall time minus its iterations).
  "$PY" - "$@" "$A/plan.jsonl" <<'PY'
import json, statistics, sys
name, log, wall, budget, cap, plan = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rows = [json.loads(line) for line in open(log) if line.strip()]
its = [r["seconds"] for r in rows if r["event"] == "iter"]
per = statistics.median(its[1:] if len(its) > 1 else its)
fixed = max(0.0, wall - sum(its))
n = max(1, min(cap, int((budget - fixed) / (per * 1.1))))  # 10 % headroom
row = {"run": name, "probe_iterations": len(its), "seconds_per_iteration": round(per, 5),
       "fixed_seconds": round(fixed, 2), "budget_seconds": budget, "cap": cap, "iterations": n}
with open(plan, "a") as f:
    f.write(json.dumps(row) + "\n")
print(n)
PY
}

# The pipeline tests the suite phase runs (every one takes the `device` fixture of tests/conftest.py).
SUITE_DEFAULT="tests/distill/test_algorithms.py tests/distill/test_pixel_runs.py tests/distill/test_resume.py
tests/distill/test_kill_resume.py tests/distill/test_experts.py tests/distill/test_cached_experts.py
tests/distill/test_cli.py tests/distill/test_quality.py tests/sets/test_fit.py tests/sets/test_pixels.py
tests/test_evaluate.py tests/test_cli_eval.py tests/test_fair_eval.py tests/test_export.py tests/test_api.py
tests/teacher/test_sre2l.py tests/sets/test_init_units.py tests/data/test_imagenet1k.py"
SUITE_SMOKE="tests/distill/test_resume.py::test_dm_resume_after_stop_is_bit_identical tests/test_export.py
tests/distill/test_quality.py::test_torchrun_one_process_forms_a_group"

case "$PHASE" in
  quick)
    [ "$DEV" = cuda ] && run nvidia_smi 30 nvidia-smi
    # 1. build both libraries
    build_step 150
    # 2. the kernel tests: CPU kernels vs reference, loading, and (on a GPU) the CUDA kernels
    run tests 90 "$PY" -m pytest -q tests/cuda -m "not build" -rs -x -p no:cacheprovider
    # 3. compute-sanitizer on a small case
    if [ "$DEV" = cuda ]; then
      run sanitize 90 env TOOLS="memcheck racecheck initcheck" PYTHON="$PY" bash scripts/sanitize.sh
    fi
    # 4. the benchmark (checks the native op against the reference before timing)
    if [ "$DEV" = cuda ]; then
      run bench 90 "$PY" bench/render.py --device cuda --reps 10 --ref-reps 2 --out "$OUT/bench.json"
    else
      run bench 120 "$PY" bench/render.py --device cpu --settings tiny --reps 2 --ref-reps 1 --out "$OUT/bench.json"
    fi
    ;;
  suite)
    DEADLINE=${SUITE_SECONDS:-300}
    [ "$DEV" = cuda ] && build_step 120   # cached after `quick`; its time is not the tests'
    if [ "$SMOKE" = 1 ]; then TESTS=${SUITE_TESTS:-$SUITE_SMOKE}; else TESTS=${SUITE_TESTS:-$SUITE_DEFAULT}; fi
    rm -f "$OUT/suite.jsonl" "$OUT/suite.xml"
    # shellcheck disable=SC2086  # TESTS is a list of test ids
    run tests "$DEADLINE" env GSDD_TEST_DEVICE="$DEV" GSDD_TEST_REPORT="$OUT/suite.jsonl" \
        "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/suite.xml" $TESTS
    ;;
  accuracy)
    # Shares (seconds) of the phase's ACCURACY_SECONDS (default 290); each run's iterations come from a
    # probe of a few iterations. Everything is overridable (DM_BUDGET=120 ...). CPU_SMOKE: digits, tiny.
    A="$OUT/accuracy"; mkdir -p "$A"; rm -f "$A/plan.jsonl"
    if [ "$SMOKE" = 1 ]; then
      DS=digits; DD="--data-dir $WORK/data"
      : "${DM_INIT_STEPS:=5}" "${DM_PROBE:=2}" "${DM_BUDGET:=8}" "${DM_CAP:=10}" "${DM_FLAGS:=--batch-real 16}"
      : "${TM_EXPERTS:=1}" "${TM_EXPERT_EPOCHS:=2}" "${TM_INIT_STEPS:=5}" "${TM_PROBE:=2}" "${TM_BUDGET:=8}"
      : "${TM_CAP:=10}" "${TM_FLAGS:=--syn-steps 4 --batch-syn 10 --expert-epochs 1 --max-start-epoch 1}"
      : "${EVAL_EPOCHS:=2}" "${EVAL_RUNS:=1}" "${ACCURACY_SECONDS:=240}"
    else
      DS=cifar10
      DD="--data-dir ${GSDD_DATA_DIR:?set GSDD_DATA_DIR to the folder holding cifar10-pack.npz}"
      if [ ! -f "$GSDD_DATA_DIR/cifar10-pack.npz" ] && [ ! -d "$GSDD_DATA_DIR/cifar-10-batches-py" ]; then
        echo "no $GSDD_DATA_DIR/cifar10-pack.npz" >&2; exit 2
      fi
      : "${DM_INIT_STEPS:=1000}" "${DM_PROBE:=4}" "${DM_BUDGET:=60}" "${DM_CAP:=20000}" "${DM_FLAGS:=}"
      : "${TM_EXPERTS:=4}" "${TM_EXPERT_EPOCHS:=6}" "${TM_INIT_STEPS:=1000}" "${TM_PROBE:=3}" "${TM_BUDGET:=50}"
      : "${TM_CAP:=15000}" "${TM_FLAGS:=--expert-epochs 2 --max-start-epoch 4}"
      : "${EVAL_EPOCHS:=300}" "${EVAL_RUNS:=2}" "${ACCURACY_SECONDS:=290}"
    fi
    DEADLINE=$ACCURACY_SECONDS
    D="--device $DEV $DD"
    EVAL="--epochs $EVAL_EPOCHS --runs $EVAL_RUNS --vs-random $D --json -q"
    rm -rf "$WORK/acc"; mkdir -p "$WORK/acc"; W="$WORK/acc"
    # DM, IPC 10: fit once, probe a few iterations from that fit, then as many as fit DM_BUDGET
    run dm_init 90 $G init "$DS" --ipc 10 --steps "$DM_INIT_STEPS" --out "$W/dm-init.gsd" $D -q
    t=$(date +%s)
    # shellcheck disable=SC2086
    run dm_probe 60 $G distill "$DS" --algo dm --ipc 10 --init "$W/dm-init.gsd" --iterations "$DM_PROBE" $DM_FLAGS \
        --out "$W/dm-probe.gsd" $D -q
    N=$(plan_iterations dm "$W/dm-probe.gsd.log.jsonl" $(( $(date +%s) - t )) "$DM_BUDGET" "$DM_CAP" 2>> "$LOG") || N=
    if [ -n "$N" ]; then
      # shellcheck disable=SC2086
      run_json dm $(( DM_BUDGET + 30 )) "$A/dm-distill.json" $G distill "$DS" --algo dm --ipc 10 \
          --init "$W/dm-init.gsd" --iterations "$N" $DM_FLAGS --out "$W/dm.gsd" $D --json -q
      run_json eval_dm 90 "$A/dm-eval.json" $G eval "$W/dm.gsd" $EVAL
    else
      record dm_plan 1 0
    fi
    # TM, IPC 1: a few short experts, then the same probe-and-fit
    run experts 90 $G experts "$DS" --num-experts "$TM_EXPERTS" --epochs "$TM_EXPERT_EPOCHS" --out "$W/buffers" $D -q
    run tm_init 60 $G init "$DS" --ipc 1 --steps "$TM_INIT_STEPS" --out "$W/tm-init.gsd" $D -q
    t=$(date +%s)
    # shellcheck disable=SC2086
    run tm_probe 60 $G distill "$DS" --algo tm --ipc 1 --buffers "$W/buffers" --init "$W/tm-init.gsd" \
        --iterations "$TM_PROBE" $TM_FLAGS --out "$W/tm-probe.gsd" $D -q
    N=$(plan_iterations tm "$W/tm-probe.gsd.log.jsonl" $(( $(date +%s) - t )) "$TM_BUDGET" "$TM_CAP" 2>> "$LOG") || N=
    if [ -n "$N" ]; then
      # shellcheck disable=SC2086
      run_json tm $(( TM_BUDGET + 30 )) "$A/tm-distill.json" $G distill "$DS" --algo tm --ipc 1 --buffers "$W/buffers" \
          --init "$W/tm-init.gsd" --iterations "$N" $TM_FLAGS --out "$W/tm.gsd" $D --json -q
      run_json eval_tm 90 "$A/tm-eval.json" $G eval "$W/tm.gsd" $EVAL
    else
      record tm_plan 1 0
    fi
    ;;
  distill)
    # Overridable for a CPU smoke test: DATASET=digits DEVICE=cpu ITERS=3 EPOCHS=2 INIT=5 ...
    DS=${DATASET:-cifar10}; IT=${ITERS:-300}; EP=${EPOCHS:-300}; IN=${INIT:-2000}
    D="--device ${DEVICE:-cuda} --data-dir ${GSDD_DATA_DIR:?set GSDD_DATA_DIR to the folder holding the data}"
    run experts 1800 $G experts "$DS" --num-experts 4 --epochs 10 --out "$WORK/buffers" $D -q
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
    # ImageNet-1K at 224²: recovery / evaluation / init steps timed here, hours projected (no data needed)
    run imagenet_scale 600 "$PY" bench/imagenet_scale.py --device "${DEVICE:-cuda}" --out "$OUT/imagenet_scale.json"
    ;;
esac
echo "[$PHASE] done: status=$status seconds=$(( $(date +%s) - T0 ))" | tee -a "$OUT/summary.txt"
exit $status
