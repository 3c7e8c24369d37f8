"""End to end: `dvc repro` on the tiny profile from scratch, a no-op second run, and resume."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anyhead.shards import verify

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dvc_repro_tiny(tmp_path, ict_root):
    from tests.conftest import CACHE, ICT_ARCHIVE

    work = tmp_path / "repo"
    work.mkdir()
    for name in ("anyhead", "pipelines", "recon", "benchmarks"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["ict"]["local_archive"] = str(ICT_ARCHIVE)
    params["ict"]["cache_dir"] = str(CACHE)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("ANYHEAD_PROFILE", None)
    dvc = [sys.executable, "-m", "dvc"]

    def run(*args):
        r = subprocess.run([*dvc, *args], cwd=work, env=env, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, f"dvc {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout + r.stderr

    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    run("init", "-q")
    out = run("repro")
    from benchmarks.methods import REGISTRY, learned_methods

    stages = ["fetch_assets", "build_assets", "render", "captures", "shards", "dataset_card", "report"]
    stages += [f"train@{m}" for m in learned_methods()] + [f"evaluate@{m}" for m in REGISTRY]
    for stage in stages:
        assert f"Running stage '{stage}'" in out
    shards = work / "data/tiny/shards"
    assert verify(shards) == []
    assert (work / "data/tiny/card/card.md").exists() and (work / "data/tiny/card/qa_contact_sheet.png").exists()
    assert (work / "data/tiny/train/any3davatar/model.safetensors").exists()
    # the leaderboard lists every method with every protocol-v2 column filled (CSIM itself may be empty at 64 px:
    # no face is found in the tiny renders, which the face detection rate then says: 0%)
    import pandas as pd

    board = pd.read_csv(work / "data/tiny/leaderboard/leaderboard.csv")
    assert sorted(board["Method"]) == sorted(REGISTRY)
    for col in ("PSNR 0-30", "PSNR 30-90", "PSNR 90-150", "PSNR 150-180", "LPIPS", "Face det.", "Depth err mm",
                "Alpha IoU", "Chamfer mm", "F@5mm", "F@10mm", "Time ms", "Time IQR ms", "PSNR ±", "Budget"):
        assert not board[col].isna().any(), col
    assert set(board.columns[board.isna().any()]) <= {"CSIM", "CSIM ±"}, board.columns[board.isna().any()].tolist()
    md = (work / "data/tiny/leaderboard/leaderboard.md").read_text()
    assert "split" in md.lower() and "Paired differences against the best baseline" in md
    for f in ("leaderboard.tex", "quality_vs_time.png", "psnr_by_angle.png", "qualitative.png", "summary.json"):
        assert (work / "data/tiny/leaderboard" / f).exists(), f
    assert "any3davatar" in run("metrics", "show")

    again = run("repro")
    assert "Running stage" not in again  # nothing to do the second time
    assert "up to date" in run("status")

    # a lost head is re-rendered alone: the others are skipped, not redone
    shutil.rmtree(work / "data/tiny/renders/head_00001")
    out = run("repro", "render")
    assert "skipping head_00000" in out and "1 heads rendered, 5 up to date" in out
