"""Portrait in, 3D Gaussian head out.

    python -m recon.infer PORTRAIT [--checkpoint C] --out head.ply [--splat head.splat] [--turntable head.gif]
    python -m recon.infer FOLDER [--checkpoint C] --out OUTDIR [--splat] [--mesh] [--turntable]

PORTRAIT is either a photo (face mesh, head pose by PnP, rig framing and matte with ``anyhead.photos``;
the focal length comes from EXIF, ``--focal-mm`` or a 50 mm-equivalent prior) or an AnyHead sample's
input image (``.../input_000.png`` in a render folder): then the sample's own camera is used and its
mask removes the background. The PLY is a standard 3DGS file in the head frame; the turntable is a
GIF (or MP4 when imageio-ffmpeg is installed) orbiting the head.

Without ``--checkpoint`` the newest released weights under ``weights/`` (the working directory's, then
the repository's) are used: ``any3davatar-*.safetensors``, else ``model.safetensors`` (safetensors only: loading
a weights file never runs code).

A FOLDER is processed photo by photo with a progress bar; a photo that fails is skipped with its
reason, and ``OUTDIR/report.json`` lists every photo as ok (with its pose) or why not.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from anyhead.cameras import intrinsics_from_fov, orbit_camera
from anyhead.io import InputError, atomic_path
from anyhead.render.rigs import LOOK_AT

from .checkpoints import CheckpointError, load_model
from .data import input_on_white
from .export import save_ply, save_splat
from .gaussians import Gaussians
from .release import find_weights, weight_dirs  # noqa: F401  (re-exported: where weights are looked for)
from .render import render

log = logging.getLogger(__name__)


BUILTIN_PORTRAIT = "astronaut"


def load_weights(path: str | Path, device: str) -> tuple[torch.nn.Module, dict]:
    """The model in eval mode on ``device`` and its checkpoint record (the one place that loads weights)."""
    try:
        model, ck = load_model(path, map_location="cpu")  # safetensors only: a weights file never runs code
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    return model.to(device).eval(), ck


def prepare_input(path: str | Path, size: int, focal_mm: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
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
        view = decode_sample(files).views[0]
        info = {"source": "anyhead_sample", "background": "removed with the sample's mask"}
    else:
        sample = decode_sample(portrait_sample(load_image(path), path.stem, res=size, focal_mm=focal_mm,
                                               background="white", source=str(path)))
        view = sample.views[0]
        info = {"source": "photo", "background": sample.meta["mask_source"], "pose": sample.meta["head_pose"],
                "faces_found": sample.meta["faces_found"]}
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
    with atomic_path(path) as tmp:  # the temporary name keeps the suffix: open3d picks the format by it
        if not o3d.io.write_triangle_mesh(str(tmp), mesh):
            raise OSError(f"{path}: open3d could not write a {path.suffix} mesh")


def reconstruct_file(model: torch.nn.Module, ck: dict, portrait: str | Path, out: str | Path, device: str,
                     focal_mm: float | None = None, splat: str | Path | None = None, mesh: str | Path | None = None,
                     turntable_path: str | Path | None = None, reconstruct=None) -> dict:
    """One portrait to a PLY (and optional .splat, mesh, turntable); returns the input info.
    ``reconstruct(image, w2c, K) -> Gaussians`` replaces ``model.reconstruct`` (e.g. a CUDA graph)."""
    image, w2c, K, info = prepare_input(portrait, model.cfg.image_size, focal_mm)
    with torch.no_grad():
        g = (reconstruct or model.reconstruct)(image.to(device), w2c.to(device), K.to(device))[0]
    save_ply(g, out, antialiased=g.antialiased, extra={"checkpoint_step": ck["step"], "input": info})
    log.info("wrote %s (%d Gaussians)", out, g.num)
    if splat:
        save_splat(g, splat)
    if mesh:
        export_mesh(g, mesh)
        log.info("wrote %s", mesh)
    if turntable_path:
        turntable(g, turntable_path)
        log.info("wrote %s", turntable_path)
    return info


def folder_reconstructor(model: torch.nn.Module, device: str):
    """For many photos on a GPU: Any3DAvatar's inference replayed as one CUDA graph (fp32, the same
    numbers as the eager model up to kernel rounding); None (the eager model) elsewhere or if capture fails."""
    if torch.device(device).type != "cuda" or not hasattr(model, "inference_module"):
        return None
    from recon.any3davatar.graphed import GraphedInference

    try:
        return GraphedInference(model.inference_module(), batch=1, dtype=torch.float32)
    except Exception as e:  # a capture failure must not stop the folder: the eager model does the same work
        log.warning("CUDA graph capture failed (%s); reconstructing eagerly", e)
        return None


def reconstruct_folder(model: torch.nn.Module, ck: dict, folder: Path, out_dir: Path, device: str,
                       focal_mm: float | None, splat: bool, mesh: bool, turntable_gif: bool) -> list[dict]:
    """Every photo in ``folder``; failures are skipped and reported, ``out_dir/report.json`` lists all."""
    from tqdm import tqdm

    from anyhead.io import write_json
    from anyhead.photos import IMAGE_SUFFIXES

    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"{folder}: no photos ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    fast = folder_reconstructor(model, device)
    report = []
    for p in tqdm(photos, desc="photos", unit="photo"):
        stem = out_dir / p.stem
        try:
            info = reconstruct_file(model, ck, p, stem.with_suffix(".ply"), device, focal_mm,
                                    stem.with_suffix(".splat") if splat else None,
                                    stem.with_name(f"{p.stem}_mesh.ply") if mesh else None,
                                    stem.with_suffix(".gif") if turntable_gif else None, fast)
            report.append({"photo": str(p), "status": "ok", "ply": str(stem.with_suffix(".ply")), "input": info})
        except InputError as e:
            log.warning("skipped %s", e)
            report.append({"photo": str(p), "status": "skipped", "reason": e.problem})
    write_json(out_dir / "report.json", report)
    n_ok = sum(r["status"] == "ok" for r in report)
    print(f"{n_ok} of {len(report)} photos reconstructed into {out_dir}")
    for r in report:
        print(f"  {Path(r['photo']).name}: " + ("ok" if r["status"] == "ok" else f"skipped: {r['reason']}"))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("portrait", help="a photo, an AnyHead input_000.png, a folder of photos, or `astronaut` "
                                     "(scikit-image's built-in portrait)")
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (default: the newest under weights/)")
    ap.add_argument("--out", required=True, help="output .ply (a folder when PORTRAIT is a folder)")
    ap.add_argument("--splat", nargs="?", const=True, default=None, help="also write antimatter15 .splat")
    ap.add_argument("--turntable", nargs="?", const=True, default=None, help=".gif or .mp4")
    ap.add_argument("--mesh", nargs="?", const=True, default=None,
                    help="also export a TSDF-fused mesh (.ply/.obj) of the Gaussians' depth")
    ap.add_argument("--focal-mm", type=float, default=None,
                    help="35 mm-equivalent focal length of the photo (default: EXIF, else 50)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    src = Path(args.portrait)
    if args.portrait == BUILTIN_PORTRAIT and not src.exists():  # scikit-image's astronaut, as a file
        import tempfile

        from anyhead.photos import astronaut_png

        src = astronaut_png(tempfile.mkdtemp(prefix="anyhead_"))
    if not src.exists():
        raise SystemExit(f"{src}: no such photo or folder")
    weights = args.checkpoint or find_weights()
    model, ck = load_weights(weights, args.device)
    log.info("weights %s (%s)", weights, f"release {ck['release']}" if ck.get("release") else f"step {ck.get('step')}")
    if src.is_dir():
        reconstruct_folder(model, ck, src, Path(args.out), args.device, args.focal_mm, bool(args.splat), bool(args.mesh),
                           bool(args.turntable))
        return
    out = Path(args.out)
    try:
        reconstruct_file(model, ck, src, out, args.device, args.focal_mm, _beside(args.splat, out, ".splat"),
                         _beside(args.mesh, out, ".mesh.ply"), _beside(args.turntable, out, ".gif"))
    except InputError as e:
        raise SystemExit(f"error: {e}") from e


def _beside(flag: str | bool | None, out: Path, suffix: str) -> Path | None:
    """An optional output given as a path, or as a bare flag (True): then next to ``out`` with ``suffix``."""
    if flag is True:
        return out.with_suffix(suffix)
    return Path(flag) if flag else None


if __name__ == "__main__":
    main()
