"""Released weights: recon.release writes an inference-only bf16 file with its sha256 and card; loading it,
warm-starting from it, and (with the repository's own release) a photo -> PLY read by an independent reader."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from recon.checkpoints import CheckpointError, load_model
from recon.release import release
from tests.tiny_model import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
REPO_WEIGHTS = sorted((ROOT / "weights").glob("any3davatar-*.safetensors"))


def _inputs(size: int):
    from anyhead.cameras import intrinsics_from_fov, orbit_camera

    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, size, size, generator=g)
    return img, torch.tensor(orbit_camera(0, 0, 0.6)).float()[None], torch.tensor(intrinsics_from_fov(20, size, size)).float()[None]


def test_release_is_inference_only_bf16_and_matches_the_trained_model(tmp_path):
    ck = write_tiny_checkpoint(tmp_path / "run" / "model.safetensors")
    facts = {"data": {"identities": "2 (test)"}, "licence": "MIT", "limitations": ["a test model"]}
    paths = release(ck, "v0.test", tmp_path / "weights", facts)
    w = paths["weights"]
    assert w.name == "any3davatar-v0.test.safetensors"
    with safe_open(str(w), "pt") as f:
        keys = list(f.keys())
        assert not [k for k in keys if k.startswith("aux.")]  # the training-only head is not shipped
        assert {f.get_tensor(k).dtype for k in keys} <= {torch.bfloat16, torch.int64, torch.int32, torch.bool}
    digest, name = paths["sha256"].read_text().split()
    assert name == w.name and digest == hashlib.sha256(w.read_bytes()).hexdigest()
    card = paths["card"].read_text()
    assert digest in card and "MIT" in card and "a test model" in card and '"aux_head": true' in card

    trained, _ = load_model(ck)
    released, rec = load_model(w)
    assert rec["inference_only"] and rec["release"] == "v0.test" and rec["method"] == "any3davatar"
    assert not hasattr(released, "aux") or released.aux is None
    img, w2c, K = _inputs(trained.cfg.image_size)
    a = trained.eval().inference_module()(img, w2c, K)
    b = released.eval().inference_module()(img, w2c, K)
    assert torch.allclose(a.means, b.means, atol=0.01) and torch.allclose(a.colors, b.colors, atol=0.05)


def test_release_refuses_bad_versions_and_oversized_weights(tmp_path):
    ck = write_tiny_checkpoint(tmp_path / "run" / "model.safetensors")
    for bad in ("", "../x", "a b"):
        with pytest.raises(ValueError, match="version"):
            release(ck, bad, tmp_path / "w")
    with pytest.raises(ValueError, match="over the"):
        release(ck, "v1", tmp_path / "w", max_mb=0.001)


def test_warm_start_from_a_release_keeps_its_weights_and_starts_the_aux_head_fresh(tmp_path, tiny_shards):
    """``--init-from`` a release (no auxiliary head): the shipped weights are loaded, the aux head is new,
    and a release of another config is refused."""
    from anyhead.config import replace
    from recon.checkpoints import build_model, save_checkpoint
    from recon.train import train
    from tests.test_train import MODEL, anchors, cfg

    torch.manual_seed(1)
    save_checkpoint(tmp_path / "src", build_model(MODEL, anchors=anchors()), step=5, extra={"method": "any3davatar"})
    rel = release(tmp_path / "src", "v0.warm", tmp_path / "weights")["weights"]
    shipped, _ = load_model(rel)
    res = train(cfg(steps=1, lr=1e-12, warmup=0), MODEL, tiny_shards, tmp_path / "run", resume=False, init_from=rel,
                anchors=anchors())
    got = res.model.state_dict()
    for k, v in shipped.state_dict().items():  # lr 1e-12: the one step leaves the loaded weights as they were
        assert torch.allclose(got[k].float().cpu(), v.float(), atol=1e-6), k
    assert any(k.startswith("aux.") for k in got)  # the training model has its aux head again
    with pytest.raises(CheckpointError, match="dim"):
        train(cfg(steps=1, warmup=0), replace(MODEL, {"dim": 64}), tiny_shards, tmp_path / "run2", resume=False, init_from=rel,
              anchors=anchors())


@pytest.mark.skipif(not REPO_WEIGHTS, reason="no released weights in weights/")
def test_repository_release_card_and_checksum():
    w = REPO_WEIGHTS[-1]
    assert w.stat().st_size <= 24e6
    digest, name = w.with_suffix(".sha256").read_text().split()
    assert name == w.name and digest == hashlib.sha256(w.read_bytes()).hexdigest()
    card = w.with_suffix(".md").read_text()
    for section in ("Training data", "Training run", "Evaluation", "Licence", "Known limitations"):
        assert f"## {section}" in card, section


@pytest.mark.skipif(not REPO_WEIGHTS, reason="no released weights in weights/")
def test_fresh_clone_photo_to_ply_without_a_checkpoint_argument(tmp_path):
    """The README's one command, from a fresh clone's point of view (nothing but the repository): the
    astronaut in, a PLY out that plyfile (not our code) reads with the standard 3DGS properties."""
    plyfile = pytest.importorskip("plyfile")
    pytest.importorskip("mediapipe")
    out = tmp_path / "head.ply"
    r = subprocess.run([sys.executable, "-m", "recon.infer", "astronaut", "--out", str(out), "--device", "cpu"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert REPO_WEIGHTS[-1].name in r.stdout + r.stderr  # it says which weights it used
    v = plyfile.PlyData.read(str(out))["vertex"]
    names = set(v.data.dtype.names)
    need = {"x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
            "f_dc_0", "f_dc_1", "f_dc_2"}
    assert need <= names, need - names
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    assert len(xyz) > 10000 and np.isfinite(xyz).all()
    assert np.abs(xyz).max() < 0.5  # metres, head frame: a head, not a scene
    rec = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else None
    if rec is not None:
        assert rec.get("convention", {}).get("camera", "opencv") == "opencv"


@pytest.mark.skipif(not REPO_WEIGHTS, reason="no released weights in weights/")
def test_benchmark_falls_back_to_the_release_only_for_its_own_config():
    """`benchmarks.run --method any3davatar` without a trained run uses the release when it holds the profile's
    model (the gpu profile is the release run's); another profile keeps the 'checkpoint missing' error."""
    from benchmarks.run import _released_for
    from tests.conftest import profile_config

    assert _released_for(profile_config("gpu").any3davatar) == REPO_WEIGHTS[-1].resolve()
    assert _released_for(profile_config("tiny").any3davatar) is None
