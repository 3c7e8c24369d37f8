#!/usr/bin/env bash
# Issue 15 on one lent GPU machine: train the release Any3DAvatar on the gpu profile's data plus fresh train-only
# identities (another seed: the test split and its hash stay those of the comparison run), evaluate it, and measure v2's
# latency and training throughput. Detached, it outlives one device call:
#   setsid nohup bash scripts/gpu/session_release.sh TRAIN_ONLY SEED BUDGET_MIN BATCH LR > gpu_run/release.log 2>&1 &
# e.g. 400 1 12 32 8e-4. Results in $RUN (gpu_run/): progress.txt, logs/, eval/, release_bf16.safetensors (the EMA
# weights with the auxiliary head, for recon.release and later warm starts), latency and bench_train tables.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
N=${1:-400}; SEED=${2:-1}; BUDGET=${3:-13}; B=${4:-32}; LR=${5:-8e-4}
P=params_release.yaml
write_params() {  # $1 out, $2 compile (true/false)
  python3 scripts/gpu/tools.py params "$1" assets.train_only_identities="$N" assets.train_only_seed="$SEED" \
    train.time_budget_min="$BUDGET" train.steps=100000 train.batch_size="$B" train.lr="$LR" train.warmup=200 \
    train.ckpt_every=500 train.compile="$2" any3davatar.token_group=4
}
write_params $P true
cp $P "$RUN/params_release.yaml"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv > "$RUN/gpu.txt"
for s in build_assets render captures shards; do
  stamp "$s"; python3 -m pipelines.$s --params $P --profile gpu > "$RUN/logs/$s.log" 2>&1 || { stamp "$s FAILED"; tail -20 "$RUN/logs/$s.log"; exit 1; }
done
python3 -c "import json; s = json.load(open('data/gpu/shards/splits.json'))['splits']; print({k: (len(v['keys']), v['hash']) for k, v in s.items()})" \
  | tee -a "$RUN/progress.txt"
stamp "train the release model: $BUDGET min, batch $B, lr $LR, compile"
python3 -m benchmarks.train --method any3davatar --params $P --profile gpu --no-resume > "$RUN/logs/train.log" 2>&1
if [ ! -f data/gpu/train/any3davatar/metrics.json ]; then  # a compiler failure must not lose the run
  stamp "train with compile FAILED: $(grep -m1 -E 'Error|error' "$RUN/logs/train.log" | cut -c1-200); again without compile"
  write_params $P false
  python3 -m benchmarks.train --method any3davatar --params $P --profile gpu --no-resume > "$RUN/logs/train_nocompile.log" 2>&1
fi
stamp "trained: $(cat data/gpu/train/any3davatar/metrics.json 2>/dev/null | cut -c1-300)"
python3 scripts/gpu/tools.py bf16 data/gpu/train/any3davatar/model.safetensors gpu_run/release_bf16.safetensors
stamp "evaluate and t* sweep (side by side)"
python3 -m benchmarks.tsweep --params $P --profile gpu --out "$RUN/tsweep_release.json" > "$RUN/logs/tsweep.log" 2>&1 &
python3 -m benchmarks.run --method any3davatar --params $P --profile gpu > "$RUN/logs/eval.log" 2>&1 || stamp "evaluate FAILED"
wait
mkdir -p "$RUN/eval/release" && cp data/gpu/eval/any3davatar/*.json data/gpu/eval/any3davatar/*.csv data/gpu/train/any3davatar/*.csv \
  data/gpu/train/any3davatar/metrics.json "$RUN/tsweep_release.json" "$RUN/eval/release/" 2>/dev/null
i=0  # bf16 first and last: the first process on a fresh machine may pay one-time costs
for a in "--dtype bf16" "--dtype fp32" "--dtype bf16 --token-group 1" "--dtype bf16 --arch-version 1" "--dtype bf16"; do
  i=$((i + 1)); n=$(echo "$a" | tr -d ' -')
  stamp "latency $a"
  python3 -m benchmarks.bench_latency --params $P --profile gpu --image-size 512 --iters 200 --warmup 30 $a \
    --out "$RUN/latency_${i}_$n.json" > "$RUN/latency_${i}_$n.txt" 2>&1 || stamp "latency FAILED"
done
stamp "bench_train v2 (token_group 4)"
python3 -m benchmarks.bench_train --params $P --profile gpu --batches 32 64 --steps 30 --warmup 10 --variants new new+compile \
  --out "$RUN/bench_train_v2.json" > "$RUN/bench_train_v2.txt" 2>&1 || stamp "bench_train FAILED"
stamp "DONE"
