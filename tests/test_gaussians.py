import math

import numpy as np
import pytest
import torch

from anyhead.cameras import look_at
from recon.export import load_ply, save_ply, save_splat
from recon.gaussians import SH_C0, Gaussians
from recon.render import render

W = H = 64
F = 100.0


def cam(z=1.0):
    w2c = torch.tensor(look_at([0, 0, z], [0, 0, 0])).float()
    K = torch.tensor([[F, 0, 32.5], [0, F, 32.5], [0, 0, 1.0]])  # the origin projects onto pixel (32, 32)'s centre
    return w2c, K


def gs(means, scales, opac, colors, quats=None):
    n = len(means)
    q = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1) if quats is None else torch.tensor(quats).float()
    op = torch.tensor(opac).float()
    return Gaussians(torch.tensor(means).float(), q, torch.tensor(scales).float().log(), torch.log(op / (1 - op)),
                     torch.tensor(colors).float())


def test_single_gaussian_matches_analytic_profile():
    s, o = 0.01, 0.8
    g = gs([[0, 0, 0]], [[s, s, s]], [o], [[1.0, 0.0, 0.0]])
    w2c, K = cam()
    out = render(g, w2c, K, W, H, background=torch.zeros(3))
    var = (F * s / 1.0) ** 2 + 0.3  # projected variance plus gsplat's eps2d low-pass
    for dx in (0, 1, 2, 3):
        expected = o * math.exp(-0.5 * dx * dx / var)
        assert out["alpha"][0, 32, 32 + dx].item() == pytest.approx(expected, rel=1e-4)
        assert out["rgb"][0, 32, 32 + dx].item() == pytest.approx(expected, rel=1e-4)  # red = alpha on black
    assert out["rgb"][1:, 32, 32].abs().max() < 1e-6
    assert out["depth"][0, 32, 32].item() == pytest.approx(1.0, rel=1e-5)  # expected depth of one Gaussian


@pytest.mark.parametrize("s", [0.0005, 0.002, 0.01, 0.05])
def test_antialiased_compensates_opacity_for_the_low_pass(s):
    """gsplat's antialiased mode: opacity * sqrt(det(cov2d) / det(cov2d + 0.3 I)); for an isotropic
    Gaussian of projected std p pixels that is p^2 / (p^2 + 0.3) at the centre pixel."""
    o = 0.8
    g = gs([[0, 0, 0]], [[s, s, s]], [o], [[1.0, 0.0, 0.0]])
    w2c, K = cam()
    classic = render(g, w2c, K, W, H, background=torch.zeros(3))
    g.antialiased = True
    aa = render(g, w2c, K, W, H, background=torch.zeros(3))
    var = (F * s) ** 2
    comp = var / (var + 0.3)
    assert classic["alpha"][0, 32, 32].item() == pytest.approx(o, rel=1e-4)
    assert aa["alpha"][0, 32, 32].item() == pytest.approx(o * comp, rel=1e-4)
    # the shape is the same blurred profile, only scaled
    for dx in (1, 2):
        expected = o * comp * math.exp(-0.5 * dx * dx / (var + 0.3))
        if expected > 1.5 / 255:
            assert aa["alpha"][0, 32, 32 + dx].item() == pytest.approx(expected, rel=1e-4)
    # gradients flow through the compensation to the scales (a sub-pixel Gaussian grows brighter as it grows)
    g2 = gs([[0, 0, 0]], [[s, s, s]], [o], [[1.0, 0.0, 0.0]])
    g2.antialiased = True
    g2.log_scales.requires_grad_(True)
    render(g2, w2c, K, W, H, background=torch.zeros(3))["alpha"][0, 32, 32].backward()
    assert g2.log_scales.grad.sum() > 0


def test_front_to_back_compositing_and_order_independence():
    w2c, K = cam()
    means = [[0, 0, 0.1], [0, 0, -0.1]]  # first is nearer the camera at z = +1
    g = gs(means, [[0.02] * 3] * 2, [0.6, 0.9], [[1.0, 0, 0], [0, 0, 1.0]])
    out = render(g, w2c, K, W, H, background=torch.ones(3))
    # at the centre pixel each alpha is its opacity
    a1, a2 = 0.6, 0.9
    exp = torch.tensor([a1 + (1 - a1) * (1 - a2), (1 - a1) * (1 - a2), a2 * (1 - a1) + (1 - a1) * (1 - a2)])
    assert torch.allclose(out["rgb"][:, 32, 32], exp, atol=1e-5)
    swapped = gs(means[::-1], [[0.02] * 3] * 2, [0.9, 0.6], [[0, 0, 1.0], [1.0, 0, 0]])
    assert torch.allclose(render(swapped, w2c, K, W, H)["rgb"], out["rgb"], atol=1e-6)


