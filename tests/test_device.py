"""Device-run tests: gsplat (CUDA) against our torch reference rasterizer. Skipped without CUDA + gsplat.

    source .devcache/setup.sh; python3 -m pytest -q tests/test_device.py     (on the GPU machine)
"""

import pytest
import torch

from anyhead.cameras import intrinsics_from_fov, orbit_camera
from recon.gaussians import Gaussians
from recon.render import gsplat_available, render

pytestmark = pytest.mark.skipif(not gsplat_available(), reason="needs CUDA and gsplat")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def random_scene(n: int, seed: int, sh_degree: int | None = None, antialiased: bool = False) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    colors = torch.rand(n, 3, generator=g) if sh_degree is None else torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.5
    return Gaussians(torch.randn(n, 3, generator=g) * 0.08, torch.randn(n, 4, generator=g),
                     torch.log(torch.rand(n, 3, generator=g) * 0.012 + 0.001), torch.randn(n, generator=g) * 1.5,
                     colors, sh_degree, antialiased)


@pytest.mark.parametrize("seed,n,sh,aa", [(0, 2000, None, False), (1, 20000, None, False), (2, 5000, 3, False),
                                          (3, 5000, None, True), (4, 20000, 1, True)])
def test_gsplat_matches_reference(seed, n, sh, aa):
    """aa: gsplat rasterize_mode="antialiased" against the reference's opacity compensation (the v2 model's mode)."""
    g = random_scene(n, seed, sh, aa)
    res = 256
    w2c = torch.stack([torch.tensor(orbit_camera(yaw, 15, 0.6)).float() for yaw in (0, 100, 200)])
    K = torch.tensor(intrinsics_from_fov(35, res, res)).float()[None].repeat(3, 1, 1)
    ref = render(g, w2c, K, res, res, backend="torch")
    gd = g.to("cuda")
    fast = render(gd, w2c.cuda(), K.cuda(), res, res, backend="gsplat")
    for k in ("rgb", "alpha"):
        p = psnr(fast[k].cpu(), ref[k])
        print(f"seed {seed} n {n} sh {sh} antialiased {aa} {k}: PSNR gsplat vs reference {p:.1f} dB")
        assert p > 40.0
    # expected depth where both are well covered
    m = (ref["alpha"] > 0.5) & (fast["alpha"].cpu() > 0.5)
    assert (fast["depth"].cpu()[m] - ref["depth"][m]).abs().median() < 1e-3


@pytest.mark.parametrize("aa", [False, True])
def test_gradients_agree(aa):
    g = random_scene(1500, 3, antialiased=aa)
    res = 128
    w2c = torch.tensor(orbit_camera(30, 10, 0.6)).float()[None]
    K = torch.tensor(intrinsics_from_fov(35, res, res)).float()[None]
    target = torch.rand(1, 3, res, res)
    grads = {}
    for backend, dev in (("torch", "cpu"), ("gsplat", "cuda")):
        gd = g.detach().to(dev)  # fresh leaves for each backend
        for t in (gd.means, gd.colors, gd.opacity_logits, gd.log_scales):
            t.requires_grad_(True)
        out = render(gd, w2c.to(dev), K.to(dev), res, res, backend=backend)
        ((out["rgb"] - target.to(dev)) ** 2).mean().backward()
        grads[backend] = [t.grad.cpu().flatten() for t in (gd.means, gd.colors, gd.opacity_logits, gd.log_scales)]
    for a, b in zip(grads["torch"], grads["gsplat"]):
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
        print(f"gradient cosine similarity {cos:.5f}")
        assert cos > 0.99


def test_batched_gsplat_call_equals_per_scene_calls():
    """All B scenes x V views in one gsplat call give what one call per scene gives."""
    from recon.render import _render_gsplat

    scenes = [random_scene(3000, s) for s in range(4)]
    g = Gaussians(*(torch.stack([getattr(s, f) for s in scenes]).cuda() for f in
                    ("means", "quats", "log_scales", "opacity_logits", "colors")))
    w2c = torch.stack([torch.stack([torch.tensor(orbit_camera(yaw + 30 * b, 10, 0.6)).float() for yaw in (0, 120, 240)])
                       for b in range(4)]).cuda()
    K = torch.tensor(intrinsics_from_fov(35, 128, 128)).float().cuda().expand(4, 3, 3, 3)
    bg = torch.ones(3, device="cuda")
    one = _render_gsplat(g, w2c, K, 128, 128, bg)
    loop = _render_gsplat(g, w2c, K, 128, 128, bg, per_scene=True)
    for k in ("rgb", "alpha", "depth"):
        assert one[k].shape == (4, 3, 3 if k == "rgb" else 1, 128, 128)
        assert (one[k] - loop[k]).abs().max() < 1e-4, k
