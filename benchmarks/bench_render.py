"""Renderer throughput: views per second per core of the CPU ray-cast renderer.

    python -m benchmarks.bench_render [--views 24] [--res 256 512] [--supersample 2] [--style long_straight afro ...] [--quick]

Renders one sampled ICT head (hair, glasses, lashes, shoulders and garment) from a ring of target
cameras, single-threaded (thread pools pinned to 1), and prints a table. 4x supersampling = 2x2 rays
per pixel, either on every pixel or adaptively on silhouette/part-boundary pixels (the renderer's
default). Lighting is the worst case the profile's ``render.lighting`` can draw: an SH environment and
its largest number of lights (``--lights fixed``: the renderer's fixed two-light default).
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="params.yaml profile (assets settings; target pitch range)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--supersample", type=int, default=2)
    ap.add_argument("--lights", choices=["max", "fixed"], default="max")
    ap.add_argument("--style", nargs="+", default=[None], help="hair styles to time (default: the sampled head's own)")
    ap.add_argument("--quick", action="store_true", help="only the default row: edge-adaptive supersampling, shadows")
    args = ap.parse_args()
    from anyhead.config import replace
    from anyhead.hair import HairParams
    from anyhead.heads import HeadSpec, build_head
    from anyhead.ict import ICTModel
    from anyhead.render import HeadRenderer, Lighting
    from anyhead.render.rigs import target_rig
    from recon.config import load_config

    cfg = load_config(args.params, args.profile)
    model = ICTModel.load(cfg.paths.ict_model)
    rows = []
    light_desc = "fixed key + fill"
    for style in args.style:
        spec = HeadSpec.sample(model, 3, cfg.assets)
        spec.accessories = ["glasses"]
        if style is not None:
            spec.hair = HairParams.sample(np.random.default_rng(3), spec.appearance.hair_color, style, cfg.assets.hair)
        asset = build_head(model, spec, cfg.assets.texture_size)
        r = HeadRenderer(asset)
        label = f"{spec.hair.style} ({len(asset.parts)} parts, {sum(len(p.faces) for p in asset.parts)} triangles)"
        for res in args.res:
            for adaptive in ((True,) if args.quick else (True, False)):
                for shadows in ((True,) if args.quick else (False, True)):
                    if args.lights == "fixed":
                        light = Lighting(shadows=shadows)
                    else:
                        lcfg = cfg.render.lighting
                        lcfg = replace(lcfg, {"n_lights": [lcfg.n_lights[1]] * 2, "point_prob": 0.5})
                        light = Lighting.sample(np.random.default_rng(0), lcfg, shadows=shadows)
                        light_desc = "SH environment + " + ", ".join(lt.kind for lt in light.lights)
                    rig = target_rig(args.views, res, cfg.render.target_pitch)
                    r.render(rig[0][0], light, args.supersample, adaptive=adaptive)  # warm-up
                    t0 = time.process_time()
                    w0 = time.perf_counter()
                    for cam, _, _ in rig:
                        r.render(cam, light, args.supersample, adaptive=adaptive)
                    cpu = time.process_time() - t0
                    wall = time.perf_counter() - w0
                    rows.append((label, res, args.supersample ** 2, "edges" if adaptive else "all pixels", shadows,
                                 args.views / cpu, args.views / wall, 1000 * wall / args.views))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores visible); one process, thread pools pinned to 1")
    print(f"lighting: {light_desc}")
    print("| head (hair style) | res | samples/px | supersampled | shadows | views/s per core (CPU time) | views/s (wall) | ms/view |")
    print("|---|---|---|---|---|---|---|---|")
    for label, res, spp, where, sh, vps_cpu, vps_wall, ms in rows:
        print(f"| {label} | {res} | {spp} | {where} | {'yes' if sh else 'no'} | {vps_cpu:.1f} | {vps_wall:.1f} | {ms:.0f} |")


if __name__ == "__main__":
    main()
