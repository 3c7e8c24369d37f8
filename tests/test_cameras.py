import numpy as np
import pytest
import torch

from anyhead import cameras as C


def test_look_at_axes_follow_opencv():
    w2c = C.look_at([0, 0, 1.0], [0, 0, 0])
    K = C.intrinsics_from_fov(60, 200, 100)
    uv, z = C.project(np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]]), w2c, K)
    assert np.allclose(uv[0], [100, 50]) and np.isclose(z[0], 1.0)
    assert uv[1, 0] > 100  # +x (subject's left) appears on the image right when seen from the front
    assert uv[2, 1] < 50  # +y (up) appears higher in the image: OpenCV y points down
    assert np.allclose(C.camera_center(w2c), [0, 0, 1])


def test_intrinsics_known_values():
    K = C.intrinsics_from_fov(90, 100, 80)
    assert np.allclose(K, [[50, 0, 50], [0, 50, 40], [0, 0, 1]])
    assert np.isclose(C.fov_from_intrinsics(K, 100), 90)
    K2 = C.intrinsics_from_focal_mm(36, 100, 100)  # 36 mm on a 36 mm sensor: f = width
    assert np.isclose(K2[0, 0], 100)


def test_project_unproject_round_trip(rng):
    for _ in range(5):
        w2c = C.orbit_camera(rng.uniform(-180, 180), rng.uniform(-60, 60), rng.uniform(0.4, 2))
        K = C.intrinsics_from_fov(rng.uniform(20, 70), 128, 96)
        pts = rng.normal(size=(50, 3)) * 0.1
        uv, z = C.project(pts, w2c, K)
        assert np.all(z > 0)
        assert np.allclose(C.unproject(uv, z, w2c, K), pts, atol=1e-9)


def test_pixel_rays_pass_through_projected_points(rng):
    w2c = C.orbit_camera(30, 10, 0.8)
    K = C.intrinsics_from_fov(40, 64, 48)
    o, d = C.pixel_rays(w2c, K, 64, 48)
    assert np.allclose(np.linalg.norm(d, axis=1), 1)
    # the ray of pixel (row 20, col 30) hits the plane z_cam = 1 at the unprojection of its centre
    idx = 20 * 64 + 30
    p = C.unproject(np.array([[30.5, 20.5]]), np.array([1.0]), w2c, K)[0]
    t = np.dot(p - o[idx], d[idx])
    assert np.allclose(o[idx] + t * d[idx], p, atol=1e-9)
    # supersampled rays: the 2x2 sub-rays of a pixel straddle its centre
    o2, d2 = C.pixel_rays(w2c, K, 64, 48, samples_per_side=2)
    assert d2.shape == (64 * 48 * 4, 3)


def test_opengl_round_trip_and_known_value(rng):
    c2w_gl = np.eye(4)
    c2w_gl[:3, 3] = [0, 0, 1]  # OpenGL camera at +z looking down -z with +y up
    assert np.allclose(C.opengl_to_opencv(c2w_gl), C.look_at([0, 0, 1], [0, 0, 0]))
    w2c = C.orbit_camera(rng.uniform(-180, 180), rng.uniform(-60, 60), 1.3)
    assert np.allclose(C.opengl_to_opencv(C.opencv_to_opengl(w2c)), w2c)


def test_plucker_moment_invariant_and_torch_twin(rng):
    o = rng.normal(size=(10, 3))
    d = rng.normal(size=(10, 3))
    p1 = C.plucker_rays(o, d)
    p2 = C.plucker_rays(o + 2.7 * d, d)  # another point of the same line
    assert np.allclose(p1, p2)
    assert np.allclose(np.einsum("ni,ni->n", p1[:, :3], p1[:, 3:]), 0)  # d . m = 0
    pt = C.plucker_rays_torch(torch.tensor(o), torch.tensor(d)).numpy()
    assert np.allclose(pt, p1)
    # known value: ray along +z through (1, 0, 0) has moment (1,0,0) x (0,0,1) = (0,-1,0)
    assert np.allclose(C.plucker_rays(np.array([1.0, 0, 0]), np.array([0, 0, 2.0])), [0, 0, 1, 0, -1, 0])


def test_camera_crop_resize_and_dict(rng):
    cam = C.Camera(C.orbit_camera(20, 5, 0.7), C.intrinsics_from_fov(30, 100, 80), 100, 80)
    pts = rng.normal(size=(20, 3)) * 0.05
    uv, _ = cam.project(pts)
    uvc, _ = cam.crop(10, 5, 50, 40).project(pts)
    assert np.allclose(uvc, uv - [10, 5])
    uvr, _ = cam.resize(200, 160).project(pts)
    assert np.allclose(uvr, uv * 2)
    back = C.Camera.from_dict(cam.to_dict())
    assert np.allclose(back.w2c, cam.w2c) and back.width == 100
    bad = cam.to_dict()
    bad["convention"] = {"camera": "opengl"}
    with pytest.raises(ValueError, match="opencv"):
        C.Camera.from_dict(bad)


def test_orbit_yaw_conventions():
    assert C.camera_center(C.orbit_camera(0, 0, 1))[2] > 0.99
    assert C.camera_center(C.orbit_camera(90, 0, 1))[0] > 0.99
    assert C.camera_center(C.orbit_camera(180, 0, 1))[2] < -0.99
    assert np.isclose(C.yaw_of_camera(C.orbit_camera(-150, 10, 1)), 150)
    top = C.orbit_camera(0, 90, 1)
    assert np.isfinite(top).all()
