#!/usr/bin/env bash
# The first minutes on a GPU machine (issue #27): five one-minute checks of the GPU set-ups, written as a
# markdown table to OUT/gpu_check.md (default runs/gpu_check/).
#
#   bench/gpu_check.sh                       # one or more CUDA GPUs; ~5 minutes on one H100 with SmolLM2-135M
#   bench/gpu_check.sh --model PATH_OR_ID    # a 1B-8B Llama/Qwen/Mistral of your own
#   bench/gpu_check.sh --check               # dry run on CPU: arguments, recipes, configs, model on meta, commands
#
# Options: --out DIR, --timeout SECONDS (per step, default 150). GPU_CHECK_GPUS=N runs the FSDP check on N GPUs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ " $* " != *" --check "* ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  export GPU_CHECK_GPUS="${GPU_CHECK_GPUS:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}"
fi
exec python "$here/gpu_check.py" "$@"
