"""Linear transforms: rigid, decomposed affine and plain 12-parameter affine.

Every linear transform maps a fixed world point to a moving world point::

    x_moving = A @ (x_fixed - c) + c + t

with a fixed centre of rotation ``c`` (world mm). Parametrisations:

* ``rigid``: ``p = (alpha, beta, gamma, tx, ty, tz)``, ``A = R = Rz(gamma) @ Ry(beta) @ Rx(alpha)``;
* ``affine``: ``A = A_shear @ A_scale @ R`` with ``A_scale = diag(sx, sy, sz)`` and ``A_shear``
  unit upper triangular with ``(kxy, kxz, kyz)``; 12 parameters
  ``(alpha, beta, gamma, tx, ty, tz, sx, sy, sz, kxy, kxz, kyz)``;
* ``affine-matrix``: the 9 entries of ``A`` (row-major) and ``t``.

The optimiser sees *scaled* variables so that a unit step moves points by about 1 mm at the
distance ``radius`` from the centre: angle = q / radius, log-scale = q / radius, shear = q / radius.

Example:
    >>> import numpy as np
    >>> rigid = LinearTransform("rigid", center=np.zeros(3), radius=100.0)
    >>> rigid.set_parameters(np.array([0.0, 0.0, np.pi / 2, 1.0, 0.0, 0.0]))
    >>> A, b = rigid.matrix_offset()
    >>> np.round(A.detach().numpy() @ [1.0, 0.0, 0.0] + b.detach().numpy(), 6).tolist()
    [1.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from ...errors import InputError

LinearKind = Literal["rigid", "affine", "affine-matrix"]
LINEAR_KINDS: tuple[str, ...] = ("rigid", "affine", "affine-matrix")
_NUM_PARAMETERS = {"rigid": 6, "affine": 12, "affine-matrix": 12}


def rotation_matrix_zyx(angles: torch.Tensor) -> torch.Tensor:
    """``Rz(gamma) @ Ry(beta) @ Rx(alpha)`` for ``angles = (alpha, beta, gamma)`` in radians."""
    alpha, beta, gamma = angles[0], angles[1], angles[2]
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    ca, sa, cb, sb, cg, sg = alpha.cos(), alpha.sin(), beta.cos(), beta.sin(), gamma.cos(), gamma.sin()
    rx = torch.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca]).reshape(3, 3)
    ry = torch.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb]).reshape(3, 3)
    rz = torch.stack([cg, -sg, zero, sg, cg, zero, zero, zero, one]).reshape(3, 3)
    return rz @ ry @ rx


def affine_matrix(angles: torch.Tensor, log_scales: torch.Tensor, shears: torch.Tensor) -> torch.Tensor:
    """``A = A_shear @ A_scale @ R`` of the ``affine`` parametrisation (radians, log scale
    factors, shears ``(kxy, kxz, kyz)``); differentiable in all three."""
    one, zero = torch.ones_like(shears[0]), torch.zeros_like(shears[0])
    shear = torch.stack([one, shears[0], shears[1], zero, one, shears[2], zero, zero, one]).reshape(3, 3)
    return shear @ torch.diag(torch.exp(log_scales)) @ rotation_matrix_zyx(angles)


def angles_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_matrix_zyx` (``beta`` in [-pi/2, pi/2])."""
    r = np.asarray(rotation, dtype=np.float64)
    beta = -math.asin(float(np.clip(r[2, 0], -1.0, 1.0)))
    if abs(math.cos(beta)) > 1e-8:
        alpha = math.atan2(r[2, 1], r[2, 2])
        gamma = math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: put everything in gamma
        alpha = 0.0
        gamma = math.atan2(-r[0, 1], r[1, 1])
    return np.array([alpha, beta, gamma])


