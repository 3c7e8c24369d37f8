#!/usr/bin/env bash
# Set-up of a bare lent GPU machine (source it from the repository root): the device wheels and the prebuilt
# gsplat extension (.devcache/setup.sh, from ../shared/device), dask's wheels, the compact ICT model and the
# LPIPS weights carried in .devcache/ (make them here with `dvc repro fetch_assets` and `python -m recon.lpips convert`).
RUN=${RUN:-gpu_run}
mkdir -p "$RUN/logs"
stamp() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RUN/progress.txt"; }
source .devcache/setup.sh
export ANYHEAD_CACHE=$PWD/.devcache PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p data/ict && cp .devcache/ict_model.npz data/ict/ict_model.npz
