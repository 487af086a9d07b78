"""A learned affine registration: a convolutional encoder regressing 12 affine parameters.

In the manner of DLIR and VTN's affine network: both images on a coarse canonical grid (the
moving one through the linear transform found so far, e.g. the centres-of-mass
initialization), strided convolutions with instance normalisation, then
a linear layer on the features pooled to a 3 x 3 x 3 layout (a global average would throw away
where things are, which a translation and a rotation need) giving the engine's ``affine`` parameters (see
:mod:`regsuite.engine.transforms.linear`): ``A = A_shear @ A_scale @ R`` and a translation,
about the canonical grid's centre ``c`` and along its axes. The map it adds is

    x -> c + A (x - c) + t        (canonical frame; then the transform found before)

The last layer starts at zero, so an untrained network is the identity. Training adds VTN's
orthogonality and determinant losses on ``A`` (:func:`orthogonality_loss`,
:func:`determinant_loss`) to the similarity measure.

Example:
    >>> import torch
    >>> net = AffineNet(width=0.25)
    >>> matrix, translation = net.affine(net(torch.zeros(1, 2, 64, 64, 64)))
    >>> bool(torch.allclose(matrix, torch.eye(3))), bool(torch.all(translation == 0))
    (True, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..engine.transforms.linear import affine_matrix
from .networks import ConvBlock, _scaled

#: channels of the encoder's stride-2 blocks at width 1
AFFINE_ENCODER = (16, 32, 32, 64, 64)
#: the layout the encoder's last features are pooled to before the linear head
POOLED = 3
#: what one unit of the network's output means: radians, mm, log scale factor, shear
OUTPUT_SCALE = {"angles": 0.5, "translation": 20.0, "log_scales": 0.2, "shears": 0.1}


class AffineNet(nn.Module):
    """Encoder + pooling to 3 x 3 x 3 + linear head: 12 affine parameters of a fixed/moving pair."""

    def __init__(self, width: float = 1.0, encoder: Sequence[int] = AFFINE_ENCODER, norm: bool = True) -> None:
        super().__init__()
        channels = _scaled(encoder, width)
        self.config: dict[str, Any] = {"width": float(width), "encoder": list(encoder), "norm": bool(norm)}
        blocks, previous = [], 2
        for c in channels:
            blocks += [ConvBlock(previous, c, stride=2, norm=norm), ConvBlock(c, c, norm=norm)]
            previous = c
        self.encoder = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(POOLED)
        self.head = nn.Linear(previous * POOLED ** 3, 12)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        #: an affine network has no velocity output (the engine's network stage needs one)
        self.velocity_level = None

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        """``(N, 12)``: angles, translation, log scales, shears, in the units of :data:`OUTPUT_SCALE`."""
        features = self.pool(self.encoder(pair)).flatten(1)
        return self.head(features)

    @staticmethod
    def affine(parameters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, t)`` of the first row of :meth:`forward`'s output (canonical frame, mm)."""
        p = parameters[0]
        angles = p[0:3] * OUTPUT_SCALE["angles"]
        translation = p[3:6] * OUTPUT_SCALE["translation"]
        log_scales = p[6:9] * OUTPUT_SCALE["log_scales"]
        shears = p[9:12] * OUTPUT_SCALE["shears"]
        return affine_matrix(angles, log_scales, shears), translation


def orthogonality_loss(matrix: torch.Tensor) -> torch.Tensor:
    """VTN's orthogonality loss: ``sum(l + 1/l) - 6`` over the eigenvalues ``l`` of ``A^T A``
    (zero for a rotation, growing with scaling and shearing)."""
    eigenvalues = torch.linalg.eigvalsh(matrix.T @ matrix).clamp(min=1e-6)
    return (eigenvalues + 1.0 / eigenvalues).sum() - 6.0


def determinant_loss(matrix: torch.Tensor) -> torch.Tensor:
    """VTN's determinant loss ``(det A - 1)^2`` (zero for a volume-preserving map, large for a
    reflection)."""
    return (torch.linalg.det(matrix) - 1.0).square()


def world_affine(matrix: torch.Tensor, translation: torch.Tensor, direction: np.ndarray,
                 center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's map ``c + A (x - c) + t`` (canonical axes ``direction``) as world
    ``x -> M x + b`` (float64)."""
    d = np.asarray(direction, dtype=np.float64)
    a = d @ matrix.detach().cpu().double().numpy() @ d.T
    t = d @ translation.detach().cpu().double().numpy()
    c = np.asarray(center, dtype=np.float64)
    return a, c - a @ c + t