def _rq(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ decomposition ``matrix = upper @ orthogonal`` (upper triangular), from numpy's QR."""
    flip = np.eye(3)[::-1]
    q, r = np.linalg.qr((flip @ matrix).T)
    return flip @ r.T @ flip, flip @ q.T


def decompose_affine(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``A`` into ``(angles, scales, shears)`` with ``A = shear @ scale @ R``.

    Raises :class:`InputError` for a reflection (negative determinant).
    """
    a = np.asarray(matrix, dtype=np.float64)
    if np.linalg.det(a) <= 0:
        raise InputError("the initial linear transform contains a reflection; use the 'affine-matrix' model")
    upper, rotation = _rq(a)
    signs = np.sign(np.diag(upper))
    upper = upper * signs[np.newaxis, :]
    rotation = signs[:, np.newaxis] * rotation
    scales = np.diag(upper).copy()
    shear = upper / scales[np.newaxis, :]
    return angles_from_rotation(rotation), scales, np.array([shear[0, 1], shear[0, 2], shear[1, 2]])


class LinearTransform(nn.Module):
    """A rigid or affine map of fixed world points to moving world points."""

    def __init__(
        self,
        kind: LinearKind,
        center: np.ndarray,
        radius: float = 100.0,
        matrix: np.ndarray | None = None,
        translation: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if kind not in LINEAR_KINDS:
            raise InputError(f"unknown linear model '{kind}'; expected one of {', '.join(LINEAR_KINDS)}")
        self.kind: str = kind
        self.radius = float(max(radius, 1.0))
        self.register_buffer("center", torch.as_tensor(np.asarray(center, dtype=np.float64)))
        self.q = nn.Parameter(torch.zeros(_NUM_PARAMETERS[kind], dtype=torch.float64))
        self.set_matrix(np.eye(3) if matrix is None else matrix, np.zeros(3) if translation is None else translation)

    # ------------------------------------------------------------------ parameters
    @property
    def num_parameters(self) -> int:
        return self.q.numel()

    def parameters_physical(self) -> np.ndarray:
        """The documented parameters (radians, mm, scale factors, shears)."""
        q = self.q.detach().cpu().numpy()
        out = q.copy()
        if self.kind == "rigid":
            out[:3] = q[:3] / self.radius
        elif self.kind == "affine":
            out[:3] = q[:3] / self.radius
            out[6:9] = np.exp(q[6:9] / self.radius)
            out[9:12] = q[9:12] / self.radius
        else:
            out[:9] = np.eye(3).ravel() + q[:9] / self.radius
        return out

    def set_parameters(self, physical: np.ndarray) -> None:
        """Set from documented parameters (inverse of :meth:`parameters_physical`)."""
        p = np.asarray(physical, dtype=np.float64).copy()
        q = p.copy()
        if self.kind == "rigid":
            q[:3] = p[:3] * self.radius
        elif self.kind == "affine":
            q[:3] = p[:3] * self.radius
            q[6:9] = np.log(p[6:9]) * self.radius
            q[9:12] = p[9:12] * self.radius
        else:
            q[:9] = (p[:9] - np.eye(3).ravel()) * self.radius
        with torch.no_grad():
            self.q.copy_(torch.as_tensor(q))

    def set_matrix(self, matrix: np.ndarray, translation: np.ndarray) -> None:
        """Set from ``A`` and ``t`` (about this transform's centre); a rigid model keeps the
        rotation closest to ``A`` (scales and shears are dropped)."""
        a = np.asarray(matrix, dtype=np.float64)
        t = np.asarray(translation, dtype=np.float64)
        if self.kind == "rigid":
            u, _, vt = np.linalg.svd(a)
            rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
            self.set_parameters(np.concatenate([angles_from_rotation(rotation), t]))
        elif self.kind == "affine":
            angles, scales, shears = decompose_affine(a)
            self.set_parameters(np.concatenate([angles, t, scales, shears]))
        else:
            self.set_parameters(np.concatenate([a.ravel(), t]))

    def set_affine(self, matrix: np.ndarray, offset: np.ndarray) -> None:
        """Set from a map ``x -> matrix @ x + offset`` given about the world origin."""
        c = self.center.cpu().numpy()
        self.set_matrix(matrix, np.asarray(offset) + np.asarray(matrix) @ c - c)

    # ------------------------------------------------------------------ evaluation
    def matrix_translation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, t)`` as differentiable float64 tensors."""
        q, r = self.q, self.radius
        t = q[3:6] if self.kind != "affine-matrix" else q[9:12]
        if self.kind == "rigid":
            return rotation_matrix_zyx(q[:3] / r), t
        if self.kind == "affine":
            return affine_matrix(q[:3] / r, q[6:9] / r, q[9:12] / r), t
        return torch.eye(3, dtype=q.dtype, device=q.device) + q[:9].reshape(3, 3) / r, t

    def matrix_offset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, b)`` with ``x_moving = A @ x_fixed + b`` (about the world origin)."""
        a, t = self.matrix_translation()
        c = self.center.to(a.dtype)
        return a, t + c - a @ c

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        a, b = self.matrix_offset()
        return points @ a.T.to(points.dtype) + b.to(points.dtype)

    # ------------------------------------------------------------------ export
    def to_sitk(self) -> sitk.Transform:
        """The ITK transform (Euler3DTransform for rigid, AffineTransform otherwise)."""
        a, t = (v.detach().cpu().numpy() for v in self.matrix_translation())
        center = self.center.cpu().numpy().tolist()
        if self.kind == "rigid":
            angles = self.parameters_physical()[:3]
            euler = sitk.Euler3DTransform()
            euler.SetComputeZYX(True)
            euler.SetCenter(center)
            euler.SetRotation(*angles.tolist())
            euler.SetTranslation(t.tolist())
            return euler
        affine = sitk.AffineTransform(3)
        affine.SetCenter(center)
        affine.SetMatrix(a.ravel().tolist())
        affine.SetTranslation(t.tolist())
        return affine


def sitk_linear_to_affine(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` of a linear SimpleITK transform with ``x_moving = A @ x + b``.

    Works for any linear transform (composites of linear pieces too) by probing points.
    """
    probes = np.vstack([np.zeros(3), np.eye(3)]) * 100.0
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in probes])
    offset = mapped[0]
    matrix = ((mapped[1:] - offset) / 100.0).T
    return matrix, offset
