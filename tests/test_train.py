import csv
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from anyhead.config import replace
from recon.any3davatar.scaffold import sphere_scaffold
from recon.checkpoints import CheckpointError, build_model, load_model
from recon.train import train
from tests.conftest import ROOT, profile_config

TINY = profile_config("tiny")
MODEL = replace(TINY.any3davatar, {"image_size": 32, "patch": 8, "dim": 48, "heads": 4, "enc_depth": 1, "den_depth": 2,
                                   "n_anchors": 128, "gaussians_per_anchor": 4, "t_star": 0.5, "aux_res": 16, "aux_patch": 8})


def cfg(**over):
    c = {"batch_size": 1, "n_targets": 2, "target_size": 32, "steps": 8, "lr": 3e-3, "warmup": 2,
         "loss": {"l1": 1.0, "ssim": 0.2, "lpips": 0.0, "mask": 0.5, "aux": 0.5}, "seed": 0, "log_every": 1,
         "ckpt_every": 100, "time_budget_min": None}
    c.update(over)
    return replace(TINY.train, c)


def anchors():
    a, n = sphere_scaffold(128, radius=0.09)
    return a, n


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_model_overfits_one_sample(tiny_shards, tmp_path):
    one = [str(sorted(tiny_shards.glob("*.tar"))[0])]
    c = cfg(steps=150, n_targets=6, log_every=1, lr=4e-3, warmup=5)
    train(c, MODEL, one, tmp_path, resume=False, anchors=anchors())
    log = rows(tmp_path / "train_log.csv")
    first = np.mean([float(r["l1"]) for r in log[:3]])
    last = np.mean([float(r["l1"]) for r in log[-10:]])
    assert last < first / 4, f"photometric L1 fell only from {first:.4f} to {last:.4f}"


