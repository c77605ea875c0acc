#!/usr/bin/env bash
# Run compute-sanitizer (memcheck by default; also racecheck, synccheck, initcheck) on a small
# forward + backward of the gsdd CUDA kernels. Needs a GPU, the CUDA toolkit and the extension
# (prebuilt or JIT; build with DEBUG=1 for line numbers in reports).
#   bash scripts/sanitize.sh                 # memcheck
#   TOOLS="memcheck racecheck initcheck" bash scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SAN=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")}
TOOLS=${TOOLS:-memcheck}
# extra flags, e.g. SANITIZER_ARGS="--kernel-name kns=gsdd" to check only our kernels
# Build/load the extension outside the sanitizer first (a JIT build under it would be very slow).
$PY -c "import gsdd_cuda, sys; ok = gsdd_cuda.is_available('cuda'); print('gsdd CUDA kernels available:', ok, gsdd_cuda.unavailable_reason('cuda')); sys.exit(0 if ok else 1)"
CASE=$(mktemp /tmp/gsdd_sanitize_case.XXXXXX.py)
trap 'rm -f "$CASE"' EXIT
cat > "$CASE" <<'PY'
import torch, gsdd_cuda, gsdd_cuda.ops  # ops.rasterize: the native op, no backend choice
from gsdd_cuda.testing import sample_inputs
# Every input is made on the CPU and copied over (cudaMemcpy), so initcheck, which with the kernel
# filter below tracks writes by the gsdd kernels and copies only, sees it initialized.
# Sizes that are not multiples of 16, H != W, C = 1, 3 and 5 (channel groups), N > 256 (two chunks,
# more than 32 hits per tile), Gaussians across borders and off the image, both antialias modes.
for (b, n, c, h, w, kind) in [(3, 7, 3, 20, 37, "mixed"), (2, 300, 1, 33, 16, "border"),
                              (2, 5, 5, 17, 17, "mixed"), (2, 4, 3, 16, 16, "offimage")]:
    for aa in (True, False):
        params = [t.to("cuda").requires_grad_(True) for t in sample_inputs("cpu", b, n, c, h, w, kind=kind, seed=1)]
        out = gsdd_cuda.ops.rasterize(*params, b, h, w, antialias=aa)
        torch.autograd.grad(out, params, torch.randn(out.shape).to("cuda"))
xy, chol = [t.to("cuda") for t in sample_inputs("cpu", 2, 40, 3, 32, 32, seed=2)[:2]]
gsdd_cuda.project(xy, chol, 32, 32)
zero = [torch.zeros(0, k).to("cuda").requires_grad_(True) for k in (2, 3, 3, 1)]
out = gsdd_cuda.ops.rasterize(*zero, 2, 8, 8)
torch.autograd.grad(out, zero, torch.ones(out.shape).to("cuda"), allow_unused=True)
torch.cuda.synchronize()
print("sanitize case done")
PY
status=0
for tool in $TOOLS; do
  echo "== compute-sanitizer --tool $tool"
  # shellcheck disable=SC2086  # the extra flags are a list, e.g. "--kernel-name kns=gsdd"
  extra=${SANITIZER_ARGS:-}
  # initcheck also flags torch's own kernels (reads of allocator memory they never initialized),
  # and racecheck is slow on every kernel: both look at the gsdd kernels only unless SANITIZER_ARGS
  # says otherwise
  case "$tool" in initcheck|racecheck) [ -z "$extra" ] && extra="--kernel-name kns=gsdd" ;; esac
  "$SAN" --tool "$tool" --error-exitcode 1 $extra "$PY" "$CASE" || status=1
done
exit $status
