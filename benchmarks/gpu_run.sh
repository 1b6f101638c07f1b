#!/usr/bin/env bash
# One GPU session in one command (about 8 minutes on one H100/H200-class GPU), each stage writing
# its results under $OUT before the next starts, so a run cut short still returns something:
#   1. the CUDA tests (tests whose name or parameters mention cuda),
#   2. bench_step.py on the GPU (eager, compiled, reference design),
#   3. bench_data.py with the crops made on the GPU,
#   4. the short masking ablation (configs/experiments/masking_gpu_short.yaml) in the time left.
# Fashion-MNIST must be reachable offline: carry its IDX files in the ignored folder
# data_cache/fashion-mnist (the run tool's carry list) or set ATTMASK_DATA_DIR.
#   bash benchmarks/gpu_run.sh            # on the GPU machine; OUT=gpu_results by default
#   bash benchmarks/gpu_run.sh --smoke    # the same stages on CPU with tiny sizes (CI)
set -u
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-gpu_results}
PY=${PY:-.venv/bin/python}
BUDGET=${BUDGET:-480}   # seconds for all stages together
mkdir -p "$OUT"
if [ -z "${ATTMASK_DATA_DIR:-}" ] && [ -d data_cache/fashion-mnist ]; then
  export ATTMASK_DATA_DIR="$PWD/data_cache/fashion-mnist"
fi
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

stage() {  # stage NAME LIMIT_SECONDS COMMAND...: run it under a time limit, log it, record rc and seconds
  local name=$1 limit=$2; shift 2
  local began=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(( $(date +%s) - began ))" | tee -a "$OUT/stages.txt"
}

{ echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; date -u; 
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
} > "$OUT/environment.txt" 2>&1
: > "$OUT/stages.txt"

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  stage tests 300 "$PY" -m pytest -q -p no:cacheprovider tests/data/test_batched.py -k "cpu"
  stage bench_step 300 "$PY" benchmarks/bench_step.py --smoke --device cpu --out "$OUT"
  stage bench_data 300 "$PY" benchmarks/bench_data.py --smoke --device cpu --out "$OUT"
  stage ablation 600 "$PY" -m attmask.cli.main experiment masking --preset gpu_short --out "$OUT/ablation" \
    --data digits --set "eval.num_workers=0" --set "eval.linear_epochs=2" --set "eval.shots=[1]" \
    --set "eval.fewshot_repeats=1" --set "eval.train_per_class=20" --set "arms=[block, attmask_high]" \
    --pretrain-set model.depth=1 --pretrain-set model.patch_size=4 --pretrain-set model.stem_channels=0 \
    --pretrain-set data.crops=tiny --pretrain-set data.num_local=2 --pretrain-set data.local_size=8 \
    --pretrain-set data.batch_size=8 --pretrain-set data.num_workers=0 --pretrain-set optim.epochs=1 \
    --pretrain-set train.max_steps_per_epoch=2 --pretrain-set train.precision=fp32 \
    --pretrain-set train.knn_train_samples=100 --pretrain-set train.knn_test_samples=50
else
  DEVICE=cuda
  stage tests 90 "$PY" -m pytest -q -p no:cacheprovider tests -k cuda
  stage bench_step 150 "$PY" benchmarks/bench_step.py --device cuda --out "$OUT"
  stage bench_data 60 "$PY" benchmarks/bench_data.py --device cuda --out "$OUT"
  stage ablation "$(left)" "$PY" -m attmask.cli.main experiment masking --preset gpu_short --out "$OUT/ablation"
  "$PY" -m attmask.cli.main experiment masking --preset gpu_short --out "$OUT/ablation" --report-only \
    >> "$OUT/ablation.log" 2>&1
fi
echo "device $DEVICE, total $(( $(date +%s) - START )) s" | tee -a "$OUT/stages.txt"
