"""Photos and captures in training (issue 14, recon/mix.py): the mix reaches the trainer's batches at the configured
ratio on every data path, a photo is supervised on its input view alone, photo_mix 0 changes nothing, captures join
the multi-view pool with their GT flag, and bad settings stop before training, naming the key."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anyhead.cameras import CONVENTION
from anyhead.config import ConfigError, replace
from anyhead.shards import read_tar_samples, write_shards
from recon.cache import DeviceBatches, load_or_build
from recon.data import composite_white_u8
from recon.losses import ReconLoss
from recon.mix import MixedBatches, training_batches
from tests.conftest import ROOT
from tests.test_train import MODEL, TINY, anchors, cfg

CPU = torch.device("cpu")
S = 24  # input size used by the batch tests (the model's 32 in the training ones)


def _samples(shards: Path) -> list[dict[str, bytes]]:
    return [{k: v for k, v in f.items() if k != "__key__"} for p in sorted(shards.glob("*.tar")) for f in read_tar_samples(p)]


def _input_on_white(files: dict[str, bytes], size: int) -> torch.Tensor:
    """A sample file's input portrait composited on white with its mask, area-resized to size: what training should see."""
    from anyhead.samples import decode_sample
    from recon.data import mask_u8

    v = decode_sample(files).input
    x = torch.from_numpy(composite_white_u8(v.rgb, mask_u8(v.mask))).permute(2, 0, 1).float() / 255
    return torch.nn.functional.interpolate(x[None], size=(size, size), mode="area")[0]


@pytest.fixture(scope="module")
def real_splits(tiny_shards, tmp_path_factory):
    """The tiny renders repackaged the way the photos and captures stages write real data: ``photos`` (each head's
    input portrait as a single-view photo on a coloured background with its matte) and ``captures`` (each head as a
    capture; the first without GT geometry, the second with)."""
    from anyhead.samples import decode_sample, encode_json, encode_view

    root = tmp_path_factory.mktemp("real_splits")
    photos, captures = [], []
    for n, files in enumerate(_samples(tiny_shards)):
        s = decode_sample(files)
        inp = s.input
        m = inp.mask[..., None]
        bg = np.array([40, 90, 160], np.float32)  # a real background: blue wall, kept in the file as photos keep it
        rgb = np.clip(np.round(inp.rgb * (m > 0) + bg * (m == 0)), 0, 255).astype(np.uint8)
        cams = json.loads(files["cameras.json"])
        pf = encode_view("input_000", rgb, inp.mask)
        pf["cameras.json"] = encode_json({"convention": CONVENTION, "views": [dict(v, name="input_000") for v in cams["views"]
                                                                               if v["name"] == inp.name]})
        key = f"photo_h{n}"
        pf["meta.json"] = encode_json({"asset_id": key, "identity_id": f"photo-{key}", "source": "photo", "single_view": True,
                                       "background": "estimate", "convention": CONVENTION})
        photos.append((key, lambda pf=pf: pf))
        cf = dict(files)
        meta = json.loads(files["meta.json"]) | {"asset_id": f"capture_h{n}", "identity_id": f"capture-h{n}",
                                                 "source": "capture", "gt_points": n == 1}
        cf["meta.json"] = encode_json(meta)
        if n == 0:
            cf.pop("points.npy")
        captures.append((f"capture_h{n}", lambda cf=cf: cf))
    write_shards(photos, root / "photos", "photos", 1)
    uneven = dict(captures[0][1]())  # a subject with one target view fewer
    cams = json.loads(uneven["cameras.json"])
    cams["views"] = [v for v in cams["views"] if v["name"] != "view_005"]
    uneven = {k: v for k, v in uneven.items() if not k.startswith("view_005.")} | {"cameras.json": encode_json(cams)}
    write_shards([("capture_h0", lambda: uneven), captures[1]], root / "captures_uneven", "captures", 1)
    write_shards(captures, root / "captures", "captures", 1)
    (root / "empty").mkdir()
    return root


