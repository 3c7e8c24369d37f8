import csv
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from anyhead.config import replace
from recon.any3davatar.scaffold import sphere_scaffold
from recon.checkpoints import CheckpointError, load_model
from recon.train import train
from tests.conftest import profile_config

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


def _ddp_worker(rank, world, shards, out, port, anchors_):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from recon import train as T

    c = cfg(steps=3, ckpt_every=1)
    result = T.train(c, MODEL, shards, out, resume=False, anchors=anchors_)
    # every rank's parameters must equal rank 0's after DDP's all-reduced steps
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    torch.save(flat, os.path.join(out, f"params_rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_gloo(tiny_shards, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp.spawn(_ddp_worker, args=(2, str(tiny_shards), str(tmp_path), port, anchors()), nprocs=2, join=True)
    p0, p1 = torch.load(tmp_path / "params_rank0.pt"), torch.load(tmp_path / "params_rank1.pt")
    assert p0 is not None and torch.equal(p0, p1)
    assert load_model(tmp_path)[1]["step"] == 3


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
