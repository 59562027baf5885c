#!/usr/bin/env bash
# The GPU-host checks and benchmarks as one prepared script (each part bounded by its own timeout).
#
#   bash bench/device_session.sh                  # every part, in this order (about 9 minutes on one H100)
#   bash bench/device_session.sh checks search    # only some parts
#
# Parts:
#   checks    bench/gpu_checks.py: cuDNN vs XLA attention, encoder vs PyTorch, search (XLA and fused kernel) vs
#             torch.topk, bf16 train steps
#   search    bench/search_bench.py --n 400000 --dim 1024 --k 4 --dtype bfloat16 (the retrieval GPU goal, PyTorch beside):
#             the XLA search and the fused Pallas kernel at four tilings
#   eval      bench/eval_bench.py --model large (128 x 384 against PyTorch eager bf16, and the length mix)
#   train     bench/train_bench.py --model large --shapes 32x384 (against PyTorch eager and torch.compile)
#   train512  bench/train_bench.py --model large --shapes 32x512 --no-torch (the 80 GB fit)
#   demo      the README's demo pipeline on the GPU (python -m stilts_jax.main --config=configs/demo.py)
#   tests     the fast test suite on this host's CPU with its jax (the newer-jax compatibility check)
#
# Logs go to $OUT/<part>.log (OUT defaults to ./device_out); $OUT/summary.txt holds the versions and a line per part.
# The default parts' limits add up to more than one 10-minute device call: run them as two calls,
# `checks search eval` then `train train512` (docs/PERFORMANCE.md).
# Packages the host lacks (ml_collections, tensorboardX, ...) travel as wheels in .whl/ (tools/device_wheels.sh
# fetches them here); they are installed into /tmp/site first when .whl/ (or $WHEELS) holds any.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PYTHON=${PYTHON:-python3}

WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(checks search eval train train512)
for part in "${parts[@]}"; do
  case $part in
    checks | search | eval | train | train512 | demo | tests) ;;
    *) echo "unknown part $part; parts: checks search eval train train512 demo tests" >&2; exit 2 ;;
  esac
done

run_part() {  # name, seconds, command...
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS
  echo "=== $name: $* (limit ${seconds}s)"
  timeout --kill-after=10 "$seconds" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$OUT/summary.txt"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import sys, jax, flax, optax, orbax.checkpoint as o; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
} 2>&1 | tee "$OUT/summary.txt"

# SMOKE=1: tiny sizes on any machine (tests/test_bench_smoke.py runs it on CPU to check this script itself).
if [ "${SMOKE:-0}" = 1 ]; then
  checks=(--small); search=(--n 2000 --dim 64 --k 4 --repeats 1 --skip faiss --kernels xla fused)
  eval=(--model tiny --shapes 8x64 --batches 1 --mix-examples 32 --mix-batch 8 --max-len 64)
  train=(--model tiny --shapes 4x64 --warmup 1 --steps 2 --no-torch-compile); train512=(--model tiny --shapes 4x64 --warmup 1 --steps 2 --no-torch)
else
  checks=(); search=(--n 400000 --dim 1024 --k 4 --dtype bfloat16 --skip faiss --repeats 2 --kernels xla fused
                     --fused-tiles "128,128,0,8,3" "64,128,0,4,3" "128,256,0,8,3" "256,128,0,8,3")
  eval=(--model large); train=(--model large --shapes 32x384); train512=(--model large --shapes 32x512 --no-torch)
fi

for part in "${parts[@]}"; do
  case $part in
    checks) run_part checks 150 "$PYTHON" bench/gpu_checks.py "${checks[@]}" ;;
    search) run_part search 180 "$PYTHON" bench/search_bench.py "${search[@]}" ;;
    eval) run_part eval 180 "$PYTHON" bench/eval_bench.py "${eval[@]}" ;;
    train) run_part train 300 "$PYTHON" bench/train_bench.py "${train[@]}" ;;
    train512) run_part train512 150 "$PYTHON" bench/train_bench.py "${train512[@]}" ;;
    demo) run_part demo 240 "$PYTHON" -m stilts_jax.main --config=configs/demo.py --config.workdir=/tmp/stilts_demo_workdir ;;
    tests) JAX_PLATFORMS=cpu run_part tests 420 "$PYTHON" -m pytest -q -x -p no:cacheprovider -n 12 tests ;;
  esac
done
echo "=== summary"; cat "$OUT/summary.txt"
