#!/usr/bin/env bash
# The issue-5 GPU run, end to end, on a lent GPU machine (run it detached: it outlives one device call).
#   setsid nohup bash benchmarks/gpu_session.sh > gpu_run/session.log 2>&1 &
# Needs .devcache/ carried: setup.sh + wheels (from shared/device), ict_model.npz (python -m anyhead.ict
# compact ...), lpips_alex_v0.1.pt (python -m recon.lpips convert), extra/*.whl (dask and friends).
# Runs the same stage modules as dvc.yaml with the `gpu` profile, trains the learned methods side by side
# on the one GPU with the same time budget, evaluates every method, publishes the leaderboard, and packs
# everything worth keeping into gpu_run/results.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
stamp "build_assets"; python3 -m pipelines.build_assets > "$RUN/logs/build_assets.log" 2>&1 || { stamp "build_assets FAILED"; exit 1; }
stamp "render"; python3 -m pipelines.render > "$RUN/logs/render.log" 2>&1 || { stamp "render FAILED"; exit 1; }
stamp "shards"; python3 -m pipelines.shards > "$RUN/logs/shards.log" 2>&1 || { stamp "shards FAILED"; exit 1; }
stamp "dataset_card"; python3 -m pipelines.dataset_card > "$RUN/logs/dataset_card.log" 2>&1
METHODS=$(python3 -c "from benchmarks.methods import learned_methods; print(' '.join(learned_methods()))")
stamp "train (side by side): $METHODS"
export OMP_NUM_THREADS=2
for m in $METHODS; do
  python3 -m benchmarks.train --method "$m" --no-resume > "$RUN/logs/train_$m.log" 2>&1 &
done
wait
for m in $METHODS; do stamp "trained $m: $(tail -c 300 data/gpu/train/$m/metrics.json | tr -d '\n ')"; done
for m in $(python3 -c "from benchmarks.methods import REGISTRY; print(' '.join(REGISTRY))"); do
  stamp "evaluate $m"; python3 -m benchmarks.run --method "$m" > "$RUN/logs/eval_$m.log" 2>&1 || stamp "evaluate $m FAILED"
done
stamp "leaderboard"; python3 -m benchmarks.leaderboard > "$RUN/logs/leaderboard.log" 2>&1
stamp "latency"
for dt in bf16 fp32; do
  python3 -m benchmarks.bench_latency --profile gpu --image-size 512 --iters 100 --dtype $dt --out "$RUN/latency_$dt.json" > "$RUN/latency_$dt.txt" 2>&1
done
stamp "device tests"; python3 -m pytest -q -s -p no:cacheprovider tests/test_device.py > "$RUN/test_device.log" 2>&1
stamp "pack"
tar czf "$RUN/results.tgz" "$RUN"/*.txt "$RUN"/*.json "$RUN"/*.log "$RUN/logs" data/gpu/leaderboard data/gpu/card \
  data/gpu/eval/*/aggregate.json data/gpu/eval/*/per_view.csv data/gpu/eval/*/per_sample.csv data/gpu/eval/*/renders \
  data/gpu/train/*/train_log.csv data/gpu/train/*/metrics.json data/gpu/shards/splits.json 2>/dev/null
stamp "DONE"
