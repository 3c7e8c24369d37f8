"""Web demo: a portrait in, the 3D Gaussian head out, in the browser (gradio).

    python -m recon.app [--checkpoint C] [--host 127.0.0.1] [--port 7860] [--share]

Upload a portrait or pick the example (scikit-image's astronaut); the page shows the rig-framed crop, the
matte, the face landmarks with the solved head pose, the Gaussian head in an interactive viewer (gradio's
Model3D renders .splat / 3DGS .ply) and a turntable, and offers the PLY, the .splat and a TSDF mesh for
download. Without ``--checkpoint`` the newest released weights under ``weights/`` are used
(:func:`recon.infer.find_weights`). Everything runs locally; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# gradio's splat viewer assumes the 3DGS (COLMAP) frame, y down, and ignores camera_position: its copy of the head is
# turned upside down into that frame, yawed to face its default camera and scaled up to fill the view (checked by eye in
# headless chromium with a head coloured by region). Downloads stay in the metric head frame.
VIEWER_YAW_DEG = -25.0
VIEWER_SCALE = 4.0
TURNTABLE_FRAMES = 24
TURNTABLE_RES = 160
MESH_RES = 128  # TSDF fusion views; the CPU rasterizer makes this the slow step


def _quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def viewer_copy(g: Any, yaw_deg: float = VIEWER_YAW_DEG, scale: float = VIEWER_SCALE) -> Any:
    """The Gaussians as gradio's splat viewer wants them (see VIEWER_YAW_DEG): rotated and scaled."""
    from scipy.spatial.transform import Rotation

    from .gaussians import Gaussians

    R = Rotation.from_euler("y", yaw_deg, degrees=True) * Rotation.from_euler("x", 180, degrees=True)
    x, y, z, w = R.as_quat()
    q = torch.tensor([w, x, y, z], dtype=g.quats.dtype, device=g.quats.device)
    Rm = torch.tensor(R.as_matrix(), dtype=g.means.dtype, device=g.means.device)
    return Gaussians(g.means @ Rm.T * scale, _quat_mul(q.expand_as(g.quats), g.quats), g.log_scales + float(np.log(scale)),
                     g.opacity_logits, g.colors, g.sh_degree)


class Demo:
    """The model plus the per-request pipeline; outputs go to a fresh folder under ``work_dir``."""

    def __init__(self, checkpoint: str | Path, device: str, work_dir: str | Path) -> None:
        from .infer import load_weights

        self.model, self.ck = load_weights(checkpoint, device)
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def example_path(self) -> Path:
        """The built-in example portrait as a file (gradio examples are files)."""
        from anyhead.photos import astronaut_png

        return astronaut_png(self.work_dir)

    def run(self, photo_path: str | None, focal_mm: float | None = None) -> dict[str, Any]:
        """Analyse and reconstruct one uploaded photo; raises InputError for bad photos."""
        from anyhead.io import InputError, save_png
        from anyhead.photos import analyse_portrait, draw_overlays, load_image
        from anyhead.samples import View

        from .data import input_on_white
        from .export import save_ply, save_splat
        from .infer import export_mesh, turntable

        if not photo_path:
            raise InputError("(no file)", "upload a portrait first")
        t0 = time.perf_counter()
        out = Path(tempfile.mkdtemp(prefix="head-", dir=self.work_dir))
        size = self.model.cfg.image_size
        p = analyse_portrait(load_image(photo_path), max(size, 256), focal_mm, source=Path(photo_path).name)
        overlays = draw_overlays(p)
        view = View("input_000", "input", p.camera, p.on_white(), p.alpha)
        image, w2c, K = input_on_white(view, size)
        with torch.no_grad():
            g = self.model.reconstruct(image.to(self.device), w2c.to(self.device), K.to(self.device))[0]
        pose = p.pose.to_dict()
        save_ply(g, out / "head.ply", antialiased=g.antialiased, extra={"checkpoint_step": self.ck["step"], "input": {"pose": pose}})
        save_splat(g, out / "head.splat")
        save_splat(viewer_copy(g), out / "viewer.splat")
        export_mesh(g, out / "head_mesh.ply", res=MESH_RES)
        turntable(g, out / "turntable.gif", frames=TURNTABLE_FRAMES, res=TURNTABLE_RES)
        for name, img in (("crop", p.rgb), ("matte", (p.alpha * 255 + 0.5).astype(np.uint8)), ("on_white", p.on_white()),
                          ("landmarks", overlays["landmarks"]), ("pose", overlays["pose"])):
            save_png(out / f"{name}.png", img)
        yaw, pitch, roll = p.pose.yaw_pitch_roll
        summary = (f"**Head pose**: yaw {yaw:.1f}°, pitch {pitch:.1f}°, roll {roll:.1f}°, {p.pose.distance:.2f} m from the "
                   f"camera ({pose['focal_source']}); landmark reprojection {p.pose.reproj_rms_px:.1f} px RMS "
                   f"(eye distance {p.pose.eye_distance_px:.0f} px). Faces found: {p.landmarks.n_faces}. "
                   f"**{g.num:,} Gaussians** from `{self.checkpoint.name}` (step {self.ck['step']}) in "
                   f"{time.perf_counter() - t0:.1f} s.")
        return {"dir": out, "summary": summary, "pose": pose}


