"""Reconstruction latency of Any3DAvatar: median per component and end to end, plus peak memory.

    python -m benchmarks.bench_latency [--profile gpu] [--image-size 512] [--iters 100] [--out latency.json]

On CUDA the components are timed with CUDA events after a warm-up (encoder, scaffold tokens +
denoiser, Gaussian decoder, gsplat render of one view at the input resolution); end to end is
image -> Gaussians -> one rendered view, synchronised. On CPU the same harness uses wall-clock timers.
Weights are random (latency does not depend on them); the auxiliary head is not part of inference,
and a row shows the training graph's extra cost for reference.
"""
from __future__ import annotations

import argparse

import torch

from anyhead.cameras import intrinsics_from_fov, orbit_camera
from anyhead.config import replace
from anyhead.io import write_json
from recon.any3davatar import Any3DAvatar
from recon.any3davatar.scaffold import sphere_scaffold
from recon.config import load_config
from recon.render import render

from .metrics.timing import Timer, device_record

PAPER_FASTEST_MS = 640.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--patch", type=int, default=None, help="override the profile's patch size")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--arch-version", type=int, choices=[1, 2], default=None, help="override the profile's arch_version")
    ap.add_argument("--token-group", type=int, default=None, help="override the profile's token_group (v2)")
    ap.add_argument("--graph", action="store_true", help="CUDA only: also time inference replayed as one CUDA graph")
    ap.add_argument("--compile", action="store_true", help="CUDA only: also time torch.compile(mode='reduce-overhead')")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    over = {"image_size": args.image_size} | ({"patch": args.patch} if args.patch else {}) \
        | ({"arch_version": args.arch_version} if args.arch_version else {}) \
        | ({"token_group": args.token_group} if args.token_group else {})
    cfg = replace(load_config(args.params, args.profile).any3davatar, over, "any3davatar")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    a, n = sphere_scaffold(cfg.n_anchors)
    model = Any3DAvatar(cfg, torch.tensor(a), torch.tensor(n)).to(device).eval()
    inf = model.inference_module()
    S = cfg.image_size
    img = torch.rand(1, 3, S, S, device=device)
    w2c = torch.tensor(orbit_camera(20, 5, 0.65)).float()[None].to(device)
    K = torch.tensor(intrinsics_from_fov(30, S, S)).float()[None].to(device)
    timer = Timer(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    state: dict[str, object] = {}
    x_t, t_star = inf.noised_state(1, None, cfg.t_star, device)  # the fixed inference state: not part of the timed work

    @torch.no_grad()
    def enc():
        with amp:
            state["tok"], state["fmap"] = inf.encoder(img)

    @torch.no_grad()
    def den():
        with amp:
            state["lat"] = inf.denoise(state["tok"], state["fmap"], w2c, K, x_t, t_star)

    @torch.no_grad()
    def dec():
        with amp:
            state["g"] = inf.decode(state["lat"])

    @torch.no_grad()
    def ren():
        state["img"] = render(state["g"], w2c[:, None], K[:, None], S, S)

    @torch.no_grad()
    def e2e():
        with amp:
            g = inf(img, w2c, K)
        render(g, w2c[:, None], K[:, None], S, S)

    @torch.no_grad()
    def gaussians_only():
        with amp:
            state["g"] = inf(img, w2c, K)

    steps = [("encoder", enc), ("scaffold tokens + denoiser", den), ("gaussian decoder", dec), ("render 1 view", ren),
             ("image -> Gaussians", gaussians_only), ("end to end", e2e)]
    if (args.graph or args.compile) and device.type != "cuda":
        print("--graph/--compile need CUDA: skipped")
    elif args.graph:
        from recon.any3davatar.graphed import GraphedInference
        graphed = GraphedInference(inf, 1, torch.bfloat16 if args.dtype == "bf16" else torch.float32)

        @torch.no_grad()
        def graph_gaussians():
            state["g"] = graphed(img, w2c, K, clone=False)

        @torch.no_grad()
        def graph_e2e():
            render(graphed(img, w2c, K, clone=False), w2c[:, None], K[:, None], S, S)

        steps += [("image -> Gaussians, CUDA graph", graph_gaussians), ("end to end, CUDA graph", graph_e2e)]
    if args.compile and device.type == "cuda":
        from recon.any3davatar.graphed import compiled_inference
        cinf = compiled_inference(inf)

        @torch.no_grad()
        def compiled_e2e():
            with amp:
                g = cinf(img, w2c, K)
            render(g, w2c[:, None], K[:, None], S, S)

        steps += [("end to end, torch.compile reduce-overhead", compiled_e2e)]
    rows = {}
    for name, fn in steps:
        if name == "encoder":
            fn()
            den()
            dec()
        rows[name] = timer.median(fn, args.iters, args.warmup)
    tw = w2c[:, None].repeat(1, 4, 1, 1)
    tk = K[:, None].repeat(1, 4, 1, 1)

    @torch.no_grad()
    def train_graph():
        with amp:
            model(img, w2c, K, tw, tk, (S, S))

    rows["(training graph incl. auxiliary head, 4 targets)"] = timer.median(train_graph, max(5, args.iters // 5), 3)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    aux_params = sum(p.numel() for p in model.aux.parameters()) if model.aux is not None else 0
    result = {
        **device_record(device), "timer": timer.kind, "dtype": args.dtype,
        "image_size": S, "batch": 1, "gaussians": model.num_gaussians, "anchors": cfg.n_anchors,
        "inference_params": sum(p.numel() for p in inf.parameters()), "aux_head_params_not_run": aux_params,
        "arch_version": cfg.arch_version, "token_group": cfg.token_group, "graph": args.graph, "compile": args.compile,
        "inference_weights_mib_bf16": sum(p.numel() for p in inf.parameters()) * 2 / 2**20,
        "median_ms": rows, "peak_memory_mib": peak, "iters": args.iters, "warmup": args.warmup,
        "paper_fastest_ms": PAPER_FASTEST_MS,
    }
    print(f"{result.get('gpu', result.get('cpu'))} | driver {result.get('driver', '-')} | torch {torch.__version__} | "
          f"{args.dtype} | input {S}px | {model.num_gaussians} Gaussians")
    print("| component | median ms |")
    print("|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} |")
    print(f"| peak memory (MiB) | {peak:.0f} |")
    print(f"| paper's fastest setting | {PAPER_FASTEST_MS:.0f} |")
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
