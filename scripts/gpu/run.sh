#!/usr/bin/env bash
# The GPU run: dvc.yaml's stages on the `gpu` profile, on a lent machine that has no DVC (scripts/repro.py runs the
# same stage commands in dependency order; each stage resumes by itself). Start it detached, it outlives one call:
#   setsid nohup bash scripts/gpu/run.sh [repro.py options, e.g. --only train@any3davatar] > gpu_run/session.log 2>&1 &
# fetch_assets is skipped: the compact ICT model comes from .devcache (the machine cannot download the archive).
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
stamp "repro gpu $*"
python3 scripts/repro.py --profile gpu --skip fetch_assets --logdir "$RUN/logs" "$@" 2>&1 | tee -a "$RUN/progress.txt"
stamp "DONE"
