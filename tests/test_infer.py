"""recon.infer on photos: released-weights lookup, one photo, a folder with a per-photo report."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from skimage import data

from recon import infer
from tests.tiny_model import write_tiny_checkpoint


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(d / "astronaut.jpg", quality=92)
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(d / "wall.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return d


def test_no_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="no Any3DAvatar weights found.*weights/"):
        infer.find_weights([tmp_path / "weights"])


def test_newest_weights_found_by_default(tmp_path, monkeypatch, photos):
    w = tmp_path / "weights"
    old = write_tiny_checkpoint(w / "any3davatar-old.safetensors")
    new = write_tiny_checkpoint(w / "any3davatar-new.safetensors")
    os.utime(old, (1, 1))
    assert infer.find_weights([w]) == new
    fallback = write_tiny_checkpoint(tmp_path / "other" / "model.safetensors")
    assert infer.find_weights([tmp_path / "empty", tmp_path / "other"]) == fallback
    monkeypatch.chdir(tmp_path)
    infer.main([str(photos / "astronaut.jpg"), "--out", str(tmp_path / "head.ply"), "--splat"])
    from recon.export import load_ply

    g, _ = load_ply(tmp_path / "head.ply")
    assert g.num == 128 * 2 and (tmp_path / "head.splat").stat().st_size == 32 * g.num


def test_folder_mode_reports_every_photo(tmp_path, photos, capsys):
    ck = write_tiny_checkpoint(tmp_path / "ck.safetensors")
    infer.main([str(photos), "--checkpoint", str(ck), "--out", str(tmp_path / "out")])
    report = {r["photo"].split("/")[-1]: r for r in json.loads((tmp_path / "out" / "report.json").read_text())}
    assert report["astronaut.jpg"]["status"] == "ok" and (tmp_path / "out" / "astronaut.ply").exists()
    assert report["astronaut.jpg"]["input"]["pose"]["reprojection_rms_px"] < 5
    assert report["wall.png"]["status"] == "skipped" and "no face" in report["wall.png"]["reason"]
    assert report["broken.jpg"]["status"] == "skipped" and "unreadable" in report["broken.jpg"]["reason"]
    out = capsys.readouterr().out
    assert "1 of 3 photos reconstructed" in out and "wall.png: skipped: no face" in out


def test_single_photo_errors_name_the_file(tmp_path, photos):
    ck = write_tiny_checkpoint(tmp_path / "ck.safetensors")
    with pytest.raises(SystemExit, match=r"wall\.png: no face found"):
        infer.main([str(photos / "wall.png"), "--checkpoint", str(ck), "--out", str(tmp_path / "x.ply")])
    with pytest.raises(SystemExit, match=r"broken\.jpg: unreadable image"):
        infer.main([str(photos / "broken.jpg"), "--checkpoint", str(ck), "--out", str(tmp_path / "x.ply")])
    assert not (tmp_path / "x.ply").exists()
