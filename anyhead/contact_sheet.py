"""Contact sheet of sampled heads (front, side and back views), for docs and dataset QA.

    python -m anyhead.contact_sheet --n 16 --out docs/images/heads_contact_sheet.png
    python -m anyhead.contact_sheet --lighting 6 --seed 3 --out docs/images/lighting_variety.png
    python -m anyhead.contact_sheet --hair-styles --res 160 --out docs/images/hair_styles.png

samples ``--n`` heads straight from the ICT model (``--model``, written by the fetch_assets
stage) with seeds ``--seed .. --seed+n-1``, or shows the heads of an assets folder (``--assets``).
Each head gets one lighting drawn from the profile's ``render.lighting``. ``--lighting K`` instead
shows head ``--seed`` under K lighting draws (one row each, labelled with the environment preset
and the lights' colour temperatures). ``--hair-styles`` shows one head per hair style (front, side,
back) under the renderer's fixed default lighting, so styles and colours compare.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from .assets import HeadAsset
from .cameras import Camera, intrinsics_from_fov, orbit_camera
from .io import save_png
from .render import HeadRenderer, Lighting
from .render.views import skin_albedo

YAWS = (0.0, 90.0, 180.0)  # front, side (the subject's left), back


def head_views(asset: HeadAsset, res: int = 192, yaws: tuple[float, ...] = YAWS, seed: int = 0, lighting_cfg=None,
               light: Lighting | None = None, renderer: HeadRenderer | None = None) -> list[np.ndarray]:
    """Views of a head around the vertical, framed to show the shoulders, under one lighting (drawn from
    ``lighting_cfg`` with ``seed`` unless given)."""
    r = renderer or HeadRenderer(asset)
    light = light or Lighting.sample(np.random.default_rng(seed), lighting_cfg, skin_albedo=skin_albedo(asset))
    K = intrinsics_from_fov(28.0, res, res)
    return [r.render(Camera(orbit_camera(y, 8.0, 0.78, target=(0, -0.06, 0)), K, res, res), light, 2).rgb for y in yaws]


def light_label(light: Lighting) -> str:
    kinds = " ".join(f"{lt.kelvin:.0f}K{'*' if lt.kind == 'point' else ''}" for lt in light.lights)
    return f"{light.info.get('preset', '?')} | {kinds}"


def lighting_sheet(asset: HeadAsset, n: int, res: int, seed: int, lighting_cfg=None) -> np.ndarray:
    """One head under ``n`` lighting draws: a row of front/side/back views per draw."""
    r = HeadRenderer(asset)
    tiles, labels = [], []
    for i in range(n):
        light = Lighting.sample(np.random.default_rng([seed, i]), lighting_cfg, skin_albedo=skin_albedo(asset))
        tiles.append(head_views(asset, res, light=light, renderer=r))
        labels.append(light_label(light))
    return sheet(tiles, labels, cols=2)


def sheet(tiles: list[list[np.ndarray]], labels: list[str], cols: int = 4) -> np.ndarray:
    """Grid of per-head strips (views side by side), a caption under each."""
    strips = []
    for views, label in zip(tiles, labels):
        strip = Image.fromarray(np.concatenate(views, 1))
        canvas = Image.new("RGB", (strip.width, strip.height + 16), "white")
        canvas.paste(strip, (0, 0))
        ImageDraw.Draw(canvas).text((4, strip.height + 2), label, fill=(40, 40, 40))
        strips.append(np.asarray(canvas))
    while len(strips) % cols:
        strips.append(np.full_like(strips[0], 255))
    rows = [np.concatenate(strips[i:i + cols], 1) for i in range(0, len(strips), cols)]
    return np.concatenate(rows, 0)


def render_gallery(renders: Path, n: int, n_targets: int = 8) -> np.ndarray:
    """Rows of rendered samples: the input portrait, then targets spread around the head."""
    from PIL import Image

    rows = []
    for d in sorted(p for p in renders.iterdir() if (p / "meta.json").exists())[:n]:
        views = sorted(d.glob("view_[0-9][0-9][0-9].png"))
        pick = [views[int(i)] for i in np.linspace(0, len(views) - 1, n_targets, endpoint=False).round()]
        rows.append(np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in [d / "input_000.png", *pick]], 1))
    return np.concatenate(rows, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default=None, help="params.yaml profile whose assets settings sample the heads")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--assets", default=None, help="an assets folder (data/<profile>/assets) instead of sampling")
    ap.add_argument("--renders", default=None, help="a renders folder (data/<profile>/renders): input + targets per head")
    ap.add_argument("--res", type=int, default=192)
    ap.add_argument("--lighting", type=int, default=0, help="show head --seed under this many lighting draws instead")
    ap.add_argument("--out", default="docs/images/heads_contact_sheet.png")
    ap.add_argument("--hair-styles", action="store_true", help="one head per hair style: front, side and back")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    tiles, labels = [], []
    if args.renders:
        save_png(args.out, render_gallery(Path(args.renders), args.n))
        print(f"wrote {args.out}")
        return
    from .config import RenderConfig, read_params

    lighting_cfg = read_params(args.params, args.profile).section(RenderConfig, "render").lighting
    if args.assets:
        folders = sorted(p for p in Path(args.assets).iterdir() if (p / "meta.json").exists())[: args.n]
        assets = (HeadAsset.load(p) for p in folders)
    else:
        from .config import AssetsConfig, read_params
        from .heads import HeadSpec, build_head
        from .ict import ICTModel
        from .paths import Paths

        raw = read_params(args.params, args.profile)
        cfg = raw.section(AssetsConfig, "assets")
        model = ICTModel.load(Paths(Path(args.params).parent, raw.profile).ict_model)
        if args.lighting:
            a = build_head(model, HeadSpec.sample(model, args.seed, cfg), cfg.texture_size, cfg.user_accessories)
            save_png(args.out, lighting_sheet(a, args.lighting, args.res, args.seed, lighting_cfg))
            print(f"wrote {args.out}")
            return
        if args.hair_styles:
            from .hair import STYLES, HairParams

            def styled(i: int, style: str):
                spec = HeadSpec.sample(model, args.seed + i, cfg)
                spec.accessories = []
                spec.hair = HairParams.sample(np.random.default_rng(args.seed + i), spec.appearance.hair_color, style, cfg.hair)
                return build_head(model, spec, cfg.texture_size)

            args.n = len(STYLES)
            assets = (styled(i, s) for i, s in enumerate(STYLES))
        else:
            assets = (build_head(model, HeadSpec.sample(model, args.seed + i, cfg), cfg.texture_size, cfg.user_accessories)
                      for i in range(args.n))
    for i, a in enumerate(tqdm(assets, total=args.n, desc="contact sheet")):
        spec = a.meta.get("spec", {})
        acc = ",".join(spec.get("accessories", [])) or "-"
        hair = spec.get("hair", {})
        if args.hair_styles:
            albedo = skin_albedo(a)
            tiles.append(head_views(a, args.res, light=Lighting().protect_highlights(albedo) if albedo else Lighting()))
            colour = hair.get("dye") or hair.get("color", "?")
            labels.append(f"{hair.get('style', '?')}: {colour}" + (f", {hair['grey']:.0%} grey" if hair.get("grey") else ""))
            continue
        tiles.append(head_views(a, args.res, seed=i, lighting_cfg=lighting_cfg))
        garment = spec.get("look", {}).get("garment", "-")
        labels.append(f"MST {spec.get('appearance', {}).get('skin_tone', 0):.1f} {hair.get('style', '?')} {garment} {acc}")
    save_png(args.out, sheet(tiles, labels, cols=3 if args.hair_styles else 4))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
