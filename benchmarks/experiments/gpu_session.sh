#!/usr/bin/env bash
# One GPU session (device tool): paired-seed runs by a plan, then, if asked, the training-step
# benchmark on CUDA. Needs the wheels of segmentation-models-pytorch and graphviz in .whl/ (see
# ../shared/GPU.md). Runs already in docs/results/*.jsonl are skipped; $OUT/results/ gets those
# files with the new runs appended, $OUT/log.txt everything printed.
#
# PLAN: steps separated by ";", each "REGIME,REGIME:ARM,ARM", run in order under one deadline;
# about 100 s a run at 96x96, 16 at a time. The default plan is what the CPU cannot do in a
# session: the harder ShapeScenes regimes first (issue 27: two families on it), then today's
# default taps and the block-end taps on the 96x96 ResNet-18 regimes (whether a tap inside a
# residual block trains better than its block's output, and the headline's evidence for the
# current default), ShapeScenes' expert and random taps, and the heterogeneous tap losses of
# issue 24 on the 96x96 regimes (the CPU ran them at 64x64). The paper's ablations ran on the
# CPU. Merge the CPU's newest records into docs/results/ first: runs recorded there are skipped.
set -u
PLAN=${PLAN:-"unet-scenes128,convnext-fpn-scenes128:output-only,default-auto;digits96,digits96-lowdata:default-auto,default-block-end;unet-scenes128,convnext-fpn-scenes128:default-expert,default-random;digits96,digits96-lowdata:joint-batch-auto,rmi-auto,contrast-auto"}
RUNS_LIMIT=${RUNS_LIMIT:-540}  # seconds for all the runs; none starts that would not end in time
BENCH=${BENCH:-}               # e.g. "plain,imachsr-3,floor-3" to benchmark the step afterwards
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT/results" && cp docs/results/*.jsonl "$OUT/results/"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, timm, segmentation_models_pytorch as s; print(torch.__version__, timm.__version__, s.__version__)"
IFS=';' read -ra STEPS <<< "$PLAN"
for step in "${STEPS[@]}"; do
  left=$((RUNS_LIMIT - SECONDS))
  [ "$left" -gt 60 ] || { echo "no time left for: $step"; continue; }
  timeout "$left" python3 benchmarks/experiments/run_experiments.py --regimes "${step%%:*}" \
    --arms "${step#*:}" --seeds 0-7 --workers 16 --deadline $((left - 10)) --records "$OUT/results"
  echo "step done at ${SECONDS}s: $step"
done
if [ -n "$BENCH" ]; then
  timeout 240 python3 benchmarks/bench_train_step.py --batch 8 --height 512 --width 512 \
    --configurations "$BENCH" --repeats 3 --json "$OUT/bench512.json"
fi
echo "session done at ${SECONDS}s"