def build_ui(demo: Demo) -> Any:
    """The gradio Blocks app."""
    import gradio as gr

    from anyhead.io import InputError

    def on_run(photo_path: str | None) -> tuple:
        try:
            r = demo.run(photo_path)
        except InputError as e:
            raise gr.Error(str(e)) from e
        d = r["dir"]
        return (str(d / "crop.png"), str(d / "matte.png"), str(d / "landmarks.png"), str(d / "pose.png"),
                str(d / "viewer.splat"), str(d / "turntable.gif"),
                [str(d / "head.ply"), str(d / "head.splat"), str(d / "head_mesh.ply")], r["summary"])

    with gr.Blocks(title="Any3DAvatar: portrait to 3D Gaussian head") as app:
        gr.Markdown("# Any3DAvatar\nA portrait in, a complete 3D Gaussian head out. Upload a photo or pick the example.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(type="filepath", label="Portrait", elem_id="photo", height=320)
                run = gr.Button("Reconstruct", variant="primary", elem_id="run")
                gr.Examples([[str(demo.example_path())]], inputs=[photo], label="Example")
                summary = gr.Markdown(elem_id="summary")
            with gr.Column(scale=2):
                with gr.Row():
                    crop = gr.Image(label="Crop (rig framing)", elem_id="crop", height=220)
                    matte = gr.Image(label="Matte", elem_id="matte", height=220)
                    lms = gr.Image(label="Landmarks", elem_id="landmarks", height=220)
                    pose = gr.Image(label="Pose (template reprojected, head axes)", elem_id="pose", height=220)
                with gr.Row():
                    viewer = gr.Model3D(label="3D Gaussian head (drag to orbit)", elem_id="viewer", height=360)
                    turn = gr.Image(label="Turntable", elem_id="turntable", height=360)
                files = gr.File(label="Downloads: PLY (3DGS), .splat, mesh", file_count="multiple", elem_id="downloads")
        run.click(on_run, inputs=[photo], outputs=[crop, matte, lms, pose, viewer, turn, files, summary])
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (default: the newest under weights/)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--share", action="store_true", help="ask gradio for a public link (needs internet)")
    ap.add_argument("--work-dir", default=None, help="where outputs are written (default: a temporary folder)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from .infer import find_weights

    work = args.work_dir or tempfile.mkdtemp(prefix="any3davatar-demo-")
    demo = Demo(args.checkpoint or find_weights(), args.device, work)
    build_ui(demo).launch(server_name=args.host, server_port=args.port, share=args.share,
                          allowed_paths=[str(Path(work).resolve())])


if __name__ == "__main__":
    main()