def test_anisotropy_and_rotation():
    w2c, K = cam()
    wide = gs([[0, 0, 0]], [[0.05, 0.005, 0.005]], [0.9], [[1.0, 1, 1]])
    a = render(wide, w2c, K, W, H)["alpha"][0]
    assert a[32, 32 + 5] > 0.5 and a[32 + 5, 32] < 0.01  # 5 px sigma along x, 0.5 px along y
    q = [[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]]  # 90 degrees about z
    tall = gs([[0, 0, 0]], [[0.05, 0.005, 0.005]], [0.9], [[1.0, 1, 1]], quats=q)
    b = render(tall, w2c, K, W, H)["alpha"][0]
    assert torch.allclose(b, a.T, atol=1e-5)


def test_culling_behind_camera_and_faint():
    w2c, K = cam()
    g = gs([[0, 0, 2.0], [0.0, 0.0, 0.0]], [[0.02] * 3] * 2, [0.9, 0.003], [[1.0, 0, 0]] * 2)
    out = render(g, w2c, K, W, H)
    assert out["alpha"].max() == 0  # one behind the camera, one under 1/255 opacity


def test_gradients_flow():
    w2c, K = cam()
    torch.manual_seed(0)
    n = 50
    g = Gaussians((torch.randn(n, 3) * 0.05).requires_grad_(), torch.randn(n, 4).requires_grad_(),
                  torch.full((n, 3), math.log(0.01)).requires_grad_(), torch.zeros(n).requires_grad_(),
                  torch.rand(n, 3).requires_grad_())
    out = render(g, w2c, K, 32, 32)
    out["rgb"].sum().backward()
    for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.colors):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_sh_degree0_equals_rgb():
    w2c, K = cam()
    torch.manual_seed(1)
    g = gs((np.random.default_rng(0).normal(size=(30, 3)) * 0.05).tolist(), [[0.01] * 3] * 30, [0.7] * 30,
           np.random.default_rng(1).random((30, 3)).tolist())
    assert torch.allclose(render(g, w2c, K, 32, 32)["rgb"], render(g.rgb_to_sh(), w2c, K, 32, 32)["rgb"], atol=1e-5)


def test_ply_round_trip_and_splat(tmp_path):
    rng = torch.Generator().manual_seed(0)
    n = 40
    g = Gaussians(torch.randn(n, 3, generator=rng), torch.randn(n, 4, generator=rng), torch.randn(n, 3, generator=rng) - 4,
                  torch.randn(n, generator=rng), torch.rand(n, 3, generator=rng))
    save_ply(g, tmp_path / "h.ply", extra={"note": "test"})
    back, comments = load_ply(tmp_path / "h.ply")
    sh = g.rgb_to_sh()
    for a, b in [(back.means, sh.means), (back.quats, sh.quats), (back.log_scales, sh.log_scales),
                 (back.opacity_logits, sh.opacity_logits), (back.colors, sh.colors)]:
        assert torch.allclose(a, b, atol=1e-6)
    assert back.sh_degree == 0 and comments["sh_degree"] == "0" and comments["antialiased"] == "0"
    assert '"camera":"opencv"' in comments["anyhead_convention"]
    # degree-3 SH survive too (channel-major f_rest, like the reference 3DGS)
    g3 = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, torch.randn(n, 16, 3, generator=rng), 3)
    save_ply(g3, tmp_path / "h3.ply")
    b3, _ = load_ply(tmp_path / "h3.ply")
    assert b3.sh_degree == 3 and torch.allclose(b3.colors, g3.colors, atol=1e-6)
    save_splat(g, tmp_path / "h.splat")
    raw = np.frombuffer((tmp_path / "h.splat").read_bytes(), dtype=np.float32).reshape(n, 8)
    pos = raw[:, :3]
    assert (tmp_path / "h.splat").stat().st_size == 32 * n
    assert np.allclose(np.sort(pos[:, 0]), np.sort(g.means[:, 0].numpy()), atol=1e-6)
    assert abs(SH_C0 * 0 + 0.5 - 0.5) < 1e-9
