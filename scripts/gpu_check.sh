#!/usr/bin/env bash
# On a machine with a CUDA GPU: build mlpmix with its CUDA kernels, run the CUDA tests (and
# the op tests, whose CPU kernels live in the same build), time the ops and models on the GPU,
# and write the report benchmarks/results/gpu_check.md (plus gpu_timings.{md,json,png} from the
# benchmark suite's --device cuda run).
#
#   scripts/gpu_check.sh [--full]        (--full: every benchmark shape and all six models)
#
# Environment: VENV (default .venv-gpu; created with the CUDA 13.0 torch wheel if missing),
# CUDA_HOME (default /usr/local/cuda-13.0), TORCH_CUDA_ARCH_LIST (default: this GPU's).
# Exit status: 0 when the build, the tests and every timing succeeded.
set -uo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv-gpu}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-13.0}
export CUDACXX=$CUDA_HOME/bin/nvcc
export PATH=$CUDA_HOME/bin:$PATH
results=benchmarks/results
report=$results/gpu_check.md
work=$(mktemp -d)
status=0

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" &&
    "$venv/bin/pip" install -q torch==2.14.1 scikit-build-core pybind11 cmake ninja || exit 1
fi
python=$venv/bin/python
if ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: torch in $venv sees no CUDA GPU" >&2
  exit 1
fi
arch=$("$python" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}

echo "== build (MLPMIX_CUDA=1, architectures $TORCH_CUDA_ARCH_LIST)"
start=$SECONDS
if ! MLPMIX_CUDA=1 "$venv/bin/pip" install -q --no-build-isolation -C build-dir=build/gpu \
    '.[test]' >"$work/build.txt" 2>&1; then
  tail -50 "$work/build.txt" >&2
  echo "gpu_check: the CUDA build failed" >&2
  exit 1
fi
build_seconds=$((SECONDS - start))

echo "== tests"
start=$SECONDS
"$python" -m pytest tests/test_cuda.py tests/test_cuda_emulated.py tests/test_ops_dynamixer.py \
  tests/test_ops_raft_token_mixing.py tests/test_ops_cross_scale_embed.py -q -rfs \
  >"$work/tests.txt" 2>&1 || status=1
test_seconds=$((SECONDS - start))
tail -30 "$work/tests.txt"

echo "== GPU timings"
quick=--quick
[ "${1:-}" = "--full" ] && quick=
"$python" -m benchmarks.run --device cuda $quick --name gpu_timings --out "$results" || status=1

{
  echo "# GPU check"
  echo
  echo "Written by \`scripts/gpu_check.sh $*\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit"
  echo "\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`; exit status $status."
  echo
  echo "## Machine"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "$python" -c "import mlpmix, json; print(json.dumps(mlpmix.build_info(), indent=1))"
  echo '```'
  echo
  echo "## Build: ${build_seconds} s"
  echo
  echo "## Tests: ${test_seconds} s"
  echo
  echo '```'
  grep -E "passed|failed|error|SKIPPED|FAILED" "$work/tests.txt" | tail -40
  echo '```'
  echo
  echo "## Timings"
  echo
  echo "See [gpu_timings.md](gpu_timings.md) (and gpu_timings.json, gpu_timings.png)."
} >"$report"
echo "gpu_check: wrote $report (status $status)"
exit $status