def mixed(tiny_shards, real_splits, tmp_path, data_path="device", **over):
    c = cfg(**({"batch_size": 4, "n_targets": 2, "data_path": data_path} | over))
    return training_batches(c, tiny_shards, tmp_path / "cache" / "train", CPU, 0, 1, S, 0, real_splits / "photos",
                            real_splits / "captures", tmp_path / "cache" / "photos", tmp_path / "cache" / "captures")


def test_photo_mix_reaches_the_batches_at_its_ratio(tiny_shards, real_splits, tmp_path):
    src = mixed(tiny_shards, real_splits, tmp_path, photo_mix=0.5)
    assert isinstance(src, MixedBatches) and src.kind == "device"
    photos = _samples(real_splits / "photos")
    seen = set()
    for step in range(6):
        b = src(step)
        ph = b["photo"].bool()
        assert ph.sum() == 2 and b["image"].shape[0] == 4  # 0.5 of batch 4, every step
        assert torch.equal(b["t_weight"][ph], torch.tensor([[1.0, 0.0]] * 2))  # input view only
        assert torch.equal(b["t_weight"][~ph], torch.ones(2, 2))
        assert torch.equal(b["geo"], (~ph).float())  # renders have GT geometry, photos none
        sel = src.selection(step)
        for k in np.nonzero(ph.numpy())[0]:
            i = sel.idx[k]
            seen.add(int(i))
            # the photo's supervised view is its input portrait, at its camera, composited on white with its matte
            assert torch.equal(b["t_rgb"][k, 0], _input_on_white(photos[i], 32))
            assert torch.equal(b["image"][k], _input_on_white(photos[i], S))
            assert torch.equal(b["t_w2c"][k, 0], b["w2c"][k]) and torch.equal(b["t_w2c"][k, 1], b["w2c"][k])
            assert torch.allclose(b["t_K"][k, 0, :2], b["K"][k, :2] * 32 / S)
            assert b["image"][k].min() >= 0 and torch.allclose(b["image"][k, :, 0, 0], torch.ones(3))  # white, not blue
    assert seen == {0, 1}


def test_photo_mix_is_kept_over_steps_when_not_whole(tiny_shards, real_splits, tmp_path):
    """0.3 of batch 4 is 1.2 photos: one or two per step, 1.2 on average."""
    src = mixed(tiny_shards, real_splits, tmp_path, photo_mix=0.3)
    counts = [int(src.selection(s).pool.tolist().count(1)) for s in range(400)]
    assert set(counts) == {1, 2} and abs(np.mean(counts) - 1.2) < 0.08


def test_photo_mix_zero_leaves_batches_unchanged(tiny_shards, real_splits, tmp_path):
    """photo_mix 0 (and no captures): the plain source, the batches of before, even with photos on disk."""
    src = mixed(tiny_shards, real_splits, tmp_path, photo_mix=0.0)
    assert isinstance(src, DeviceBatches)
    ref = DeviceBatches(load_or_build(tiny_shards, tmp_path / "ref"), CPU, 0, 0, 1, 4, 2, S, 32)
    for step in range(4):
        a, b = ref(step), src(step)
        assert a.keys() == b.keys() == {"image", "w2c", "K", "t_rgb", "t_mask", "t_w2c", "t_K"}
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("path", ["stream0", "stream1", "decode"])
def test_mixed_batches_are_the_same_on_every_data_path(tiny_shards, real_splits, tmp_path, path):
    dev = mixed(tiny_shards, real_splits, tmp_path, photo_mix=0.5, use_captures=True)
    kind = path.rstrip("01")
    other = mixed(tiny_shards, real_splits, tmp_path, data_path=kind, photo_mix=0.5, use_captures=True,
                  loader_workers=int(path[-1]) if kind == "stream" else 0)
    assert other.kind == kind
    for step in range(4):
        a, b = dev(step), other(step)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (step, k)


