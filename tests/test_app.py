"""recon.app without a browser: the viewer's copy of the head, and a clear error for a photo without a face."""
import numpy as np
import pytest
import torch
from PIL import Image

from anyhead.io import InputError
from recon.app import VIEWER_SCALE, Demo, viewer_copy
from recon.gaussians import Gaussians
from tests.tiny_model import write_tiny_checkpoint


def test_viewer_copy_is_y_down_and_scaled():
    # one Gaussian at the top of the head, elongated along +y (head frame), and one at the nose
    g = Gaussians(torch.tensor([[0.0, 0.1, 0.0], [0.0, 0.0, 0.1]]), torch.tensor([[1.0, 0, 0, 0]] * 2),
                  torch.log(torch.tensor([[0.001, 0.01, 0.001]] * 2)), torch.zeros(2), torch.full((2, 3), 0.5))
    v = viewer_copy(g)
    assert v.means[0, 1] == pytest.approx(-0.1 * VIEWER_SCALE)  # the top is up in a y-down viewer
    assert torch.linalg.norm(v.means[1]) == pytest.approx(0.1 * VIEWER_SCALE)
    assert v.means[1, 2] < 0  # the face points at the viewer's default camera (its -z side, turned by the yaw)
    from scipy.spatial.transform import Rotation

    w, x, y, z = v.quats[0].tolist()
    long_axis = Rotation.from_quat([x, y, z, w]).as_matrix()[:, 1]  # the Gaussian's own y axis, now in the viewer
    assert abs(long_axis[1]) == pytest.approx(1.0, abs=1e-6)  # still vertical: rotated with the means
    assert np.allclose(v.log_scales - g.log_scales, np.log(VIEWER_SCALE))


def test_demo_says_when_there_is_no_face(tmp_path):
    demo = Demo(write_tiny_checkpoint(tmp_path / "ck.safetensors"), "cpu", tmp_path / "work")
    Image.fromarray(np.full((100, 100, 3), 200, np.uint8)).save(tmp_path / "wall.png")
    with pytest.raises(InputError, match="wall.png: no face found"):
        demo.run(str(tmp_path / "wall.png"))
    with pytest.raises(InputError, match="upload a portrait"):
        demo.run(None)
