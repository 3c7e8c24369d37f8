import numpy as np
import pytest
import torch

from anyhead.cameras import camera_center, intrinsics_from_fov, orbit_camera, plucker_rays
from anyhead.config import replace
from recon.any3davatar import Any3DAvatar
from recon.any3davatar.scaffold import random_scaffold, sphere_scaffold, template_scaffold
from tests.conftest import profile_config

TINY = profile_config("tiny")
CFG = dict(image_size=32, patch=8, dim=32, heads=2, enc_depth=1, den_depth=1, n_anchors=64, gaussians_per_anchor=3,
           aux_res=16, aux_patch=8)


def make(**over):
    cfg = replace(TINY.any3davatar, {**CFG, **over})
    a, n = sphere_scaffold(cfg.n_anchors) if cfg.scaffold == "structured" else random_scaffold(cfg.n_anchors)
    torch.manual_seed(0)
    return Any3DAvatar(cfg, torch.tensor(a), torch.tensor(n))


def inputs(B=2, V=3):
    w2c = torch.stack([torch.tensor(orbit_camera(10.0 * b, 5, 0.6)).float() for b in range(B)])
    K = torch.tensor(intrinsics_from_fov(30, 32, 32)).float()[None].repeat(B, 1, 1)
    tw = torch.stack([torch.stack([torch.tensor(orbit_camera(120.0 * v, 0, 0.6)).float() for v in range(V)])] * B)
    return torch.rand(B, 3, 32, 32), w2c, K, tw, K[:, None].repeat(1, V, 1, 1)


def test_output_shapes_and_finiteness():
    m = make()
    img, w2c, K, tw, tK = inputs()
    out = m(img, w2c, K, tw, tK, (32, 32))
    g = out["gaussians"]
    N = 64 * 3
    assert g.means.shape == (2, N, 3) and g.quats.shape == (2, N, 4) and g.colors.shape == (2, N, 3)
    assert g.opacity_logits.shape == (2, N) and out["aux_rgb"].shape == (2, 3, 3, 16, 16)
    for t in (g.means, g.quats, g.scales, g.opacities, g.colors, out["aux_rgb"]):
        assert torch.isfinite(t).all()
    # Gaussians stay near their anchors, with bounded sizes and valid colours
    d = (g.means.view(2, 64, 3, 3) - m.anchors[None, :, None]).norm(dim=-1)
    assert d.max() <= m.cfg.max_offset * 3**0.5 + 1e-6
    assert g.colors.min() >= 0 and g.colors.max() <= 1 and g.scales.max() < 0.14


def test_starts_at_the_scaffold():
    m = make()
    img, w2c, K, *_ = inputs()
    g = m.reconstruct(img, w2c, K)
    init = m.activate(m.x_init[None].expand(2, -1, -1))
    assert torch.allclose(g.means, init.means) and torch.allclose(g.colors, torch.full_like(g.colors, 0.5))


def test_plucker_embedding_values():
    img, w2c, K, *_ = inputs()
    o = camera_center(w2c)
    assert np.allclose(o[0].numpy(), camera_center(w2c[0].double().numpy()), atol=1e-5)
    m = make()
    a = m.anchors[:5]
    from anyhead.cameras import plucker_rays_torch

    pl = plucker_rays_torch(o[0].expand(5, 3), a - o[0]).numpy()
    ref = plucker_rays(np.broadcast_to(o[0].numpy(), (5, 3)), a.numpy() - o[0].numpy())
    assert np.allclose(pl, ref, atol=1e-6)
    # the ray passes through the anchor: its moment equals anchor x direction
    assert np.allclose(np.cross(a.numpy(), pl[:, :3]), pl[:, 3:], atol=1e-6)


