#!/usr/bin/env bash
# Issues 11 and 15 on one lent GPU machine, second release session:
#  - latency of the inference module replayed as one CUDA graph and under torch.compile (issue 11's 10 ms);
#  - the release model warm-started from v2.0 on fresh identities of the v2 look (card hair, lighting, garments),
#    trained until T_END, then v2.0 and the new weights evaluated on the same (v2-look) gpu test split.
# The data stages run on 14 cores in the background while the device tests and latency runs use the other two.
#   setsid nohup bash scripts/gpu/session_v21.sh T_END TRAIN_ONLY SEED LR BATCH [INIT] > gpu_run/v21.log 2>&1 &
# T_END: epoch seconds by which training must stop (the machine is held 30 minutes; leave ~4 for evaluation).
# INIT: the release to warm-start from (v2.1 was made from weights/any3davatar-v2.0.safetensors, in git at 0c39549).
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
T_END=${1:?epoch seconds when training must end}; N=${2:-400}; SEED=${3:-2}; LR=${4:-5e-4}; B=${5:-32}
INIT=${6:-weights/any3davatar-v2.1.safetensors}
P=params_release.yaml
write_params() {  # $1 budget minutes, $2 compile
  python3 scripts/gpu/tools.py params $P assets.train_only_identities="$N" assets.train_only_seed="$SEED" \
    assets.workers=14 render.workers=14 train.time_budget_min="$1" train.steps=100000 train.batch_size="$B" \
    train.lr="$LR" train.warmup=100 train.ckpt_every=500 train.compile="$2" any3davatar.token_group=4
}
write_params 10 true
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv > "$RUN/gpu.txt"
(
  for s in build_assets render captures shards; do
    stamp "$s"; python3 -m pipelines.$s --params $P --profile gpu > "$RUN/logs/$s.log" 2>&1 || { stamp "$s FAILED"; exit 1; }
  done
  stamp "DATA DONE"
) &
DATA=$!
PIN="taskset -c 14,15"
stamp "device tests (gsplat against the reference; CUDA graph against eager)"
$PIN python3 -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_graphed.py > "$RUN/test_device.log" 2>&1
tail -1 "$RUN/test_device.log" | tee -a "$RUN/progress.txt"
i=0
for a in "--dtype bf16 --graph --compile" "--dtype fp32 --graph" "--dtype bf16 --arch-version 1 --graph" "--dtype bf16 --graph"; do
  i=$((i + 1)); n=$(echo "$a" | tr -d ' -')
  stamp "latency $a"
  $PIN python3 -m benchmarks.bench_latency --params $P --profile gpu --image-size 512 --iters 200 --warmup 30 $a \
    --out "$RUN/latency_${i}_$n.json" > "$RUN/latency_${i}_$n.txt" 2>&1 || stamp "latency FAILED: $(tail -2 "$RUN/latency_${i}_$n.txt")"
  grep -E "end to end|Gaussians \|" "$RUN/latency_${i}_$n.txt" | tr '\n' ' ' | tee -a "$RUN/progress.txt"; echo >> "$RUN/progress.txt"
done
wait $DATA || { stamp "data FAILED"; exit 1; }
python3 -c "import json; s = json.load(open('data/gpu/shards/splits.json'))['splits']; print({k: (len(v['keys']), v['hash']) for k, v in s.items()})" \
  | tee -a "$RUN/progress.txt"
budget=$(( (T_END - $(date +%s) - 90) / 60 ))  # minus ~1.5 min: the split is decoded onto the GPU before the clock starts
[ "$budget" -lt 3 ] && budget=3
write_params "$budget" true
cp $P "$RUN/params_release.yaml"
stamp "train warm-started from $INIT: $budget min, batch $B, lr $LR, compile"
python3 -m benchmarks.train --method any3davatar --params $P --profile gpu --no-resume --init-from $INIT > "$RUN/logs/train.log" 2>&1
if [ ! -f data/gpu/train/any3davatar/metrics.json ]; then  # a compiler failure must not lose the run
  stamp "train with compile FAILED: $(grep -m1 -E 'Error|error' "$RUN/logs/train.log" | cut -c1-200); again without compile"
  write_params "$(( budget > 4 ? budget - 2 : 3 ))" false
  python3 -m benchmarks.train --method any3davatar --params $P --profile gpu --no-resume --init-from $INIT > "$RUN/logs/train_nocompile.log" 2>&1
fi
stamp "trained: $(cat data/gpu/train/any3davatar/metrics.json 2>/dev/null | cut -c1-300)"
python3 scripts/gpu/tools.py bf16 data/gpu/train/any3davatar/model.safetensors gpu_run/release_bf16.safetensors
stamp "evaluate the new weights and v2.0 on the same split (side by side)"
python3 -m benchmarks.run --method any3davatar --params $P --profile gpu --checkpoint $INIT --out gpu_run/eval_v20 \
  > "$RUN/logs/eval_v20.log" 2>&1 &
python3 -m benchmarks.run --method any3davatar --params $P --profile gpu > "$RUN/logs/eval.log" 2>&1 || stamp "evaluate FAILED"
wait
grep -h -iE "psnr|overall" "$RUN/logs/eval.log" "$RUN/logs/eval_v20.log" | tail -6 | tee -a "$RUN/progress.txt"
stamp "DONE"
