"""Inference replayed as one CUDA graph: image -> Gaussians with a single launch.

At batch 1 the inference module is launch-bound: a few hundred small kernels (encoder, scaffold tokens,
denoiser blocks, decoder) whose GPU work takes less time than the CPU spends issuing them. A CUDA
graph records those launches once for a fixed batch, image size and dtype and replays them with one
call, so end-to-end time approaches the GPU time.

    fast = GraphedInference(model.inference_module().cuda(), batch=1, dtype=torch.bfloat16)
    g = fast(image, w2c, K)          # image (1, 3, S, S), w2c (1, 4, 4), K (1, 3, 3), on the GPU

The noised scaffold state at t* is a constant of the model (fixed noise), so it is computed once at
capture, outside the graph. Outputs live in the graph's static buffers and are overwritten by the next
call: ``clone=True`` (the default) returns copies. Rendering is not captured: gsplat sizes its tile
lists on the host from the data, which a graph cannot replay.
"""
from __future__ import annotations

import torch

from ..gaussians import Gaussians
from .model import InferenceAny3DAvatar


class GraphedInference:
    """A CUDA-graph replay of :class:`InferenceAny3DAvatar` for a fixed (batch, image size, dtype, t)."""

    def __init__(self, inf: InferenceAny3DAvatar, batch: int = 1, dtype: torch.dtype = torch.bfloat16,
                 t: float | None = None, warmup: int = 3) -> None:
        device = next(inf.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"GraphedInference needs the model on a CUDA device, not {device}")
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"GraphedInference: dtype {dtype} is not one of float32, bfloat16, float16")
        if any(m.training for m in inf.modules()):  # the caller's modes are the caller's: refuse rather than flip them
            raise ValueError("GraphedInference: put the model in eval mode first (model.eval()); capture records eval behaviour")
        self.inf, self.dtype, self.batch = inf, dtype, batch
        S = inf.cfg.image_size
        self.image = torch.zeros(batch, 3, S, S, device=device)
        self.w2c = torch.eye(4, device=device).repeat(batch, 1, 1)
        self.w2c[:, 2, 3] = 0.65  # a valid camera for the warm-up (the values are replaced on every call)
        self.K = torch.tensor([[S, 0.0, S / 2], [0.0, S, S / 2], [0.0, 0.0, 1.0]], device=device).repeat(batch, 1, 1)
        with torch.no_grad():  # host-to-device copies (t) are not allowed while capturing
            x_t, tt = inf.noised_state(batch, None, inf.cfg.t_star if t is None else t, device)
        self.x_t, self.t = x_t.contiguous(), tt.contiguous()
        # warm up on a side stream (cuBLAS/cuDNN workspaces and algorithm choice happen outside the capture)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(max(1, warmup)):
                self._run()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._run()

    def _run(self) -> Gaussians:
        with torch.no_grad(), torch.autocast("cuda", dtype=self.dtype, enabled=self.dtype != torch.float32):
            tok, fmap = self.inf.encoder(self.image)
            return self.inf.decode(self.inf.denoise(tok, fmap, self.w2c, self.K, self.x_t, self.t))

    def __call__(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, clone: bool = True) -> Gaussians:
        """Gaussians for image (B, 3, S, S) in [0, 1], w2c (B, 4, 4), K (B, 3, 3), B and S as captured."""
        for name, got, want in (("images", image, self.image), ("w2c", w2c, self.w2c), ("K", K, self.K)):
            if got.shape != want.shape:  # copy_ would broadcast one camera over the batch without a word
                raise ValueError(f"GraphedInference was captured for {name} {tuple(want.shape)}, got {tuple(got.shape)}")
        self.image.copy_(image)
        self.w2c.copy_(w2c)
        self.K.copy_(K)
        self.graph.replay()
        return self.out.clone() if clone else self.out


def compiled_inference(inf: InferenceAny3DAvatar, mode: str = "reduce-overhead"):
    """``torch.compile`` of the inference module (inductor's fused kernels; ``reduce-overhead`` also replays
    CUDA graphs). The first calls compile (tens of seconds); shapes must stay fixed to avoid recompiles."""
    return torch.compile(inf, mode=mode, fullgraph=False)
