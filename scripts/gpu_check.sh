#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA-marked tests, then the benchmark (the peer configuration; plain attention and
# copy + coverage) in float32 and in bf16 autocast. About 5 minutes on one GPU; the figures go to OUTPUT_DIR.
#
#   bash scripts/gpu_check.sh [OUTPUT_DIR]        # default: gpu_check/
set -euo pipefail
out=${1:-gpu_check}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY' | tee "$out/device.txt"
import torch, transformers
assert torch.cuda.is_available(), "no CUDA GPU visible"
print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
      f"{torch.backends.cudnn.version()}); transformers {transformers.__version__}")
PY
tests=0
python3 -m pytest -q -m cuda tests/test_cuda_rnn_seq2seq.py -p no:cacheprovider > "$out/cuda_tests.txt" 2>&1 || tests=$?
cat "$out/cuda_tests.txt"
for dtype in float32 bfloat16; do
  python3 scripts/benchmark.py --device cuda --dtype "$dtype" --threads 4 --variants plain copy+coverage \
    --json "$out/benchmark_$dtype.json" 2>&1 | tee "$out/benchmark_$dtype.txt"
done
exit "$tests"  # the benchmark runs either way; a failing test still fails the check
