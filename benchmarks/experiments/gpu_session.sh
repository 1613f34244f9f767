#!/usr/bin/env bash
# One GPU session (device tool): the paired-seed runs first, then the training-step benchmark on
# CUDA at both sizes. Needs the wheels of segmentation-models-pytorch and graphviz in .whl/ (see
# ../shared/GPU.md). The runs already in docs/results/*.jsonl are skipped; $OUT/results/ gets
# those files with the new runs appended, $OUT/bench96.json and bench512.json the benchmark rows,
# $OUT/log.txt everything printed. What to run comes from the environment (defaults below); the
# benchmarks alone take about 8 minutes, each run of an arm about 100 s, 16 at a time.
set -u
# The arms to run: none by default, as every arm in docs/results.md has its 8 seeds per regime.
ARMS=${ARMS:-}
REGIMES=${REGIMES:-digits96,digits96-lowdata}
RUNS_LIMIT=${RUNS_LIMIT:-250}  # seconds for the runs; none starts that would not end in time
BENCH96=${BENCH96:-plain,imachsr-3,ne-3,floor-3}
BENCH512=${BENCH512:-plain,imachsr-3,ne-3,floor-3}
# Rounds of each configuration, each in a new process: a step's time varies between processes
# (96x96: 11-18 ms for output-only on an H100; 512x512: 30.5 and 35.8 ms for the same step).
REPEATS96=${REPEATS96:-4}
REPEATS512=${REPEATS512:-3}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT/results" && cp docs/results/*.jsonl "$OUT/results/"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, segmentation_models_pytorch as s; print(torch.__version__, timm.__version__, s.__version__)"
if [ -n "$ARMS" ]; then
  timeout "$RUNS_LIMIT" python3 benchmarks/experiments/run_experiments.py --regimes "$REGIMES" \
    --arms "$ARMS" --seeds 0-7 --workers 16 --deadline $((RUNS_LIMIT - 10)) --records "$OUT/results"
  echo "runs done at ${SECONDS}s"
fi
timeout 240 python3 benchmarks/bench_train_step.py --batch 8 --height 512 --width 512 \
  --configurations "$BENCH512" --repeats "$REPEATS512" --json "$OUT/bench512.json"
timeout 240 python3 benchmarks/bench_train_step.py --batch 16 --height 96 --width 96 \
  --configurations "$BENCH96" --repeats "$REPEATS96" --json "$OUT/bench96.json"
echo "session done at ${SECONDS}s"
