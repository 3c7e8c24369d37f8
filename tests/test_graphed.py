"""Inference replayed as one CUDA graph (recon/any3davatar/graphed.py): the same Gaussians as the eager
inference module, for every new input written into the captured buffers. The comparison needs CUDA (it
runs in the device session); on CPU the wrapper must refuse with a clear error."""
import pytest
import torch

from recon.any3davatar.graphed import GraphedInference
from tests.test_model import inputs, make, randomise

CUDA = torch.cuda.is_available()


def test_refuses_a_cpu_model():
    with pytest.raises(ValueError, match="CUDA"):
        GraphedInference(make().inference_module())


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("version", [1, 2])
def test_graph_replays_match_eager(version):
    inf = randomise(make(arch_version=version)).eval().inference_module().cuda()
    graphed = GraphedInference(inf, batch=2, dtype=torch.float32)
    torch.manual_seed(3)
    for _ in range(3):  # fresh images and cameras each time: the static buffers are refilled, not stale
        image, w2c, K = (x.cuda() for x in inputs(B=2)[:3])
        image = torch.rand_like(image)
        ref = inf(image, w2c, K)
        got = graphed(image, w2c, K)
        for name in ("means", "quats", "log_scales", "opacity_logits", "colors"):
            assert torch.allclose(getattr(got, name), getattr(ref, name), atol=1e-4, rtol=1e-4), name
    with pytest.raises(ValueError, match="captured for images"):
        graphed(torch.rand(1, 3, 32, 32, device="cuda"), w2c[:1], K[:1])
    with pytest.raises(ValueError, match="captured for w2c"):  # one camera would broadcast over the batch
        graphed(image, w2c[:1], K)
    with pytest.raises(ValueError, match="eval mode"):
        GraphedInference(randomise(make(arch_version=version)).train().inference_module().cuda())
