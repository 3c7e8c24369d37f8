#!/usr/bin/env bash
# Run on the GPU machine (device tool) from the repository root, after `source scripts/gpu/env.sh`:
# the gsplat-vs-reference tests, then the latency benchmark (bf16 and fp32, 512 px, gpu profile).
# Results go to $OUT (or ./gpu_results when OUT is unset).
set -uo pipefail
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, gsplat; print('torch', torch.__version__, 'gsplat', gsplat.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -s -p no:cacheprovider tests/test_device.py 2>&1 | tee "$OUT/test_device.log"
for dt in bf16 fp32; do
  python3 -m benchmarks.bench_latency --profile gpu --image-size 512 --iters 100 --dtype $dt --out "$OUT/latency_$dt.json" 2>&1 | tee "$OUT/latency_$dt.txt"
done
