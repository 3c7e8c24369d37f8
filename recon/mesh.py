"""Meshes from rendered depth: TSDF fusion with open3d, and area-uniform surface samples.

Used by ``recon.infer`` (mesh export) and the benchmark's geometry (``benchmarks.metrics.geometry``
re-exports both), so it lives in the library: ``recon`` never imports ``benchmarks``.
"""
from __future__ import annotations

import numpy as np


def tsdf_mesh(depths: list[np.ndarray], rgbs: list[np.ndarray], w2cs: list[np.ndarray], Ks: list[np.ndarray],
              voxel: float = 0.003, trunc: float = 0.012, extent: float = 0.6, origin: tuple[float, float, float] = (-0.3, -0.35, -0.3)):
    """Fuse depth maps (camera z, metres; 0 = empty) into a triangle mesh with open3d's TSDF, over a
    cube of side ``extent`` at ``origin`` (head frame). A uniform volume: open3d-cpu 0.20's scalable
    volume integrated nothing in our tests."""
    import open3d as o3d

    vol = o3d.pipelines.integration.UniformTSDFVolume(length=extent, resolution=int(round(extent / voxel)), sdf_trunc=trunc,
                                                      color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8,
                                                      origin=np.asarray(origin, np.float64))
    for d, c, w2c, K in zip(depths, rgbs, w2cs, Ks):
        H, W = d.shape
        intr = o3d.camera.PinholeCameraIntrinsic(W, H, K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5)
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(c[..., :3])), o3d.geometry.Image(d.astype(np.float32)),
            depth_scale=1.0, depth_trunc=5.0, convert_rgb_to_intensity=False)
        vol.integrate(rgbd, intr, w2c)
    mesh = vol.extract_triangle_mesh()
    mesh.compute_vertex_normals()
    return mesh


def mesh_points(mesh, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples and normals of an open3d mesh."""
    import open3d as o3d

    if len(mesh.triangles) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    o3d.utility.random.seed(seed)
    pc = mesh.sample_points_uniformly(n, use_triangle_normal=True)
    return np.asarray(pc.points), np.asarray(pc.normals)