def test_captures_reach_the_trainer_with_their_gt_flag(tiny_shards, real_splits, tmp_path):
    """use_captures: the captures join the multi-view pool (drawn uniformly with the renders: 2 of 4 samples), with
    every loss term on every target view; the capture without GT points is flagged geo 0, the one with them 1."""
    src = mixed(tiny_shards, real_splits, tmp_path, use_captures=True)
    caps = _samples(real_splits / "captures")
    names = [p.name for p in src.pools]
    assert names == ["train", "captures"]
    n_cap, flags = 0, {}
    for step in range(20):
        b, sel = src(step), src.selection(step)
        assert torch.equal(b["t_weight"], torch.ones(4, 2)) and not b["photo"].any()
        for k in range(4):
            if sel.pool[k] == 1:
                n_cap += 1
                flags[int(sel.idx[k])] = float(b["geo"][k])
                assert torch.equal(b["image"][k], _input_on_white(caps[sel.idx[k]], S))
            else:
                assert b["geo"][k] == 1
    assert flags == {0: 0.0, 1: 1.0}
    assert 25 < n_cap < 55  # half of 80 draws, binomial


def test_photo_loss_is_the_masked_input_view_loss(tiny_shards, real_splits, tmp_path):
    """Through the model and the renderer: the loss of a mixed batch equals the plain loss of the supervised views
    alone, a photo's term is its input view's foreground-weighted L1 etc. by hand, and its other views get no
    gradient."""
    from recon.checkpoints import build_model
    from recon.render import render

    src = mixed(tiny_shards, real_splits, tmp_path, photo_mix=0.5)
    b = src(0)
    model = build_model(replace(MODEL, {"image_size": S, "aux_res": 32}), anchors=anchors())
    torch.manual_seed(0)
    o = model(b["image"], b["w2c"], b["K"], b["t_w2c"], b["t_K"], (32, 32), torch.randn(4, *model.noise_shape))
    r = render(o["gaussians"], b["t_w2c"], b["t_K"], 32, 32)
    rgb = r["rgb"].detach().flatten(0, 1).requires_grad_()
    alpha = r["alpha"].detach().flatten(0, 1).requires_grad_()
    aux = o["aux_rgb"].detach().flatten(0, 1).float().requires_grad_()
    gt, mask = b["t_rgb"].flatten(0, 1), b["t_mask"].flatten(0, 1)
    w = b["t_weight"].flatten()
    c = cfg(photo_mix=0.5)
    lw = c.loss
    loss_fn = ReconLoss(lw)
    loss, parts = loss_fn(rgb, alpha, gt, mask, aux, gt, w)
    keep = w > 0
    ref, ref_parts = loss_fn(rgb[keep], alpha[keep], gt[keep], mask[keep], aux[keep], gt[keep])  # the old, unweighted path
    assert torch.allclose(loss, ref, rtol=1e-5) and all(torch.allclose(parts[k], ref_parts[k], rtol=1e-5) for k in parts)
    loss.backward()
    pad = ~keep
    assert pad.sum() == 2 and rgb.grad[pad].abs().max() == 0 and alpha.grad[pad].abs().max() == 0 and aux.grad[pad].abs().max() == 0
    ph = b["photo"].bool().repeat_interleave(2) & keep
    assert rgb.grad[ph].abs().sum() > 0
    # one photo alone, by hand: its input view, foreground-weighted with its matte
    k = int(np.nonzero(ph.numpy())[0][0])
    x, y, m, a = rgb[k:k + 1].detach(), gt[k:k + 1], mask[k:k + 1], alpha[k:k + 1].detach()
    wp = 1 + lw.fg_weight * m
    l1 = ((x - y).abs() * wp).sum() / (3 * wp.sum())
    from recon.losses import ssim

    hand = lw.l1 * l1 + lw.ssim * (1 - ssim(x, y, crop=False)[0]) + lw.mask * (a - m).abs().mean() + \
        lw.aux * (aux[k:k + 1].detach() - y).abs().mean()
    one = torch.zeros_like(w)
    one[k] = 1
    assert torch.allclose(loss_fn(rgb.detach(), alpha.detach(), gt, mask, aux.detach(), gt, one)[0], hand, rtol=1e-5)


