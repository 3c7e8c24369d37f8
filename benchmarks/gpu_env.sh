#!/usr/bin/env bash
# Shared set-up of the GPU run scripts (source it from the repository root): device wheels, the
# prebuilt gsplat extension, dask's wheels, the compact ICT model and the LPIPS weights from .devcache/.
RUN=${RUN:-gpu_run}
mkdir -p "$RUN/logs"
stamp() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RUN/progress.txt"; }
source .devcache/setup.sh
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcache/extra/*.whl
export ANYHEAD_PROFILE=gpu ANYHEAD_CACHE=$PWD/.devcache PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p data/ict && cp .devcache/ict_model.npz data/ict/ict_model.npz