def test_resume_equals_uninterrupted(tiny_shards, tmp_path):
    c = cfg(steps=8)
    train(c, MODEL, tiny_shards, tmp_path / "a", resume=False, anchors=anchors())
    train(c, MODEL, tiny_shards, tmp_path / "b", resume=False, anchors=anchors(), stop_after=4)  # "killed" after 4 steps
    assert load_model(tmp_path / "b")[1]["step"] == 4
    train(c, MODEL, tiny_shards, tmp_path / "b", resume=True)
    ma, cka = load_model(tmp_path / "a")
    mb, ckb = load_model(tmp_path / "b")
    assert cka["step"] == ckb["step"] == 8
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k
    la, lb = rows(tmp_path / "a" / "train_log.csv"), rows(tmp_path / "b" / "train_log.csv")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def _ddp_worker(rank, world, shards, out, port, methods):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from benchmarks.methods import get_spec
    from recon import train as T

    c = cfg(steps=2, ckpt_every=1, log_every=1)
    for name in methods:
        spec = get_spec(name)
        over = {"image_size": 32, "patch": 8, "dim": 32, "heads": 2, "enc_depth": 1, "den_depth": 1, "n_anchors": 64,
                "aux_res": 16, "aux_patch": 8} if spec.arch == "any3davatar" else {"image_size": 32, "base": 8, "levels": 2}
        mcfg = replace(spec.model_config(TINY), over)
        result = T.train(c, mcfg, shards, os.path.join(out, name), resume=False, anchors=sphere_scaffold(64), method=name)
        # every rank's parameters must equal rank 0's after DDP's all-reduced steps
        flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
        torch.save(flat, os.path.join(out, name, f"params_rank{rank}.pt"))
        torch.save(torch.tensor(result.metrics["loss"]), os.path.join(out, name, f"loss_rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_gloo_every_learned_method(tiny_shards, tmp_path):
    """Two gloo processes train each registered learned method (ablations build only the parameters
    they use, so none trips DDP's unused-parameter check); ranks end identical and log the same
    rank-averaged loss; each checkpoint records its method."""
    import socket

    from benchmarks.methods import learned_methods

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    methods = learned_methods()
    mp.spawn(_ddp_worker, args=(2, str(tiny_shards), str(tmp_path), port, methods), nprocs=2, join=True)
    for name in methods:
        d = tmp_path / name
        p0, p1 = torch.load(d / "params_rank0.pt"), torch.load(d / "params_rank1.pt")
        assert torch.equal(p0, p1), name
        assert torch.equal(torch.load(d / "loss_rank0.pt"), torch.load(d / "loss_rank1.pt")), name
        rec = load_model(d)[1]
        assert rec["step"] == 2 and rec["method"] == name


def test_rank_batches_partition_the_global_batch():
    """With W ranks each takes every W-th draw of the one global batch: together they are exactly it."""
    from recon.cache import pick

    for world in (1, 2, 4):
        glob = pick(50, 24, seed=3, step=7, rank=0, world=1, batch=8 * world, n_targets=4)[0]
        parts = [pick(50, 24, seed=3, step=7, rank=r, world=world, batch=8, n_targets=4)[0] for r in range(world)]
        assert all(len(p) == 8 for p in parts)
        assert sorted(np.concatenate(parts).tolist()) == sorted(glob.tolist())


def test_resume_refuses_a_changed_model_config(tiny_shards, tmp_path):
    c = cfg(steps=4)
    train(c, MODEL, tiny_shards, tmp_path, resume=False, anchors=anchors(), stop_after=2)
    changed = replace(MODEL, {"dim": 64, "t_star": 0.25})
    with pytest.raises(CheckpointError, match=r"differs.*dim: checkpoint 48 vs configured 64.*t_star: checkpoint 0.5 vs configured 0.25"):
        train(c, changed, tiny_shards, tmp_path, resume=True, anchors=anchors())
    assert load_model(tmp_path)[1]["step"] == 2  # the old run is untouched


def test_checkpoints_never_unpickle(tmp_path):
    """A pickle-payload file is refused by every loader and its payload never runs."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"model": Payload()}))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(pickle.dumps(Payload()))  # a pickle under the right name
    for path in (evil, tmp_path / "run", tmp_path / "run" / "model.safetensors"):
        with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
            load_model(path)
    assert not marker.exists()


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    from recon.checkpoints import build_model, save_checkpoint

    splat = replace(TINY.splatter_image, {"image_size": 32, "base": 8, "levels": 2})
    save_checkpoint(tmp_path, build_model(splat), step=3)
    model, record = load_model(tmp_path)
    assert record["arch"] == "splatter_image" and record["step"] == 3
    with pytest.raises(CheckpointError, match="arch: checkpoint 'splatter_image' vs configured 'any3davatar'"):
        load_model(tmp_path, expect=MODEL)


# -- the fast data path, EMA, budgets (issue 10) -------------------------------------------------

@pytest.mark.parametrize("source", ["device", "stream0", "stream2"])
def test_cached_batches_equal_the_decode_path(tiny_shards, tmp_path, source):
    """Every cached source yields exactly the per-step PNG path's batch for the same seed and step."""
    from recon.cache import DecodeBatches, DeviceBatches, StreamBatches, load_or_build

    cpu = torch.device("cpu")
    common = dict(seed=5, rank=0, world=1, batch=3, n_targets=4, input_size=24, target_size=16)
    ref = DecodeBatches(tiny_shards, cpu, **common)
    cache = load_or_build(tiny_shards, tmp_path / "cache")
    assert (tmp_path / "cache" / "cache.json").exists()
    if source == "device":
        new = DeviceBatches(cache, cpu, **common)
    else:
        new = StreamBatches(cache, cpu, **common, start=10, end=14, workers=int(source[-1]))
    for step in range(10, 14):
        a, b = ref(step), new(step)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (step, k)
    # a second run memory-maps the same cache instead of decoding again
    again = load_or_build(tiny_shards, tmp_path / "cache")
    assert isinstance(again.targets, np.memmap) and np.array_equal(np.asarray(again.targets), np.asarray(cache.targets))


def test_killed_run_resumes_bit_exact(tiny_shards, tmp_path):
    """A training process killed with SIGKILL mid-run, then resumed, ends with exactly the weights,
    EMA and log of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    from recon.checkpoints import load_train_state

    c = cfg(steps=30, ckpt_every=5, log_every=5)
    ref = train(c, MODEL, tiny_shards, tmp_path / "ref", resume=False, anchors=anchors())
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import torch; torch.set_num_threads(1)\n"
            "from tests.test_train import cfg, MODEL, anchors; from recon.train import train\n"
            f"train(cfg(steps=30, ckpt_every=5, log_every=5), MODEL, {str(tiny_shards)!r}, {str(tmp_path / 'run')!r},"
            " resume=True, anchors=anchors())\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "model.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = load_model(tmp_path / "run")[1]["step"]
    assert 0 < killed_at < 30, killed_at
    train(c, MODEL, tiny_shards, tmp_path / "run", resume=True, anchors=anchors())
    (ma, ra), (mb, rb) = load_model(tmp_path / "ref"), load_model(tmp_path / "run")
    assert ra["step"] == rb["step"] == 30
    for k, v in ma.state_dict().items():  # the exported (EMA) weights
        assert torch.equal(v, mb.state_dict()[k]), k
    wa, wb = load_train_state(tmp_path / "ref")[0], load_train_state(tmp_path / "run")[0]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the raw weights
    assert [r["loss"] for r in rows(tmp_path / "ref" / "train_log.csv")] == \
        [r["loss"] for r in rows(tmp_path / "run" / "train_log.csv")]
    assert ref.metrics["step"] == 30


def test_ema_weights_are_what_gets_exported(tiny_shards, tmp_path):
    from recon.checkpoints import load_train_state

    result = train(cfg(steps=6, ema_decay=0.9), MODEL, tiny_shards, tmp_path, resume=False, anchors=anchors())
    exported, rec = load_model(tmp_path)
    raw = load_train_state(tmp_path)[0]
    ema = result.ema.state_dict(result.model)
    assert rec["weights"] == "ema" and rec["ema_decay"] == 0.9
    names = [n for n, _ in result.model.named_parameters()]
    for n in names:
        assert torch.equal(exported.state_dict()[n], ema[n]), n
    assert any(not torch.equal(exported.state_dict()[n], raw[n]) for n in names)  # the EMA, not the raw weights
    # the EMA is the average it claims to be: one more update moves it (1 - d) of the way to the weights
    from recon.train import EMA

    e = EMA(result.model, 0.9, {n: torch.zeros_like(p) for n, p in result.model.named_parameters()})
    e.update(result.model, step=1000)
    p0 = dict(result.model.named_parameters())[names[0]]
    assert torch.allclose(e.shadow[0], 0.1 * p0.detach())


def test_no_weight_decay_on_norms_biases_and_embeddings():
    from recon.checkpoints import build_model
    from recon.train import param_groups

    model = build_model(MODEL, anchors=anchors())
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "encoder.vit.pos" in nd and "norm.weight" in nd and "decoder.bias" in nd  # v2: the ViT's table
    assert all(p.ndim >= 2 for p in decay["params"]) and "decoder.weight" in {names[id(p)] for p in decay["params"]}


def test_time_budget_plans_the_schedule_to_its_floor(tiny_shards, tmp_path):
    from recon.train import lr_at

    c = cfg(steps=100000, warmup=2, time_budget_min=0.1, log_every=1000, ckpt_every=1000)
    r = train(c, MODEL, tiny_shards, tmp_path, resume=False, anchors=anchors())
    assert 13 < r.planned_steps < 100000
    rec = load_model(tmp_path)[1]
    assert rec["step"] == r.planned_steps == rec["planned_steps"]
    assert lr_at(r.planned_steps - 1, c, r.planned_steps) == pytest.approx(0.1 * c.lr, rel=1e-3)  # reached the floor


@pytest.mark.parametrize("variant", ["old", "new", "ceiling"])
def test_bench_train_runs_every_variant(tiny_shards, ict_model, tmp_path, variant):
    """The training benchmark's three paths run (on CPU here) and report every phase."""
    from benchmarks.bench_train import PHASES, bench
    from tests.conftest import CACHE

    mcfg = replace(TINY.any3davatar, {"image_size": 32, "n_anchors": 64, "dim": 32, "heads": 2, "aux_res": 16})
    tcfg = replace(TINY.train, {"target_size": 16, "n_targets": 2})
    r = bench(variant, tcfg, mcfg, str(tiny_shards), str(tmp_path / "cache"), torch.device("cpu"), 2, steps=2, warmup=1,
              ict_model=str(CACHE / "ict_model_test.npz"))
    assert r["samples_per_s"] > 0 and set(r["phases_ms"]) == set(PHASES)


def test_init_from_released_weights_warm_starts(tiny_shards, tmp_path):
    """--init-from: the new run starts from the given weights at step 0 with a fresh optimizer; weights of another
    config are refused."""
    from recon.checkpoints import load_train_state

    train(cfg(steps=4, ema_decay=0.0), MODEL, tiny_shards, tmp_path / "a", resume=False, anchors=anchors())
    released, _ = load_model(tmp_path / "a")
    r = train(cfg(steps=1, ema_decay=0.0, lr=1e-12, warmup=0), MODEL, tiny_shards, tmp_path / "b", resume=False,
              anchors=anchors(), init_from=tmp_path / "a" / "model.safetensors")
    assert load_model(tmp_path / "b")[1]["step"] == 1
    for k, v in released.state_dict().items():  # one step at lr 1e-12: still the released weights
        assert torch.allclose(v, r.model.state_dict()[k], atol=1e-6), k
    opt = load_train_state(tmp_path / "b")[1]
    assert all(int(s["step"]) == 1 for s in opt["state"].values())  # a fresh optimizer: one step, not five
    with pytest.raises(CheckpointError, match="dim: checkpoint 48 vs configured 64"):
        train(cfg(steps=2), replace(MODEL, {"dim": 64}), tiny_shards, tmp_path / "c", resume=False, anchors=anchors(),
              init_from=tmp_path / "a" / "model.safetensors")
def test_init_from_another_scaffold_keeps_the_network_and_rebuilds_the_scaffold(tiny_shards, tmp_path):
    """A warm start may change the scaffold (e.g. shoulders on): the network weights carry over, the anchors and
    the scaffold state are the new config's; any other config difference is still refused."""
    train(cfg(steps=2, ema_decay=0.0), MODEL, tiny_shards, tmp_path / "a", resume=False, anchors=anchors())
    src, _ = load_model(tmp_path / "a")
    wide = replace(MODEL, {"shoulders": True, "torso_floor": -0.3})
    a2, n2 = sphere_scaffold(128, radius=0.12)
    r = train(cfg(steps=1, ema_decay=0.0, lr=1e-12, warmup=0), wide, tiny_shards, tmp_path / "b", resume=False,
              anchors=(a2, n2), init_from=tmp_path / "a" / "model.safetensors")
    fresh = build_model(wide, anchors=(a2, n2))
    got = r.model.state_dict()
    for k in ("anchors", "normals", "x_scaffold"):
        assert torch.equal(got[k].cpu(), fresh.state_dict()[k]), k
    for k in ("anchors", "x_scaffold"):  # (a larger sphere: the same normals)
        assert not torch.allclose(got[k].cpu(), src.state_dict()[k]), k
    for k, v in src.state_dict().items():
        if k not in ("anchors", "normals", "x_scaffold"):
            assert torch.allclose(v, got[k].cpu(), atol=1e-6), k
    assert load_model(tmp_path / "b")[0].cfg.shoulders
    with pytest.raises(CheckpointError, match="dim"):
        train(cfg(steps=1, warmup=0), replace(wide, {"dim": 64}), tiny_shards, tmp_path / "c", resume=False, anchors=(a2, n2),
              init_from=tmp_path / "a" / "model.safetensors")


def test_same_scaffold_warm_start_offset_limits_follow_the_loaded_anchors(tiny_shards, tmp_path):
    """The per-anchor offset limits are derived, not stored: after a warm start loads the checkpoint's anchors into
    a model built on other anchors, the limits are those of the loaded anchors."""
    from recon.any3davatar.scaffold import region_offset_limits

    train(cfg(steps=2, ema_decay=0.0), MODEL, tiny_shards, tmp_path / "a", resume=False, anchors=anchors())
    a, n = sphere_scaffold(128, radius=0.09)
    other = (a + np.float32([0.0, -0.06, 0.03]), n)  # shifted: other anchors fall in the face / neck regions
    r = train(cfg(steps=1, ema_decay=0.0, lr=1e-12, warmup=0), MODEL, tiny_shards, tmp_path / "b", resume=False,
              anchors=other, init_from=tmp_path / "a" / "model.safetensors")
    m = r.model
    assert torch.equal(m.anchors.cpu(), load_model(tmp_path / "a")[0].anchors)
    want = torch.from_numpy(region_offset_limits(m.anchors.cpu().numpy(), MODEL.max_offset, MODEL.hair_offset))
    assert torch.equal(m.offset_limit.cpu(), want)
    assert not torch.equal(build_model(MODEL, anchors=other).offset_limit, want)  # the refresh mattered


def test_crop_of_the_render_is_the_render_of_the_crop():
    """A crop window with the principal point shifted renders exactly that window of the full view."""
    from anyhead.cameras import intrinsics_from_fov, orbit_camera
    from recon.gaussians import Gaussians
    from recon.render import render
    from recon.train import crop_targets

    g = torch.Generator().manual_seed(0)
    n = 400
    gs = Gaussians(torch.randn(1, n, 3, generator=g) * 0.06, torch.randn(1, n, 4, generator=g),
                   torch.log(torch.rand(1, n, 3, generator=g) * 0.01 + 0.002), torch.randn(1, n, generator=g),
                   torch.rand(1, n, 3, generator=g), antialiased=True)
    T, C = 48, 20
    w2c = torch.stack([torch.tensor(orbit_camera(y, 10, 0.5)).float() for y in (0, 90)])[None]
    K = torch.tensor(intrinsics_from_fov(35, T, T)).float().expand(1, 2, 3, 3)
    full = render(gs, w2c, K, T, T)
    batch = {"t_rgb": full["rgb"], "t_mask": full["alpha"], "t_K": K}
    crop = crop_targets(batch, C, torch.Generator().manual_seed(3))
    part = render(gs, w2c, crop["t_K"], C, C)
    assert crop["t_rgb"].shape == (1, 2, 3, C, C) and crop["t_mask"].shape == (1, 2, 1, C, C)
    # equal but for Gaussians centred far outside the window, whose EWA Jacobian gsplat clamps to the (window's)
    # frustum: a slight change of their footprint's shape
    d = (part["rgb"] - crop["t_rgb"]).abs()
    print(f"crop render vs crop of render: mean {d.mean():.2e}, max {d.max():.2e}")
    assert d.mean() < 1e-4 and d.max() < 1e-2 and (part["alpha"] - crop["t_mask"]).abs().mean() < 1e-4
    offsets = (K[..., :2, 2] - crop["t_K"][..., :2, 2])
    assert not torch.equal(offsets[0, 0], offsets[0, 1])  # each view its own window


def test_foreground_weighted_l1():
    from recon.losses import weighted_l1

    gt = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # top half foreground
    err_fg, err_bg = gt.clone(), gt.clone()
    err_fg[..., 0, 0] = 1.0
    err_bg[..., 3, 3] = 1.0
    assert weighted_l1(err_fg, gt, mask, 0.0) == weighted_l1(err_bg, gt, mask, 0.0) == (err_fg - gt).abs().mean()
    # with weight 3 a foreground error counts 4x a background one, and the mean weight normalises the scale
    assert torch.isclose(weighted_l1(err_fg, gt, mask, 3.0), 4 * weighted_l1(err_bg, gt, mask, 3.0))
    assert torch.isclose(weighted_l1(torch.ones_like(gt), gt, mask, 3.0), torch.tensor(1.0))


def test_training_on_random_full_resolution_crops_resumes_exactly(tiny_shards, tmp_path):
    c = cfg(steps=4, target_size=32, crop_size=16)
    m = replace(MODEL, {"aux_res": 16})
    train(c, m, tiny_shards, tmp_path / "a", resume=False, anchors=anchors())
    train(c, m, tiny_shards, tmp_path / "b", resume=False, anchors=anchors(), stop_after=2)
    train(c, m, tiny_shards, tmp_path / "b", resume=True)
    la, lb = rows(tmp_path / "a" / "train_log.csv"), rows(tmp_path / "b" / "train_log.csv")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and all(np.isfinite(float(r["loss"])) for r in la)