def test_aux_head_absent_from_inference_graph():
    m = make()
    calls = []
    for mod in m.aux.modules():
        mod.register_forward_hook(lambda *a: calls.append(1))
    img, w2c, K, tw, tK = inputs()
    m.eval()
    g = m.reconstruct(img, w2c, K)
    inf = m.inference_module()
    g2 = inf(img, w2c, K)
    assert calls == []  # never run at inference
    assert torch.equal(g.means, g2.means) and torch.equal(g.colors, g2.colors)
    n_all = sum(p.numel() for p in m.parameters())
    n_aux = sum(p.numel() for p in m.aux.parameters())
    n_inf = sum(p.numel() for p in inf.parameters())
    assert n_aux > 0 and n_inf == n_all - n_aux
    assert not any(n.startswith("aux") for n, _ in inf.named_parameters())
    m.train()
    m(img, w2c, K, tw, tK, (32, 32))
    assert calls  # but it is part of training
    # the auxiliary loss trains the shared tokens: gradients reach the encoder through it
    m.zero_grad()
    m(img, w2c, K, tw, tK, (32, 32))["aux_rgb"].mean().backward()
    assert m.encoder.stem[0].weight.grad.abs().sum() > 0


def test_ablation_switches():
    img, w2c, K, tw, tK = inputs()
    assert make(aux_head=False).aux is None
    rnd = make(scaffold="random")
    assert not torch.allclose(rnd.anchors, make().anchors)
    nop = make(plucker=False)
    nop.train()
    nop(img, w2c, K)["gaussians"].means.sum().backward()
    assert nop.plucker_embed is None  # Plücker rays are not used at all: not even built (DDP needs every parameter used)
    t0 = make(t_star=0.0).train()
    n1, n2 = torch.randn(2, 64, 42), torch.randn(2, 64, 42)
    assert torch.equal(t0(img, w2c, K, noise=n1)["latent"], t0(img, w2c, K, noise=n2)["latent"])  # plain regression
    tn = make(t_star=0.5).train()
    assert not torch.equal(tn(img, w2c, K, noise=n1)["latent"], tn(img, w2c, K, noise=n2)["latent"])


def test_template_scaffold_covers_the_head(ict_model):
    a, n = template_scaffold(ict_model, 512)
    assert a.shape == (512, 3) and np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    assert (a[:, 2] < -0.08).sum() > 20 and (a[:, 1] > 0.1).sum() > 5  # back and top of the head
    assert (a[:, 2] > 0.08).sum() > 10  # the face
    # evenly spread: nearest-neighbour distances within a small range
    d = np.linalg.norm(a[:, None] - a[None], axis=-1) + np.eye(len(a))
    nn = d.min(1)
    assert nn.max() < 4 * np.median(nn)
    # outward normals
    assert (np.einsum("ij,ij->i", a, n) > 0).mean() > 0.9


def test_config_mismatch_error():
    with pytest.raises(ValueError, match="anchors"):
        Any3DAvatar(replace(TINY.any3davatar, {**CFG, "n_anchors": 10}), torch.zeros(5, 3), torch.ones(5, 3))


def test_splatter_image_places_gaussians_around_the_head_at_any_distance():
    from recon.splatter_image import SplatterImage

    m = SplatterImage(replace(TINY.splatter_image, {"image_size": 32, "base": 16, "levels": 2}))
    for dist in (0.44, 1.06):  # the input rig's range of camera distances
        w2c = torch.tensor(orbit_camera(20, 5, dist)).float()[None]
        K = torch.tensor(intrinsics_from_fov(20, 32, 32)).float()[None]
        g = m(torch.rand(1, 3, 32, 32), w2c, K)["gaussians"]
        # untrained, every pixel's Gaussian sits at the head centre's depth along its ray: the
        # central pixel's ray passes through the head centre
        assert g.means[0, 16 * 32 + 16].norm() < 0.01, dist
        cam_dist = (g.means[0] - camera_center(w2c)[0]).norm(dim=-1)
        assert (cam_dist > dist - 0.27).all() and (cam_dist < dist + 0.27).all()
