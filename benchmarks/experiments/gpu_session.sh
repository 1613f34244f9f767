#!/usr/bin/env bash
# One GPU session (device tool, at most about 9 minutes): the training-step benchmark on CUDA at
# both sizes, then the paired-seed runs of the arms in $ARMS (both regimes, seeds 0-7). Needs the
# wheels of segmentation-models-pytorch and graphviz in .whl/ (see ../shared/GPU.md); writes under
# $OUT: bench96.json, bench512.json, results/<regime>.jsonl (new runs only) and log.txt.
set -u
ARMS=${ARMS:-ce-spread-head64-decay,ce-spread-head-decay-no-ne}
LIMIT=${LIMIT:-460}  # seconds the whole script may take
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT/results"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, segmentation_models_pytorch as s; print(torch.__version__, timm.__version__, s.__version__)"
timeout 170 python3 benchmarks/bench_train_step.py --batch 16 --height 96 --width 96 \
  --configurations plain,imachsr-1,imachsr-3,imachsr-5,head64-3,head64-no-ne-3,floor-3 \
  --json "$OUT/bench96.json"
timeout 120 python3 benchmarks/bench_train_step.py --batch 8 --height 512 --width 512 \
  --configurations plain,imachsr-3,head64-3,head64-no-ne-3,floor-3 --json "$OUT/bench512.json"
echo "benchmarks done at ${SECONDS}s"
timeout $((LIMIT - SECONDS)) python3 benchmarks/experiments/run_experiments.py \
  --regimes digits96,digits96-lowdata --arms "$ARMS" --seeds 0-7 --workers 16 \
  --deadline $((LIMIT - SECONDS - 15)) --records "$OUT/results"
echo "session done at ${SECONDS}s"
