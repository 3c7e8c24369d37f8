#!/usr/bin/env bash
# Re-train and re-evaluate ONE method on the GPU against the same `gpu` dataset (rebuilt
# deterministically: the split hash must match the first run's), for a fixed number of steps.
#   setsid nohup bash benchmarks/gpu_rerun.sh splatter-image 1300 > gpu_run/session.log 2>&1 &
# Then: device tests and the latency benchmark on an otherwise idle GPU. Packs gpu_run/results.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
METHOD=$1; STEPS=$2
source benchmarks/gpu_env.sh
for s in build_assets render shards; do stamp "$s"; python3 -m pipelines.$s > "$RUN/logs/$s.log" 2>&1 || { stamp "$s FAILED"; exit 1; }; done
stamp "split hash $(python3 -c "import json; print(json.load(open('data/gpu/shards/splits.json'))['splits']['test']['hash'])")"
export OMP_NUM_THREADS=4
stamp "train $METHOD for $STEPS steps"; python3 -m benchmarks.train --method "$METHOD" --no-resume --max-steps "$STEPS" > "$RUN/logs/train_$METHOD.log" 2>&1
stamp "evaluate $METHOD"; python3 -m benchmarks.run --method "$METHOD" > "$RUN/logs/eval_$METHOD.log" 2>&1 || stamp "evaluate FAILED"
stamp "device tests"; python3 -m pytest -q -s -p no:cacheprovider tests/test_device.py > "$RUN/test_device.log" 2>&1
stamp "latency"
for dt in bf16 fp32; do
  python3 -m benchmarks.bench_latency --profile gpu --image-size 512 --iters 100 --dtype $dt --out "$RUN/latency_$dt.json" > "$RUN/latency_$dt.txt" 2>&1
done
tar czf "$RUN/results.tgz" "$RUN"/*.txt "$RUN"/*.json "$RUN"/*.log "$RUN/logs" data/gpu/eval/$METHOD data/gpu/train/$METHOD/train_log.csv \
  data/gpu/train/$METHOD/metrics.json data/gpu/shards/splits.json 2>/dev/null
stamp "DONE"
