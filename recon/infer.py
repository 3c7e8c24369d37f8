"""Portrait in, 3D Gaussian head out.

    python -m recon.infer PORTRAIT --checkpoint C --out head.ply [--splat head.splat] [--turntable head.gif]

PORTRAIT is either a photo (the face is detected and cropped with ``anyhead.photos``; intrinsics
default to a 50 mm-equivalent lens) or an AnyHead sample's input image (``.../input_000.png`` in a
render folder): then the sample's own camera is used and its mask removes the background. The PLY
is a standard 3DGS file in the head frame; the turntable is a GIF (or MP4 when imageio-ffmpeg is
installed) orbiting the head.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from anyhead.cameras import intrinsics_from_fov, orbit_camera
from anyhead.io import InputError, atomic_path
from anyhead.render.rigs import LOOK_AT

from .data import input_on_white
from .export import save_ply, save_splat
from .gaussians import Gaussians
from .render import render
from .train import load_checkpoint

log = logging.getLogger(__name__)


def prepare_input(path: str | Path, size: int, focal_mm: float = 50.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """(image (1, 3, s, s) on white, w2c (1, 4, 4), K (1, 3, 3) for s x s, info)."""
    from anyhead.photos import load_image, portrait_sample
    from anyhead.samples import decode_sample

    path = Path(path)
    cams = path.parent / "cameras.json"
    if cams.exists() and (path.parent / f"{path.stem}.mask.png").exists():
        cam_doc = json.loads(cams.read_text())
        cam_doc["views"] = [v for v in cam_doc["views"] if v["name"] == path.stem]
        if not cam_doc["views"]:
            raise InputError(path, "not a view listed in cameras.json")
        files = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(f"{path.stem}.")}
        files["cameras.json"] = json.dumps(cam_doc).encode()
        files["meta.json"] = (path.parent / "meta.json").read_bytes() if (path.parent / "meta.json").exists() else b"{}"
        view = decode_sample(files)["views"][0]
        info = {"source": "anyhead_sample", "background": "removed with the sample's mask"}
    else:
        view = decode_sample(portrait_sample(load_image(path), path.stem, res=size, focal_mm=focal_mm,
                                             background="white", source=str(path)))["views"][0]
        info = {"source": "photo", "background": "heuristic foreground mask", "pose": "assumed frontal"}
    return (*input_on_white(view, size), info)  # the same preprocessing the benchmarks evaluate


def turntable(g: Gaussians, path: str | Path, frames: int = 48, res: int = 256, backend: str = "auto") -> None:
    K = torch.tensor(intrinsics_from_fov(30.0, res, res)).float()
    imgs = []
    for i in range(frames):
        w2c = torch.tensor(orbit_camera(360.0 * i / frames, 10.0, 0.65, LOOK_AT)).float()
        out = render(g, w2c[None].to(g.means.device), K[None].to(g.means.device), res, res, backend=backend)
        imgs.append((out["rgb"][0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8))
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            from PIL import Image

            ims = [Image.fromarray(a) for a in imgs]
            ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=60, loop=0)
        elif path.suffix.lower() == ".mp4":
            try:
                import imageio.v2 as imageio
            except ImportError as e:
                raise SystemExit("MP4 needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg); use .gif") from e
            imageio.mimwrite(tmp, imgs, fps=24, format="FFMPEG")
        else:
            raise SystemExit(f"{path}: turntable must be .gif or .mp4")


def export_mesh(g: Gaussians, path: str | Path, res: int = 256) -> None:
    """TSDF-fuse the Gaussians' expected depth from 24 orbiting views into a mesh (open3d)."""
    import open3d as o3d

    from .mesh import tsdf_mesh

    K = intrinsics_from_fov(30.0, res, res)
    depths, rgbs, w2cs = [], [], []
    for yaw in range(0, 360, 30):
        for pitch in (-15, 30):
            w2c = orbit_camera(float(yaw), float(pitch), 0.65, LOOK_AT)
            out = render(g, torch.tensor(w2c).float().to(g.means.device), torch.tensor(K).float().to(g.means.device), res, res)
            a = out["alpha"][0].cpu().numpy()
            depths.append(np.where(a > 0.5, out["depth"][0].cpu().numpy(), 0.0))
            rgbs.append((out["rgb"].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8))
            w2cs.append(w2c)
    mesh = tsdf_mesh(depths, rgbs, w2cs, [K] * len(w2cs))
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # open3d picks the format by suffix
    try:
        if not o3d.io.write_triangle_mesh(str(tmp), mesh):
            raise OSError(f"{path}: open3d could not write a {path.suffix} mesh")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("portrait")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True, help="output .ply")
    ap.add_argument("--splat", default=None, help="also write antimatter15 .splat")
    ap.add_argument("--turntable", default=None, help=".gif or .mp4")
    ap.add_argument("--mesh", default=None, help="also export a TSDF-fused mesh (.ply/.obj) of the Gaussians' depth")
    ap.add_argument("--focal-mm", type=float, default=50.0, help="35 mm-equivalent focal length of a photo")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    model, ck = load_checkpoint(args.checkpoint, map_location=args.device)
    model.to(args.device).eval()
    image, w2c, K, info = prepare_input(args.portrait, model.cfg.image_size, args.focal_mm)
    g = model.reconstruct(image.to(args.device), w2c.to(args.device), K.to(args.device))[0]
    save_ply(g, args.out, antialiased=False, extra={"checkpoint_step": ck["step"], "input": info})
    log.info("wrote %s (%d Gaussians)", args.out, g.num)
    if args.splat:
        save_splat(g, args.splat)
    if args.mesh:
        export_mesh(g, args.mesh)
        log.info("wrote %s", args.mesh)
    if args.turntable:
        turntable(g, args.turntable)
        log.info("wrote %s", args.turntable)


if __name__ == "__main__":
    main()
