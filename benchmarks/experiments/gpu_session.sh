#!/usr/bin/env bash
# One GPU session (device tool, about 9 minutes): the training-step benchmark on CUDA, then the
# paired-seed sweep. Needs the wheels of segmentation-models-pytorch and graphviz in .whl/ (see
# ../shared/GPU.md); writes under $OUT (bench96.json, bench512.json, results/<regime>.jsonl).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT/results"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, segmentation_models_pytorch as s; print(torch.__version__, timm.__version__, s.__version__)"
timeout 100 python3 benchmarks/bench_train_step.py --batch 16 --height 96 --width 96 \
  --configurations plain,imachsr-1,imachsr-3,imachsr-5,ce-3 --json "$OUT/bench96.json"
timeout 50 python3 benchmarks/bench_train_step.py --batch 8 --height 512 --width 512 \
  --configurations plain,imachsr-3 --json "$OUT/bench512.json"
timeout 400 python3 benchmarks/experiments/run_experiments.py --regimes digits96,digits96-lowdata \
  --arms output-only,joint-spread-head-decay,ce-spread-head-decay --later-arms shipped-0.1 \
  --seeds 0-7 --workers 15 --deadline "${SWEEP_DEADLINE:-370}" --records "$OUT/results"
echo "session done"
