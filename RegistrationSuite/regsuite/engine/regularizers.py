"""Regularizers of a displacement field, with derivatives taken in the world frame.

A displacement ``u (N, 3, D, H, W)`` holds world components ``(x, y, z)`` in mm, sampled on a
grid with ``spacing (x, y, z)`` mm and ``direction`` (3x3, columns = world directions of the
index axes; default identity). Index derivatives are finite differences (central inside, one
sided at the borders) and are converted to world derivatives with the chain rule:
``d/dx_world_r = sum_a M[a, r] d/d index_a`` where ``M = (direction @ diag(spacing))^-1``.
Tensor dim ``4 - a`` holds index axis ``a`` (W = x = i, H = y = j, D = z = k).

Example:
    >>> import torch
    >>> from regsuite.engine.regularizers import diffusion, jacobian_determinant
    >>> u = torch.zeros(1, 3, 8, 8, 8)
    >>> float(diffusion(u, (1.0, 1.0, 2.0))), float(jacobian_determinant(u, (1.0, 1.0, 2.0)).mean())
    (0.0, 1.0)
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, PresetError

Regularizer = Callable[..., Tensor]
REGULARIZER_NAMES = ("diffusion", "bending", "folding")


def central_difference(x: Tensor, dim: int) -> Tensor:
    """Derivative along ``dim`` per unit index step: central inside, one-sided at both ends.

    Example:
        >>> central_difference(torch.tensor([0.0, 1.0, 4.0, 9.0]), 0).tolist()
        [1.0, 2.0, 4.0, 5.0]
    """
    n = x.shape[dim]
    if n < 2:
        return torch.zeros_like(x)
    first = x.narrow(dim, 1, 1) - x.narrow(dim, 0, 1)
    last = x.narrow(dim, n - 1, 1) - x.narrow(dim, n - 2, 1)
    if n == 2:
        return torch.cat((first, last), dim)
    inner = (x.narrow(dim, 2, n - 2) - x.narrow(dim, 0, n - 2)) * 0.5
    return torch.cat((first, inner, last), dim)


def second_difference(x: Tensor, dim: int) -> Tensor:
    """Second derivative along ``dim`` per unit index step: ``[1, -2, 1]``, border = its neighbour.

    Exact for quadratics everywhere (zero when ``dim`` has fewer than 3 samples).

    Example:
        >>> second_difference(torch.tensor([0.0, 1.0, 4.0, 9.0]), 0).tolist()
        [2.0, 2.0, 2.0, 2.0]
    """
    n = x.shape[dim]
    if n < 3:
        return torch.zeros_like(x)
    inner = x.narrow(dim, 2, n - 2) - 2.0 * x.narrow(dim, 1, n - 2) + x.narrow(dim, 0, n - 2)
    return torch.cat((inner.narrow(dim, 0, 1), inner, inner.narrow(dim, n - 3, 1)), dim)


def _check_field(u: Tensor) -> None:
    if not isinstance(u, Tensor) or u.dim() != 5 or u.shape[1] != 3 or not u.is_floating_point():
        shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
        raise InputError(f"regularizer: displacement must be a floating (N, 3, D, H, W) tensor, got {shape}")


def index_to_world(spacing: Sequence[float], direction: Any = None) -> tuple[np.ndarray, bool]:
    """``M = (direction @ diag(spacing))^-1`` (``M[a, r] = d index_a / d x_r``) and whether
    ``direction`` is orthonormal (then only the spacing matters for rotation-invariant norms)."""
    try:
        steps = np.asarray([float(s) for s in spacing], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"regularizer: spacing must be three numbers (x, y, z), got {spacing!r}") from None
    if steps.shape != (3,) or not np.all(steps > 0) or not np.all(np.isfinite(steps)):
        raise InputError(f"regularizer: spacing must be three positive numbers (x, y, z), got {spacing!r}")
    if direction is None:
        rotation = np.eye(3)
    else:
        if isinstance(direction, Tensor):
            direction = direction.detach().cpu().numpy()
        rotation = np.asarray(direction, dtype=np.float64)
        if rotation.size != 9 or not np.all(np.isfinite(rotation)):
            raise InputError(f"regularizer: direction must be a 3x3 matrix, got {direction!r}")
        rotation = rotation.reshape(3, 3)
    if abs(np.linalg.det(rotation)) < 1e-8:
        raise InputError("regularizer: direction matrix is singular")
    matrix = np.linalg.inv(rotation @ np.diag(steps))
    orthonormal = bool(np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-9))
    return matrix, orthonormal


def _index_gradient(u: Tensor) -> list[Tensor]:
    """``[du/d index_a for a in (x, y, z)]``, each shaped like ``u``."""
    return [central_difference(u, 4 - axis) for axis in range(3)]


def _combine(terms: list[Tensor], weights: np.ndarray) -> Tensor:
    """``sum_a weights[a] * terms[a]``, skipping zero weights (axis-aligned grids)."""
    total: Tensor | None = None
    for term, weight in zip(terms, weights):
        if weight != 0.0:
            total = term * float(weight) if total is None else total + term * float(weight)
    return total if total is not None else torch.zeros_like(terms[0])


def spatial_gradient(u: Tensor, spacing: Sequence[float], direction: Any = None) -> Tensor:
    """World gradient ``(N, 3, 3, D, H, W)``: entry ``[:, c, r]`` is ``d u_c / d x_world_r``.

    Example:
        >>> u = torch.zeros(1, 3, 4, 4, 4); u[:, 0] = 0.5 * torch.arange(4.0).view(4, 1, 1)  # u_x = 0.5 k
        >>> float(spatial_gradient(u, (1.0, 1.0, 2.0))[0, 0, 2].mean())  # d u_x / d z = 0.5 / 2 mm
        0.25
    """
    _check_field(u)
    matrix, _ = index_to_world(spacing, direction)
    index = _index_gradient(u)
    return torch.stack([_combine(index, matrix[:, r]) for r in range(3)], dim=2)


def diffusion(u: Tensor, spacing: Sequence[float], direction: Any = None) -> Tensor:
    """Mean over voxels (and batch) of ``||grad u||_F^2`` in world units (mm/mm).

    Example:
        >>> u = torch.zeros(1, 3, 4, 4, 4); u[:, 1] = torch.arange(4.0).view(4, 1, 1)  # u_y = k
        >>> float(diffusion(u, (1.0, 1.0, 2.0)))  # (1 / 2 mm)^2
        0.25
    """
    _check_field(u)
    matrix, orthonormal = index_to_world(spacing, direction)
    index = _index_gradient(u)
    if orthonormal:
        inverse = np.linalg.norm(matrix, axis=1)  # row a of M has norm 1 / spacing_a
        total = sum(term.square().sum(dim=1) * float(scale * scale) for term, scale in zip(index, inverse))
        return total.mean()
    world = [_combine(index, matrix[:, r]) for r in range(3)]
    return sum(term.square().sum(dim=1) for term in world).mean()


def bending_energy(u: Tensor, spacing: Sequence[float], direction: Any = None) -> Tensor:
    """Mean over voxels of ``sum_c sum_{r,s} (d^2 u_c / dx_r dx_s)^2`` (mixed terms twice).

    Pure second derivatives use the compact ``[1, -2, 1]`` stencil, mixed ones two central
    differences; both are exact for quadratic fields, and a linear field gives 0.

    Example:
        >>> k = torch.arange(6.0).view(6, 1, 1)
        >>> u = torch.zeros(1, 3, 6, 6, 6); u[:, 2] = k * k  # u_z = z^2 with 1 mm spacing
        >>> float(bending_energy(u, (1.0, 1.0, 1.0)))  # (d^2 u_z / dz^2)^2 = 2^2
        4.0
    """
    _check_field(u)
    matrix, orthonormal = index_to_world(spacing, direction)
    first = _index_gradient(u)
    hessian: dict[tuple[int, int], Tensor] = {}
    for a in range(3):
        hessian[a, a] = second_difference(u, 4 - a)
        for b in range(a + 1, 3):
            hessian[a, b] = hessian[b, a] = central_difference(first[a], 4 - b)
    if orthonormal:
        inverse = np.linalg.norm(matrix, axis=1)  # row a of M has norm 1 / spacing_a
        total: Tensor | int = 0
        for a in range(3):
            for b in range(a, 3):
                factor = (1.0 if a == b else 2.0) * float(inverse[a] * inverse[b]) ** 2
                total = total + hessian[a, b].square().sum(dim=1) * factor
        return total.mean()  # type: ignore[union-attr]
    total = 0
    keys = [(a, b) for a in range(3) for b in range(3)]
    for r in range(3):
        for s in range(r, 3):
            weights = np.array([matrix[a, r] * matrix[b, s] for a, b in keys])
            world = _combine([hessian[key] for key in keys], weights)
            total = total + world.square().sum(dim=1) * (1.0 if r == s else 2.0)
    return total.mean()  # type: ignore[union-attr]


def jacobian_determinant(u: Tensor, spacing: Sequence[float], direction: Any = None) -> Tensor:
    """``det(I + grad u)`` ``(N, 1, D, H, W)`` of the world map ``x -> x + u(x)``.

    Example:
        >>> u = torch.zeros(1, 3, 4, 4, 4); u[:, 0] = 0.1 * torch.arange(4.0)  # u_x = 0.1 i
        >>> round(float(jacobian_determinant(u, (1.0, 1.0, 1.0)).mean()), 6)
        1.1
    """
    g = spatial_gradient(u, spacing, direction)
    j00, j01, j02 = g[:, 0, 0] + 1.0, g[:, 0, 1], g[:, 0, 2]
    j10, j11, j12 = g[:, 1, 0], g[:, 1, 1] + 1.0, g[:, 1, 2]
    j20, j21, j22 = g[:, 2, 0], g[:, 2, 1], g[:, 2, 2] + 1.0
    det = j00 * (j11 * j22 - j12 * j21) - j01 * (j10 * j22 - j12 * j20) + j02 * (j10 * j21 - j11 * j20)
    return det.unsqueeze(1)


def folding_penalty(u: Tensor, spacing: Sequence[float], direction: Any = None, eps: float = 0.0) -> Tensor:
    """Mean over voxels of ``relu(eps - det J)^2``: zero unless the Jacobian drops below ``eps``.

    Example:
        >>> float(folding_penalty(torch.zeros(1, 3, 4, 4, 4), (1.0, 1.0, 1.0)))
        0.0
    """
    return torch.relu(eps - jacobian_determinant(u, spacing, direction)).square().mean()


def make_regularizer(name: str, **options: Any) -> Regularizer:
    """The regularizer ``f(u, spacing, direction=None) -> Tensor`` called ``name``.

    Names: ``diffusion``, ``bending``, ``folding`` (option ``eps``, default 0).

    Example:
        >>> make_regularizer("bending") is bending_energy
        True
    """
    key = name.lower().strip() if isinstance(name, str) else name
    if key == "diffusion" or key == "bending":
        if options:
            raise PresetError(f"regularizer '{key}' takes no options, got {', '.join(sorted(options))}")
        return diffusion if key == "diffusion" else bending_energy
    if key == "folding":
        unknown = sorted(set(options) - {"eps"})
        if unknown:
            raise PresetError(f"regularizer 'folding': unknown option {', '.join(unknown)}; valid: eps")
        eps = options.get("eps", 0.0)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not np.isfinite(eps):
            raise PresetError(f"regularizer 'folding': option eps must be a number, got {eps!r}")
        return partial(folding_penalty, eps=float(eps)) if eps else folding_penalty
    raise PresetError(f"unknown regularizer {name!r}; valid names: {', '.join(REGULARIZER_NAMES)}")
