import io
import tarfile

import numpy as np
import pytest

from anyhead import ict
from anyhead.io import InputError


def test_vertex_count_and_order_preserved(ict_model, ict_root):
    fx = ict_root / "FaceXModel"
    raw = ict.read_obj_vertices(fx / "generic_neutral_mesh.obj")
    assert ict_model.neutral.shape == (ict.N_VERTICES, 3)
    assert np.allclose(ict_model.neutral, (raw - ict.HEAD_CENTER_CM) * 0.01, atol=1e-6)
    # mode k at +1 sd reproduces upstream's identity k mesh, vertex for vertex
    w = np.zeros(100)
    w[7] = 1.0
    ident7 = (ict.read_obj_vertices(fx / "identity007.obj") - ict.HEAD_CENTER_CM) * 0.01
    assert np.allclose(ict_model.vertices(w), ident7, atol=1e-6)
    # faces index the original vertices; quads were split, not re-indexed
    assert ict_model.faces.max() < ict.N_VERTICES and len(ict_model.landmarks) == 68


def test_zero_weights_reproduce_neutral(ict_model):
    assert np.array_equal(ict_model.vertices(np.zeros(100), np.zeros(len(ict_model.expression_names))),
                          ict_model.neutral)


def test_head_frame_convention(ict_model):
    lm = ict_model.neutral[ict_model.landmarks]
    assert lm[30, 2] > 0.08  # nose tip out along +z
    assert lm[19, 1] > lm[8, 1]  # brows above the chin: +y up
    assert lm[45, 0] > 0 > lm[36, 0]  # landmark 45 is the subject's left eye corner (+x)
    top = ict_model.neutral.max(0)
    assert 0.2 < top[1] - lm[8, 1] < 0.25  # crown to chin in metres


def test_two_seeds_give_different_valid_heads(ict_model):
    a = ict_model.vertices(ict_model.sample_identity(np.random.default_rng(1)))
    b = ict_model.vertices(ict_model.sample_identity(np.random.default_rng(2)))
    again = ict_model.vertices(ict_model.sample_identity(np.random.default_rng(1)))
    assert np.array_equal(a, again)
    assert np.abs(a - b).max() > 0.003
    for v in (a, b):
        assert np.isfinite(v).all()
        size = v.max(0) - v.min(0)
        assert np.all(size > 0.15) and np.all(size < 0.5)
        # no identity collapses the surface: triangle areas stay positive
        t = v[ict_model.faces]
        area = np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
        assert (area > 0).mean() > 0.999


def test_expressions_loaded(ict_model):
    assert len(ict_model.expression_names) == 53
    w = np.zeros(53)
    w[ict_model.expression_names.index("jawOpen")] = 1.0
    v = ict_model.vertices(None, w)
    chin = ict_model.landmarks[8]
    assert v[chin, 1] < ict_model.neutral[chin, 1] - 0.005  # the jaw opens downwards


def test_missing_archive_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ict.extract_archive(tmp_path / "nope.tar.gz", tmp_path)


def test_wrong_archive_error(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("x/readme.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError, match="not an ICT FaceKit archive"):
        ict.extract_archive(bad, tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("ict-*"))  # nothing half-extracted left behind


def test_missing_folder_and_files_errors(tmp_path):
    with pytest.raises(InputError, match="FaceXModel"):
        ict.find_root(tmp_path)
    (tmp_path / "FaceXModel").mkdir()
    with pytest.raises(InputError, match="neutral mesh"):
        ict.ICTModel.from_folder(tmp_path)


def test_obj_without_uvs_error(tmp_path):
    p = tmp_path / "m.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InputError, match="no texture coordinates"):
        ict.read_obj_topology(p)
    with pytest.raises(InputError, match="expected 26719 vertices"):
        ict.read_obj_vertices(p)


def test_fetch_checks_sha256(tmp_path):
    src = tmp_path / "a.tar.gz"
    src.write_bytes(b"not really")
    with pytest.raises(InputError, match="does not match"):
        ict.fetch_archive(tmp_path / "out.tar.gz", local_archive=src, sha256="0" * 64)
    assert not (tmp_path / "out.tar.gz").exists()
    prov = ict.fetch_archive(tmp_path / "out.tar.gz", local_archive=src)
    assert prov["license"].startswith("MIT") and len(prov["sha256"]) == 64


def test_model_cache_round_trip(ict_model, tmp_path):
    ict_model.save(tmp_path / "m.npz")
    m = ict.ICTModel.load(tmp_path / "m.npz")
    assert np.array_equal(m.neutral, ict_model.neutral) and m.materials == ict_model.materials
    with pytest.raises(InputError, match="fetch_assets"):
        ict.ICTModel.load(tmp_path / "missing.npz")
