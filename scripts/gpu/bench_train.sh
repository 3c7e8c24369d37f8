#!/usr/bin/env bash
# Training-throughput benchmark on a lent GPU machine (issue 10): renders a small `gpu`-profile dataset (HEADS heads,
# same render settings) on the machine's cores, then runs the device tests and benchmarks/bench_train.py.
#   setsid nohup bash scripts/gpu/bench_train.sh [HEADS] > gpu_run/bench.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
HEADS=${1:-64}
source scripts/gpu/env.sh
ROOTB=gpu_run/bench_root
mkdir -p $ROOTB/data/ict && cp data/ict/ict_model.npz $ROOTB/data/ict/
python3 - "$ROOTB" "$HEADS" <<'PY'
import sys, yaml
doc = yaml.safe_load(open("params.yaml"))
doc["profile"] = "gpu"
doc["profiles"]["gpu"]["assets"]["n_identities"] = int(sys.argv[2])
doc["profiles"]["gpu"]["photos"]["builtin_astronaut"] = False  # no mediapipe wheel on the device machine
open(f"{sys.argv[1]}/params.yaml", "w").write(yaml.safe_dump(doc, sort_keys=False))
PY
for s in build_assets render captures shards; do
  stamp "$s"; python3 -m pipelines.$s --params $ROOTB/params.yaml --profile gpu > "$RUN/logs/$s.log" 2>&1 || { stamp "$s FAILED"; tail -20 "$RUN/logs/$s.log"; exit 1; }
done
stamp "device tests"; python3 -m pytest -q -p no:cacheprovider tests/test_device.py > "$RUN/test_device.log" 2>&1; tail -3 "$RUN/test_device.log"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv > "$RUN/gpu.txt"
stamp "bench_train"
python3 -m benchmarks.bench_train --params $ROOTB/params.yaml --profile gpu --batches 8 32 --steps 50 --warmup 10 ${BENCH_ARGS:-} \
  --out "$RUN/bench_train.json" > "$RUN/bench_train.txt" 2>&1 || stamp "bench_train FAILED"
stamp "DONE"
