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
