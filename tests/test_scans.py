import numpy as np
import pytest
import trimesh
from PIL import Image

from anyhead.config import ScanOptions
from anyhead.io import InputError
from anyhead.scans import iter_scans, load_scan


def _textured_sphere(radius):
    m = trimesh.creation.uv_sphere(radius=radius, count=[16, 16])
    uv = np.stack([np.arctan2(m.vertices[:, 0], m.vertices[:, 2]) / (2 * np.pi) + 0.5,
                   m.vertices[:, 1] / (2 * radius) + 0.5], 1)
    img = Image.fromarray((np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8))
    m.visual = trimesh.visual.TextureVisuals(uv=uv, image=img)
    return m


def test_textured_scan_in_millimetres_is_normalised(tmp_path):
    m = _textured_sphere(110.0)  # a 22 cm "head" in mm
    m.apply_translation([500, 40, -30])
    m.export(tmp_path / "person.obj")
    asset = load_scan(tmp_path / "person.obj", ScanOptions())
    v = asset.part("scan").vertices
    assert np.isclose(np.ptp(v[:, 1]), 0.22, atol=3e-3)  # tessellated sphere
    assert np.isclose(v[:, 1].max(), 0.11, atol=1e-4)  # crown 11 cm above the head centre
    assert abs(v[:, 0].mean()) < 1e-3 and asset.part("scan").texture is not None
    assert asset.meta["provenance"]["units_scale"] == 0.001 and asset.meta["identity_id"] == "scan-person"


def test_axis_remap(tmp_path):
    m = _textured_sphere(0.1)
    m.apply_scale([1, 1, 1.6])  # elongated along file z, declared as up
    m.export(tmp_path / "zup.glb")
    v = load_scan(tmp_path / "zup.glb", ScanOptions(up="+z", forward="-y")).part("scan").vertices
    assert np.ptp(v[:, 1]) > np.ptp(v[:, 0]) * 1.5


def test_scan_errors(tmp_path):
    trimesh.creation.icosphere(radius=0.1).export(tmp_path / "plain.ply")  # no colours, no UVs
    with pytest.raises(InputError, match="no UVs"):
        load_scan(tmp_path / "plain.ply", ScanOptions(units="m"))
    _textured_sphere(2.5).export(tmp_path / "giant.obj")
    with pytest.raises(InputError, match="not a head scale"):
        load_scan(tmp_path / "giant.obj", ScanOptions(units="m"))
    with pytest.raises(InputError, match="not found"):
        load_scan(tmp_path / "missing.obj", ScanOptions())
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported scan format"):
        load_scan(tmp_path / "notes.txt", ScanOptions())
    (tmp_path / "broken.obj").write_text("this is not an obj\n")
    with pytest.raises(InputError):
        load_scan(tmp_path / "broken.obj", ScanOptions())
    with pytest.raises(InputError, match="scan folder not found"):
        list(iter_scans(tmp_path / "missing_dir", ScanOptions()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scans"):
        list(iter_scans(tmp_path / "empty", ScanOptions()))