def test_training_with_photos_and_captures(tiny_shards, real_splits, tmp_path):
    """A short run of the real trainer on the mix: finite losses, and resuming reproduces it exactly."""
    from recon.train import train
    from tests.test_train import rows

    c = cfg(steps=4, batch_size=2, photo_mix=0.5, use_captures=True)
    kw = dict(anchors=anchors(), photos=real_splits / "photos", captures=real_splits / "captures")
    train(c, MODEL, tiny_shards, tmp_path / "a", resume=False, **kw)
    train(c, MODEL, tiny_shards, tmp_path / "b", resume=False, stop_after=2, **kw)
    train(c, MODEL, tiny_shards, tmp_path / "b", resume=True, **kw)
    la, lb = rows(tmp_path / "a" / "train_log.csv"), rows(tmp_path / "b" / "train_log.csv")
    assert len(la) == 4 and all(np.isfinite(float(r["loss"])) for r in la)
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_the_photos_stage_output_trains(tiny_shards, tmp_path):
    """The photos stage's own sample (the built-in astronaut: matte, rig camera, real background) in a mixed batch,
    composited on white, and two training steps on it."""
    from anyhead.photos import write_photo_split
    from recon.train import train

    man = write_photo_split(TINY.photos, tmp_path / "photos", 1)
    assert man["keys"] == ["photo_astronaut"]
    astro = _samples(tmp_path / "photos")[0]
    src = training_batches(cfg(batch_size=2, photo_mix=0.5), tiny_shards, None, CPU, 0, 1, S, 0, photos=tmp_path / "photos")
    b = src(0)
    k = int(b["photo"].argmax())
    assert b["photo"].sum() == 1 and torch.equal(b["image"][k], _input_on_white(astro, S))
    assert torch.equal(b["t_rgb"][k, 0], _input_on_white(astro, 32)) and b["geo"][k] == 0
    r = train(cfg(steps=2, batch_size=2, photo_mix=0.5), MODEL, tiny_shards, tmp_path / "run", resume=False,
              anchors=anchors(), photos=tmp_path / "photos")
    assert np.isfinite(r.metrics["loss"])


def test_bad_mix_settings_fail_early_naming_the_key(tiny_shards, real_splits, tmp_path):
    from recon.config import load_config
    from recon.train import train

    params = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    line = "    train: {n_targets: 2, target_size: 32,"
    assert text.count(line) == 1  # the tiny profile's train line
    params.write_text(text.replace(line, line.replace("{", "{photo_mix: 1.5, ")))
    with pytest.raises(ConfigError, match=r"profiles.tiny.train.photo_mix: 1.5 must be less than 1"):
        load_config(params, "tiny")
    with pytest.raises(ConfigError, match=r"train.photo_mix: 0.5 > 0, but .*empty holds no photo samples"):
        train(cfg(photo_mix=0.5), MODEL, tiny_shards, tmp_path / "run", resume=False, anchors=anchors(),
              photos=real_splits / "empty")
    with pytest.raises(ConfigError, match=r"train.photo_mix: 0.5 > 0, but None holds no photo samples"):
        train(cfg(photo_mix=0.5), MODEL, tiny_shards, tmp_path / "run", resume=False, anchors=anchors())
    with pytest.raises(ConfigError, match=r"train.use_captures: true, but .*empty holds no capture samples"):
        train(cfg(use_captures=True), MODEL, tiny_shards, tmp_path / "run", resume=False, anchors=anchors(),
              captures=real_splits / "empty")
    with pytest.raises(ConfigError, match=r"train.n_targets: 7 is more than the 6 target views of the train samples"):
        mixed(tiny_shards, real_splits, tmp_path, use_captures=True, n_targets=7)
    with pytest.raises(ConfigError, match=r"train.photo_mix: .*captures.* sample capture_h0 is not single-view"):
        training_batches(cfg(photo_mix=0.5), tiny_shards, None, CPU, 0, 1, S, 0, photos=real_splits / "captures")
    for path in ("device", "decode"):
        with pytest.raises(ConfigError, match=r"train.use_captures: .*captures_uneven: samples have different .*captures.max_targets"):
            training_batches(cfg(use_captures=True, data_path=path), tiny_shards, None, CPU, 0, 1, S, 0,
                             captures=real_splits / "captures_uneven")
    assert not (tmp_path / "run").exists()  # nothing was trained or written
