#!/usr/bin/env bash
# The trainer's CUDA checks, as one prepared script for a machine with an NVIDIA GPU (python3 with torch, numpy,
# pyarrow, rich, xxhash, tokenizers, safetensors, matplotlib and pytest installed; corpusforge itself need not be):
#   1. the trainer's tests, where the CUDA test runs instead of skipping (bf16 autocast, torch.compile, resume);
#   2. bench.trainer --device cuda: tokens/s and MFU of tiny and gpt2-124m against a plain loop, and nanoGPT's
#      shakespeare-char GPU anchor (the `small` preset, 5000 steps), into bench/results/trainer-cuda.json.
# Usage: bash bench/device_check.sh [OUT_DIR]. The bench reads tiny-shakespeare from $CORPUSFORGE_SHARED_DATA
# (books/tinyshakespeare/input.txt); on a machine without ../shared/data, copy just that file into a folder and
# point the variable there. The tests run without real data (those that need it skip). About 8 minutes on one H200.
set -uo pipefail
out=${1:-${OUT:-build/device-check}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$out/gpu.txt"
CORPUSFORGE_SHARED_DATA=/nonexistent $python -m pytest -q -p no:cacheprovider tests/test_trainer_model.py \
  tests/test_trainer.py 2>&1 | tee "$out/pytest.log"
tests=${PIPESTATUS[0]}
$python -m bench.trainer --device cuda 2>&1 | tee "$out/bench.log"
bench=${PIPESTATUS[0]}
cp bench/results/trainer-cuda.json "$out/" 2>/dev/null
echo "pytest exit $tests, bench exit $bench"
exit $(( tests || bench ))
