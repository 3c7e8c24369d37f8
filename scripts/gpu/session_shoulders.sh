#!/usr/bin/env bash
# Does a scaffold over the shoulders help on the v2 look? One lent GPU machine, two rows side by side, both
# warm-started from the v2.1 release for the same number of steps on the same data: the control keeps v2.1's
# scaffold (it ends at the neck), the other adds torso anchors (any3davatar.shoulders; the network weights carry
# over, the scaffold is rebuilt). Both are evaluated on the fixed gpu test split (v2 look).
#   setsid nohup bash scripts/gpu/session_shoulders.sh STEPS LR > gpu_run/shoulders.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
STEPS=${1:-1500}; LR=${2:-3e-4}
INIT=weights/any3davatar-v2.1.safetensors
common=(assets.train_only_identities=0 assets.workers=16 render.workers=16 train.time_budget_min=null train.steps="$STEPS"
        train.batch_size=32 train.lr="$LR" train.warmup=50 train.ckpt_every=500 train.compile=false any3davatar.token_group=4)
python3 scripts/gpu/tools.py params params_ctl.yaml "${common[@]}"
python3 scripts/gpu/tools.py params params_sh.yaml "${common[@]}" any3davatar.shoulders=true
cp params_ctl.yaml params_sh.yaml "$RUN/"
for s in build_assets render captures shards; do
  stamp "$s"; python3 -m pipelines.$s --params params_ctl.yaml --profile gpu > "$RUN/logs/$s.log" 2>&1 || { stamp "$s FAILED"; exit 1; }
done
python3 -c "import json; s = json.load(open('data/gpu/shards/splits.json'))['splits']; print({k: (len(v['keys']), v['hash']) for k, v in s.items()})" \
  | tee -a "$RUN/progress.txt"
run_row() {  # $1 name: train, then evaluate as soon as it is done
  stamp "train $1"
  python3 -m recon.train --params params_$1.yaml --profile gpu --out data/gpu/train/$1 --no-resume --init-from $INIT \
    > "$RUN/logs/train_$1.log" 2>&1 || stamp "train $1 FAILED"
  stamp "trained $1: $(tail -1 data/gpu/train/$1/train_log.csv | cut -c1-120)"
  python3 -m benchmarks.run --method any3davatar --params params_$1.yaml --profile gpu \
    --checkpoint data/gpu/train/$1/model.safetensors --out gpu_run/eval_$1 > "$RUN/logs/eval_$1.log" 2>&1 || stamp "evaluate $1 FAILED"
  stamp "evaluated $1: $(grep -h 'PSNR' "$RUN/logs/eval_$1.log" | tail -1)"
}
run_row ctl &
# the second row starts once the first has decoded the split into the shared cache
for i in $(seq 1 60); do grep -q "train:" "$RUN/logs/train_ctl.log" 2>/dev/null && break; sleep 3; done
run_row sh &
wait
stamp "DONE"
