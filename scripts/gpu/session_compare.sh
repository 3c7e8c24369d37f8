#!/usr/bin/env bash
# Issues 11 and 15 on one lent GPU machine: the equal-budget comparison rows (Any3DAvatar v2, v1, the ablations of the
# three ideas and Splatter Image) trained side by side on the gpu profile's data, then evaluated, plus the t* sweep.
# Two phases, both detached (they outlive one device call):
#   setsid nohup bash scripts/gpu/session_compare.sh probe > gpu_run/probe.log 2>&1 &
#       device tests, data (build_assets, render, shards), a 20-step throughput probe of v2 (token_group 1 and 4)
#       and v1 at batch 8, and a smoke chain (10 steps of v2, then the benchmark) so a failing evaluation shows early;
#   setsid nohup bash scripts/gpu/session_compare.sh train STEPS TOKEN_GROUP "METHODS" > gpu_run/train.log 2>&1 &
#       every method trained for STEPS steps side by side (the same schedule: warm-up + cosine over STEPS), compile
#       off (the same for every row), then evaluated on the test split, then the t* sweep of any3davatar.
# Everything lands in $RUN (gpu_run/): progress.txt, logs/, eval/<method>/ (aggregate.json, per_view.csv, train_log.csv).
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
P=params_compare.yaml  # beside params.yaml, so data paths stay data/gpu/...
phase=${1:?probe or train}

write_params() {  # $1 out, $2 steps, $3 token_group (a fixed step count, not a budget; compile off for every row)
  python3 scripts/gpu/tools.py params "$1" train.time_budget_min=null train.steps="$2" train.compile=false \
    any3davatar.token_group="$3"
}

if [ "$phase" = probe ]; then
  [ -f "$RUN/test_device.log" ] || python3 -m pytest -q -p no:cacheprovider tests/test_device.py > "$RUN/test_device.log" 2>&1; tail -2 "$RUN/test_device.log"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv > "$RUN/gpu.txt"
  write_params $P 2000 1
  for s in build_assets render captures shards; do
    stamp "$s"; python3 -m pipelines.$s --params $P --profile gpu > "$RUN/logs/$s.log" 2>&1 || { stamp "$s FAILED"; tail -20 "$RUN/logs/$s.log"; exit 1; }
  done
  python3 -c "import json; s = json.load(open('data/gpu/shards/splits.json'))['splits']; print({k: (len(v['keys']), v['hash']) for k, v in s.items()})" \
    | tee -a "$RUN/progress.txt"
  for g in 1 4; do
    write_params params_probe_g$g.yaml 2000 $g
    stamp "probe v2 token_group $g"
    python3 -m benchmarks.bench_train --params params_probe_g$g.yaml --profile gpu --batches 8 --steps 20 --warmup 5 \
      --variants new > "$RUN/probe_v2_g$g.txt" 2>&1; grep samples/s "$RUN/probe_v2_g$g.txt" | tee -a "$RUN/progress.txt"
  done
  python3 scripts/gpu/tools.py params params_probe_v1.yaml train.time_budget_min=null train.steps=2000 train.compile=false \
    any3davatar.arch_version=1 any3davatar.sh_degree=null any3davatar.antialiased=false any3davatar.t_star=0.5
  stamp "probe v1"
  python3 -m benchmarks.bench_train --params params_probe_v1.yaml --profile gpu --batches 8 --steps 20 --warmup 5 \
    --variants new > "$RUN/probe_v1.txt" 2>&1; grep samples/s "$RUN/probe_v1.txt" | tee -a "$RUN/progress.txt"
  stamp "smoke: 10 steps of v2, then the benchmark"
  python3 -m benchmarks.train --method any3davatar --params $P --profile gpu --no-resume --max-steps 10 > "$RUN/logs/smoke_train.log" 2>&1 \
    && python3 -m benchmarks.run --method any3davatar --params $P --profile gpu --out gpu_run/smoke_eval > "$RUN/logs/smoke_eval.log" 2>&1 \
    && stamp "smoke OK" || { stamp "smoke FAILED"; tail -30 "$RUN/logs/smoke_train.log" "$RUN/logs/smoke_eval.log"; }
  stamp "PROBE DONE"
  exit 0
fi

STEPS=${2:?steps}
G=${3:?token_group}
METHODS=${4:-"any3davatar any3davatar-v1 any3davatar-noaux any3davatar-random any3davatar-noplucker any3davatar-t0 splatter-image"}
write_params $P "$STEPS" "$G"
cp $P "$RUN/params_compare.yaml"
stamp "train side by side, $STEPS steps, token_group $G: $METHODS"
pids=()
for m in $METHODS; do
  python3 -m benchmarks.train --method $m --params $P --profile gpu --no-resume > "$RUN/logs/train_$m.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait $p; done
for m in $METHODS; do
  stamp "trained $m: $(tail -1 data/gpu/train/$m/train_log.csv 2>/dev/null | cut -c1-160)"
done
for m in $METHODS; do
  stamp "evaluate $m"
  python3 -m benchmarks.run --method $m --params $P --profile gpu > "$RUN/logs/eval_$m.log" 2>&1 || stamp "evaluate $m FAILED"
  mkdir -p "$RUN/eval/$m" && cp data/gpu/eval/$m/*.json data/gpu/eval/$m/*.csv data/gpu/train/$m/train_log.csv "$RUN/eval/$m/" 2>/dev/null
done
stamp "t* sweep"
python3 -m benchmarks.tsweep --params $P --profile gpu --out "$RUN/eval/any3davatar/tsweep.json" > "$RUN/logs/tsweep.log" 2>&1 || stamp "t* sweep FAILED"
# v2's weights for a later warm start: bf16 (with the auxiliary head), small enough to bring back
python3 scripts/gpu/tools.py bf16 data/gpu/train/any3davatar/model.safetensors gpu_run/any3davatar_compare_bf16.safetensors
stamp "DONE"
