"""Tests of the displacement-field regularizers (regsuite.engine.regularizers)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from regsuite.engine.regularizers import (bending_energy, central_difference, diffusion, folding_penalty,
                                          jacobian_determinant, make_regularizer, second_difference,
                                          spatial_gradient)
from regsuite.errors import InputError, PresetError


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors gain nothing from threads (and wait on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SIZE = (7, 8, 9)  # (x, y, z) voxels: tensors are (D, H, W) = (9, 8, 7)
SPACING = (0.8, 1.3, 2.1)


def rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


OBLIQUE = rotation([1.0, 2.0, -0.5], 0.7)
SHEARED = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, -0.2], [0.1, 0.0, 1.0]])  # not orthonormal
GRIDS = [("identity", None), ("oblique", OBLIQUE), ("sheared", SHEARED)]


def world_points(direction=None, spacing=SPACING, size=SIZE, origin=(5.0, -3.0, 12.0)) -> np.ndarray:
    """World coordinates ``(3, D, H, W)`` of the grid: ``origin + direction @ diag(spacing) @ index``."""
    direction = np.eye(3) if direction is None else direction
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k])  # (x, y, z) index components
    return np.asarray(origin, dtype=float).reshape(3, 1, 1, 1) + np.einsum(
        "ra,aijk->rijk", direction @ np.diag(spacing), index)


def field(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64).unsqueeze(0)


A = np.array([[0.10, -0.05, 0.02], [0.03, 0.08, -0.04], [-0.06, 0.01, 0.12]])


def linear_field(direction, matrix=A) -> torch.Tensor:
    """``u(x) = A x + c`` in world coordinates, sampled on the grid."""
    x = world_points(direction)
    return field(np.einsum("cr,rijk->cijk", matrix, x) + np.array([1.0, -2.0, 0.5]).reshape(3, 1, 1, 1))


def test_difference_stencils():
    x = torch.tensor([1.0, 3.0, 7.0, 13.0, 21.0])  # x = k^2 + k + 1
    assert central_difference(x, 0).tolist() == [2.0, 3.0, 5.0, 7.0, 8.0]
    assert second_difference(x, 0).tolist() == [2.0] * 5
    assert central_difference(torch.tensor([2.0, 5.0]), 0).tolist() == [3.0, 3.0]
    assert central_difference(torch.tensor([2.0]), 0).tolist() == [0.0]


@pytest.mark.parametrize("label,direction", GRIDS)
def test_zero_for_translation(label, direction):
    u = torch.zeros(2, 3, *SIZE[::-1], dtype=torch.float64)
    u[:, 0], u[:, 1], u[:, 2] = 3.0, -1.5, 0.25
    assert float(diffusion(u, SPACING, direction)) == 0.0
    assert float(bending_energy(u, SPACING, direction)) == 0.0
    assert float(folding_penalty(u, SPACING, direction)) == 0.0
    assert torch.all(jacobian_determinant(u, SPACING, direction) == 1.0)


@pytest.mark.parametrize("label,direction", GRIDS)
def test_linear_field_in_world_frame(label, direction):
    u = linear_field(direction)
    gradient = spatial_gradient(u, SPACING, direction)
    assert gradient.shape == (1, 3, 3) + u.shape[2:]
    expected = torch.as_tensor(A).view(1, 3, 3, 1, 1, 1).expand_as(gradient)
    assert torch.allclose(gradient, expected, atol=1e-12)
    assert float(diffusion(u, SPACING, direction)) == pytest.approx(float(np.sum(A * A)), rel=1e-10)
    assert float(bending_energy(u, SPACING, direction)) == pytest.approx(0.0, abs=1e-20)
    det = jacobian_determinant(u, SPACING, direction)
    assert det.shape == (1, 1) + u.shape[2:]
    assert torch.allclose(det, torch.full_like(det, np.linalg.det(np.eye(3) + A)), atol=1e-12)


def test_world_conversion_matters():
    """Ignoring the direction (or the spacing) gives a different Jacobian on an oblique grid."""
    u = linear_field(OBLIQUE)
    right = float(jacobian_determinant(u, SPACING, OBLIQUE).mean())
    assert right == pytest.approx(np.linalg.det(np.eye(3) + A), rel=1e-10)
    assert abs(float(jacobian_determinant(u, SPACING).mean()) - right) > 1e-3
    assert abs(float(jacobian_determinant(u, (1.0, 1.0, 1.0), OBLIQUE).mean()) - right) > 1e-3


def test_direction_accepts_flat_and_tensor_forms():
    u = linear_field(OBLIQUE)
    reference = jacobian_determinant(u, SPACING, OBLIQUE)
    for form in (OBLIQUE.flatten().tolist(), tuple(OBLIQUE.flatten()), torch.as_tensor(OBLIQUE)):
        assert torch.equal(jacobian_determinant(u, SPACING, form), reference)


@pytest.mark.parametrize("label,direction", GRIDS)
def test_quadratic_field_bending(label, direction):
    """``u_c = 1/2 x^T B_c x`` has Hessian ``B_c``: bending energy ``sum_c ||B_c||_F^2`` everywhere."""
    generator = np.random.default_rng(4)
    hessians = [(m + m.T) / 2 for m in generator.normal(scale=0.01, size=(3, 3, 3))]
    x = world_points(direction)
    u = field(np.stack([0.5 * np.einsum("rijk,rs,sijk->ijk", x, b, x) for b in hessians]))
    expected = sum(float(np.sum(b * b)) for b in hessians)
    assert float(bending_energy(u, SPACING, direction)) == pytest.approx(expected, rel=1e-8)


def test_diffusion_and_bending_of_1d_profiles():
    """Axis-aligned closed forms on an anisotropic grid."""
    d, h, w = SIZE[::-1]
    z = torch.arange(d, dtype=torch.float64).view(d, 1, 1) * SPACING[2]
    u = torch.zeros(1, 3, d, h, w, dtype=torch.float64)
    u[:, 0] = 0.3 * z  # du_x/dz = 0.3
    assert float(diffusion(u, SPACING)) == pytest.approx(0.09)
    u[:, 1] = 0.5 * z * z  # d2u_y/dz2 = 1
    assert float(bending_energy(u, SPACING)) == pytest.approx(1.0)
    y = torch.arange(h, dtype=torch.float64).view(1, h, 1) * SPACING[1]
    x = torch.arange(w, dtype=torch.float64).view(1, 1, w) * SPACING[0]
    u = torch.zeros(1, 3, d, h, w, dtype=torch.float64)
    u[:, 2] = x * y  # only the mixed derivative: counted twice
    assert float(bending_energy(u, SPACING)) == pytest.approx(2.0)


def test_folding_penalty():
    folding = linear_field(None, np.diag([-2.0, 0.0, 0.0]))  # det J = -1 everywhere
    assert torch.allclose(jacobian_determinant(folding, SPACING), torch.tensor(-1.0, dtype=torch.float64))
    assert float(folding_penalty(folding, SPACING)) == pytest.approx(1.0)
    x = world_points(OBLIQUE)
    smooth = field(0.3 * np.sin(0.2 * x) + 0.1 * np.cos(0.3 * x[[1, 2, 0]]))
    assert float(jacobian_determinant(smooth, SPACING, OBLIQUE).min()) > 0.5
    assert float(folding_penalty(smooth, SPACING, OBLIQUE)) == 0.0
    identity = torch.zeros(1, 3, 4, 4, 4)
    assert float(folding_penalty(identity, SPACING, eps=1.5)) == pytest.approx(0.25)
    local = torch.zeros(1, 3, 6, 6, 6, dtype=torch.float64)
    local[0, 0, :, :, 3] = -4.0  # u_x jumps back by 4 mm at one slice: the map folds there
    assert float(folding_penalty(local, (1.0, 1.0, 1.0))) > 0.0


@pytest.mark.parametrize("name", ["diffusion", "bending", "folding"])
@pytest.mark.parametrize("label,direction", GRIDS)
def test_gradients_match_finite_differences(name, label, direction):
    generator = torch.Generator().manual_seed(0)
    u = 0.8 * torch.randn(1, 3, 4, 5, 6, generator=generator, dtype=torch.float64)  # folds in places
    regularizer = make_regularizer(name)
    assert float(folding_penalty(u, SPACING, direction)) > 0.0
    assert torch.autograd.gradcheck(lambda v: regularizer(v, SPACING, direction), (u.requires_grad_(True),))


def test_factory_and_errors():
    assert make_regularizer("diffusion") is diffusion
    assert make_regularizer("Bending") is bending_energy
    assert make_regularizer("folding") is folding_penalty
    shifted = make_regularizer("folding", eps=0.5)
    assert isinstance(shifted, functools.partial) and shifted.keywords == {"eps": 0.5}
    with pytest.raises(PresetError, match="valid names: diffusion, bending, folding"):
        make_regularizer("elastic")
    with pytest.raises(PresetError, match="unknown option"):
        make_regularizer("folding", epsilon=1.0)
    with pytest.raises(PresetError, match="takes no options"):
        make_regularizer("bending", weight=2.0)
    u = torch.zeros(1, 3, 4, 4, 4)
    with pytest.raises(InputError, match=r"\(N, 3, D, H, W\)"):
        diffusion(u[:, :2], SPACING)
    with pytest.raises(InputError, match="spacing"):
        diffusion(u, (1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="singular"):
        diffusion(u, SPACING, np.zeros((3, 3)))
    with pytest.raises(InputError, match="3x3"):
        diffusion(u, SPACING, [1.0, 0.0])


def test_inputs_are_not_modified():
    u = linear_field(OBLIQUE).requires_grad_(True)
    copy = u.detach().clone()
    for name in ("diffusion", "bending", "folding"):
        make_regularizer(name)(u, SPACING, OBLIQUE).backward()
    assert torch.equal(u.detach(), copy)
