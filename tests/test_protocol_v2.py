"""Benchmark protocol v2 building blocks: protocol, statistics, geometry v2, timing, shard integrity.
(Identity similarity has its own file, tests/test_identity.py: it loads dlib's models.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anyhead.cameras import look_at, orbit_camera
from benchmarks.protocol import (
    ANGLE_BUCKETS,
    DEFAULT_PROTOCOL,
    YAW_BUCKETS,
    EvaluationProtocol,
    angle_bucket,
    relative_angle_deg,
    yaw_bucket,
)

# ---------------------------------------------------------------- protocol


@pytest.mark.parametrize("yaw_in, pitch_in, yaw_t, pitch_t, expected", [
    (0, 0, 0, 0, 0.0), (0, 0, 30, 0, 30.0), (0, 0, -90, 0, 90.0), (0, 0, 180, 0, 180.0),
    (40, 0, 180, 0, 140.0),  # a "back" view (|yaw| >= 120) only 140 degrees from a 40-degree input
    (-40, 0, 40, 0, 80.0), (0, 0, 0, 50, 50.0), (0, 30, 0, -20, 50.0), (0, 0, 90, 45, 90.0),
    (0, 45, 180, 45, 90.0),  # over the top of the head
])
def test_relative_angle_known_orbit_cameras(yaw_in, pitch_in, yaw_t, pitch_t, expected):
    a = relative_angle_deg(orbit_camera(yaw_in, pitch_in, 1.2), orbit_camera(yaw_t, pitch_t, 0.8))
    assert a == pytest.approx(expected, abs=1e-6)


def test_relative_angle_batched_off_centre_and_look_at():
    inp = look_at((0, 0, 1.0))
    targets = np.stack([look_at((1.0, 0, 0)), look_at((0, 0, -2.0)), look_at((0, 0.5, 0.5), target=(0, 0.1, 0))])
    np.testing.assert_allclose(relative_angle_deg(inp, targets), [90, 180, 45], atol=1e-6)
    # the angle is about the head centre, whatever the camera looks at: a camera at the same place
    # looking elsewhere is at 0 degrees
    assert relative_angle_deg(inp, look_at((0, 0, 1.0), target=(0.3, 0.2, 0))) == pytest.approx(0, abs=1e-6)
    # a different centre changes the answer
    assert relative_angle_deg(look_at((0, 0, 1.0)), look_at((1.0, 0, 0)), center=(0, 0, -1)) == pytest.approx(
        np.degrees(np.arctan2(1, 1)), abs=1e-6)


def test_buckets_edges_and_yaw_view():
    assert [angle_bucket(a) for a in (0, 30, 30.01, 90, 90.5, 150, 150.5, 180)] == [
        "0-30", "0-30", "30-90", "30-90", "90-150", "90-150", "150-180", "150-180"]
    with pytest.raises(ValueError):
        angle_bucket(-1)
    assert [yaw_bucket(y) for y in (0, -30, 31, 119, 120, -150, 200, 330)] == [
        YAW_BUCKETS[0], YAW_BUCKETS[0], YAW_BUCKETS[1], YAW_BUCKETS[1], YAW_BUCKETS[2], YAW_BUCKETS[2],
        YAW_BUCKETS[2], YAW_BUCKETS[0]]
    # the dataset card keeps a plain copy of the v1 buckets: they must agree
    from anyhead import card

    assert tuple(card.YAW_BUCKETS) == YAW_BUCKETS
    assert all(card.yaw_bucket(y) == yaw_bucket(y) for y in np.linspace(-400, 400, 161))


def test_label_views_and_csim_rule():
    p = EvaluationProtocol()
    inp = orbit_camera(40, 0, 1.0)
    yaws = [40, 0, -40, 130, 180, -140]
    labels = p.label_views(inp, np.stack([orbit_camera(y, 0, 1.0) for y in yaws]), yaws)
    assert [round(lb.angle_deg) for lb in labels] == [0, 40, 80, 90, 140, 180]
    assert [lb.angle_bucket for lb in labels] == ["0-30", "30-90", "30-90", "30-90", "90-150", "150-180"]
    assert [lb.yaw_bucket for lb in labels] == [YAW_BUCKETS[1], YAW_BUCKETS[0], YAW_BUCKETS[1], YAW_BUCKETS[2],
                                                YAW_BUCKETS[2], YAW_BUCKETS[2]]
    assert [lb.counts_for_csim for lb in labels] == [True, True, True, True, False, False]
    # yaw from the camera centre when the records have none
    assert [round(lb.yaw_deg) for lb in p.label_views(inp, np.stack([orbit_camera(y, 0, 1.0) for y in yaws]))] == [
        40, 0, 40, 130, 180, 140]


def test_compositing_masks_and_card():
    p = DEFAULT_PROTOCOL
    rgb = torch.full((2, 3, 4, 4), 0.2)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2, :] = 1.0
    mask[..., 2, :] = 0.5
    out = p.composite_gt(rgb, mask)
    assert torch.allclose(out[..., :2, :], torch.tensor(0.2)) and torch.allclose(out[..., 3, :], torch.tensor(1.0))
    assert torch.allclose(out[..., 2, :], torch.tensor(0.6))
    out_np = p.composite_gt(np.full((4, 4, 3), 0.2), mask[0, 0, ..., None].numpy())
    np.testing.assert_allclose(out_np[..., 0], out[0, 0].numpy(), atol=1e-6)
    alpha = torch.zeros(2, 1, 4, 4)
    alpha[..., 3, 0] = 0.9  # a false positive outside the GT mask
    region = p.eval_region(mask, alpha)
    assert region.dtype == torch.bool and int(region[0].sum()) == 9  # 8 GT (> 0.5, so not the 0.5 row) + 1
    assert int(EvaluationProtocol(masked_region="gt").eval_region(mask, alpha)[0].sum()) == 8
    card = p.card()
    assert set(card["angle_buckets"]) == set(ANGLE_BUCKETS) and card["mask_threshold"] == 0.5
    assert "90" in card["csim_views"]
    import json

    json.dumps(card)
    with pytest.raises(ValueError):
        EvaluationProtocol(angle_edges_deg=(0, 90, 180))


# ---------------------------------------------------------------- statistics

def test_bootstrap_ci_covers_mean_and_shrinks_with_n():
    from benchmarks.metrics.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    widths = {}
    for n in (10, 40, 160):
        v = rng.normal(25.0, 2.0, n)
        ci = bootstrap_ci(v, seed=1)
        assert ci.low < v.mean() < ci.high and ci.n == n
        widths[n] = ci.high - ci.low
    # width ~ 2 * 1.96 * sd / sqrt(n): halves when n quadruples
    assert widths[10] > widths[40] > widths[160]
    assert widths[160] == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(160), rel=0.25)
    assert bootstrap_ci(v, seed=1) == bootstrap_ci(v, seed=1)  # seeded
    c = bootstrap_ci([3.0] * 7)
    assert (c.mean, c.low, c.high) == (3.0, 3.0, 3.0)
    assert np.isnan(bootstrap_ci([1.0]).low) and bootstrap_ci([np.nan, np.nan]).n == 0


def test_bootstrap_coverage_near_nominal():
    from benchmarks.metrics.stats import bootstrap_ci

    rng = np.random.default_rng(5)
    hits = 0
    for i in range(200):
        ci = bootstrap_ci(rng.normal(0.0, 1.0, 40), n_boot=500, seed=i)
        hits += ci.low < 0.0 < ci.high
    assert 0.88 <= hits / 200 <= 0.99  # percentile bootstrap at n = 40: slightly under 95 %


def test_buckets_resample_heads_not_views():
    import pandas as pd

    from benchmarks.metrics.stats import bucket_intervals

    # head a: 100 views of 0 in bucket "x"; head b: 1 view of 1. Heads weigh equally.
    df = pd.DataFrame({"key": ["a"] * 100 + ["b"], "bucket": ["x"] * 101, "psnr": [0.0] * 100 + [1.0]})
    r = bucket_intervals(df, "psnr", buckets=["x", "y"])
    assert r["x"].mean == 0.5 and r["x"].n == 2 and r["x"].low == 0.0 and r["x"].high == 1.0
    assert r["y"].n == 0 and np.isnan(r["y"].mean)
    assert r["overall"].mean == 0.5


def test_paired_differences():
    import pandas as pd

    from benchmarks.metrics.stats import paired_bucket_differences, paired_difference

    rng = np.random.default_rng(2)
    heads = [f"h{i}" for i in range(30)]
    rows = [{"key": h, "bucket": b, "psnr": 20 + 5 * rng.normal() + i % 3}
            for h in heads for b in ("0-30", "150-180") for i in range(4)]
    df = pd.DataFrame(rows)
    same = paired_bucket_differences(df, df.copy(), "psnr")
    assert all((v.mean, v.low, v.high) == (0.0, 0.0, 0.0) and v.n == 30 for v in same.values())
    better = df.assign(psnr=df["psnr"] + 0.5)
    d = paired_bucket_differences(better, df, "psnr", buckets=["0-30", "150-180"])
    assert all(v.mean == pytest.approx(0.5) and v.low == pytest.approx(0.5) and v.high == pytest.approx(0.5)
               for v in d.values())
    # a noisy improvement of 0.3 per head: the paired interval covers it and excludes 0, although the
    # unpaired intervals of the two methods overlap (head-to-head variation is 5 dB)
    base = {h: 20 + 5 * rng.normal() for h in heads}
    new = {h: v + 0.3 + 0.2 * rng.normal() for h, v in base.items()}
    p = paired_difference(new, base, seed=3)
    assert p.low < 0.3 < p.high and p.low > 0
    # only common, non-NaN heads
    assert paired_difference({"a": 1.0, "b": 2.0, "c": np.nan}, {"a": 0.0, "c": 1.0, "d": 5.0}).n == 1
