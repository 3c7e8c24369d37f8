"""The 3D Gaussian container: raw parameters plus their activations.

Raw (unconstrained) parameters are stored; properties give the activated values the rasterizer
uses: ``scales = exp(log_scales)``, ``opacities = sigmoid(opacity_logits)``, unit ``quats``
(w, x, y, z). Colour is either RGB in [0, 1] (``sh_degree=None``) or spherical-harmonic
coefficients (N, (d+1)^2, 3) as in 3DGS. A leading batch dimension is allowed everywhere.
Positions are in the head frame (metres, +y up, +z out of the face).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

# real spherical-harmonics basis constants (degrees 0-3), the one copy the package uses
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


@dataclass
class Gaussians:
    means: torch.Tensor  # (..., N, 3)
    quats: torch.Tensor  # (..., N, 4) wxyz, any norm
    log_scales: torch.Tensor  # (..., N, 3)
    opacity_logits: torch.Tensor  # (..., N)
    colors: torch.Tensor  # (..., N, 3) RGB in [0, 1], or (..., N, K, 3) SH coefficients
    sh_degree: int | None = None  # None: colors are RGB
    antialiased: bool = False  # made for gsplat's antialiased rasterisation (opacity compensated for the 2D blur)

    @property
    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def unit_quats(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def num(self) -> int:
        return self.means.shape[-2]

    def __getitem__(self, i: int | slice) -> "Gaussians":
        """Index the batch dimension."""
        return Gaussians(self.means[i], self.quats[i], self.log_scales[i], self.opacity_logits[i], self.colors[i],
                         self.sh_degree, self.antialiased)

    def _map(self, fn) -> "Gaussians":
        """``fn`` applied to every tensor field; the others (sh_degree, antialiased) kept."""
        return Gaussians(*(fn(v) if torch.is_tensor(v) else v for v in (getattr(self, f.name) for f in fields(self))))

    def detach(self) -> "Gaussians":
        return self._map(torch.Tensor.detach)

    def to(self, *args, **kwargs) -> "Gaussians":
        return self._map(lambda t: t.to(*args, **kwargs))

    def clone(self) -> "Gaussians":
        return self._map(torch.Tensor.clone)

    def rgb_to_sh(self) -> "Gaussians":
        """Degree-0 SH form of RGB colours (what 3DGS viewers expect)."""
        if self.sh_degree is not None:
            return self
        return Gaussians(self.means, self.quats, self.log_scales, self.opacity_logits,
                         ((self.colors - 0.5) / SH_C0).unsqueeze(-2), 0, self.antialiased)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) in wxyz order."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def covariance(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariance R S S^T R^T (..., 3, 3)."""
    M = quat_to_rotmat(quats) * scales.unsqueeze(-2)
    return M @ M.transpose(-1, -2)
