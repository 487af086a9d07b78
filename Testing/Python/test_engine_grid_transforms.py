"""Grid conventions and transform models checked against SimpleITK."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from phantoms import make_grid, rotation
from regsuite.engine.grid import Grid
from regsuite.engine.transforms.bspline import BSplineField
from regsuite.engine.transforms.dense import DenseField, VelocityField, compose_on_grid, resample_field, sample_field
from regsuite.engine.transforms.linear import LinearTransform, decompose_affine, rotation_matrix_zyx

OBLIQUE = rotation((0.2, -0.3, 0.5))


def test_grid_frames_match_simpleitk_on_oblique_anisotropic_image():
    image = make_grid((11, 7, 5), (0.9, 1.3, 2.4), (3.0, -7.0, 11.0), OBLIQUE)
    grid = Grid.from_sitk(image)
    for index in [(0, 0, 0), (10, 6, 4), (2.5, 3.25, 1.5)]:
        expected = image.TransformContinuousIndexToPhysicalPoint(index)
        assert np.allclose(grid.index_to_world_points(np.array(index)), expected, atol=1e-9)
        assert np.allclose(grid.world_to_index_points(np.array(expected)), index, atol=1e-9)
    points = grid.world_points(dtype=torch.float64)[0]
    assert np.allclose(points[4, 6, 10].numpy(), image.TransformIndexToPhysicalPoint((10, 6, 4)))
    normalized = grid.world_to_normalized() @ np.append(image.TransformIndexToPhysicalPoint((10, 0, 4)), 1.0)
    assert np.allclose(normalized[:3], [1.0, -1.0, 1.0])


def test_shrunk_grid_is_nested_and_centred():
    grid = Grid.from_sitk(make_grid((41, 30, 21), (1.0, 1.5, 2.0), None, OBLIQUE))
    coarse = grid.shrink(2)
    assert coarse.spacing == (2.0, 3.0, 4.0)
    assert np.allclose(coarse.center_world(), grid.center_world(), atol=1e-9)
    corner = grid.world_to_index_points(coarse.index_to_world_points(np.zeros(3)))
    assert np.all(corner >= -1e-9)


def test_rotation_convention_is_rz_ry_rx():
    angles = torch.tensor([0.3, -0.2, 0.7], dtype=torch.float64)
    assert np.allclose(rotation_matrix_zyx(angles).numpy(), rotation((0.3, -0.2, 0.7)))


@pytest.mark.parametrize("kind", ["rigid", "affine", "affine-matrix"])
def test_linear_export_maps_points_like_the_engine(kind):
    transform = LinearTransform(kind, center=np.array([5.0, -3.0, 2.0]), radius=60.0)
    parameters = {
        "rigid": [0.1, -0.2, 0.3, 4.0, -2.0, 1.0],
        "affine": [0.1, -0.2, 0.3, 4.0, -2.0, 1.0, 1.1, 0.9, 1.05, 0.1, -0.05, 0.02],
        "affine-matrix": [1.05, 0.1, 0.0, -0.05, 0.95, 0.02, 0.0, 0.03, 1.1, 4.0, -2.0, 1.0],
    }[kind]
    transform.set_parameters(np.array(parameters))
    exported = transform.to_sitk()
    points = np.random.default_rng(0).uniform(-80, 80, (20, 3))
    with torch.no_grad():
        mapped = transform(torch.as_tensor(points)).numpy()
    expected = np.array([exported.TransformPoint(p.tolist()) for p in points])
    assert np.abs(mapped - expected).max() < 1e-9
    assert np.allclose(transform.parameters_physical(), parameters)


def test_affine_decomposition_round_trip():
    matrix = np.array([[1.1, 0.2, 0.05], [-0.1, 0.9, 0.1], [0.02, -0.15, 1.2]])
    angles, scales, shears = decompose_affine(matrix)
    shear = np.array([[1, shears[0], shears[1]], [0, 1, shears[2]], [0, 0, 1]])
    rebuilt = shear @ np.diag(scales) @ rotation(tuple(angles))
    assert np.allclose(rebuilt, matrix, atol=1e-12)


def test_bspline_matches_itk_bspline_transform_on_oblique_grid():
    domain = Grid.from_sitk(make_grid((30, 25, 12), (1.1, 0.9, 2.5), (10.0, -20.0, 5.0), OBLIQUE))
    field = BSplineField(domain, (8.0, 9.0, 10.0))
    torch.manual_seed(0)
    with torch.no_grad():
        field.coefficients.normal_(0, 2)
    level = domain.shrink(2)
    displacement = field.displacement(level)[0].double().detach()
    exported = field.to_sitk()
    points = level.world_points(dtype=torch.float64)[0]
    for k, j, i in [(0, 0, 0), (3, 5, 7), (5, 11, 14), (2, 2, 10)]:
        x = points[k, j, i].numpy()
        assert np.allclose(np.array(exported.TransformPoint(x.tolist())) - x, displacement[:, k, j, i].numpy(), atol=1e-5)


def test_bspline_refinement_preserves_the_field():
    domain = Grid((30, 30, 30), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    coarse = BSplineField(domain, 20.0)
    torch.manual_seed(1)
    with torch.no_grad():
        coarse.coefficients.normal_(0, 3)
    fine = coarse.refined(10.0)
    assert fine.mesh == (6, 6, 6)
    difference = (fine.displacement(domain) - coarse.displacement(domain)).detach().abs().max()
    # Halving the control spacing nests the cubic B-spline spaces, so the least-squares refit is
    # exact but for float32 rounding through the pseudo-inverses: measured 4.5e-6 mm on a field of
    # 3.3 mm (1.4e-6 of it). Bound 1e-5 of the field, 0.03 um. A refit that is only approximate is
    # off by far more: onto 9 or 12 mm control points (not nested) it misses by 0.02-0.05 mm.
    assert float(difference) < 1e-5 * float(coarse.displacement(domain).detach().abs().max())


def _smooth_velocity(grid: Grid) -> VelocityField:
    field = VelocityField(grid, steps=7)
    z = torch.linspace(-1, 1, grid.size[2])
    y = torch.linspace(-1, 1, grid.size[1])
    with torch.no_grad():
        field.field[0, 0] = 3 * torch.sin(3 * z)[:, None, None]
        field.field[0, 1] = 2 * torch.cos(2 * y)[None, :, None]
        field.field[0, 2] = 1.0
    return field


def test_velocity_field_inverse_is_consistent_and_constant_velocity_translates():
    grid = Grid.from_sitk(make_grid((20, 20, 20), (2.0, 1.5, 2.0), None, OBLIQUE))
    field = _smooth_velocity(grid)
    with torch.no_grad():
        forward, backward = field.displacement(), field.inverse_displacement()
        round_trip = compose_on_grid(forward, backward, grid)
    # exp(v) o exp(-v) = id up to the interpolation of the composition and the 7 squaring steps:
    # measured 0.040 mm inside (1.35 % of the 2.97 mm largest displacement, voxels 1.5-2 mm).
    # Bound 1.6 % (0.048 mm, about 1/30 voxel).
    assert float(round_trip[..., 3:-3, 3:-3, 3:-3].abs().max()) < 0.016 * float(forward.abs().max())
    constant = VelocityField(grid, steps=6)
    with torch.no_grad():
        constant.field[:, 1] = -1.25
        assert torch.allclose(constant.displacement()[:, 1], torch.full_like(constant.field[:, 1], -1.25), atol=1e-4)


def test_dense_field_export_is_an_itk_displacement_field_zero_outside_its_grid():
    full = Grid.from_sitk(make_grid((24, 20, 16), (1.5, 1.5, 2.0), None, OBLIQUE))
    inner = Grid((12, 10, 8), full.spacing, tuple(full.index_to_world_points(np.array([6, 5, 4]))), full.direction)
    field = DenseField(inner)
    with torch.no_grad():
        field.field.normal_(0, 1)
    exported = field.to_sitk(full)
    world = inner.index_to_world_points(np.array([3.0, 4.0, 5.0]))
    expected = field.field[0, :, 5, 4, 3].detach().double().numpy()
    assert np.allclose(np.array(exported.TransformPoint(world.tolist())) - world, expected, atol=1e-5)
    outside = full.index_to_world_points(np.array([1.0, 1.0, 1.0]))
    assert np.allclose(exported.TransformPoint(outside.tolist()), outside)


def test_zero_padded_resampling_samples_only_the_box_that_sees_the_field():
    """A field on a small oblique grid resampled onto a larger grid with zero padding: only the
    target voxels near the source grid are sampled, and the result is exactly (bit for bit) what
    sampling every target voxel gives; a source outside the target gives zeros."""
    source = Grid((12, 10, 9), (2.0, 2.2, 2.5), (-8.0, -6.0, -9.0), rotation((0.3, -0.2, 0.4)))
    target = Grid((60, 52, 44), (1.0, 1.1, 1.2), (-30.0, -28.0, -25.0), rotation((-0.1, 0.05, 0.2)))
    field = torch.randn((1, 3) + source.shape_zyx, generator=torch.Generator().manual_seed(0))
    everywhere = sample_field(field, target.mapped_index_points(
        source.world_to_normalized() @ target.index_to_world()), "zeros")
    boxed = resample_field(field, source, target, padding="zeros")
    assert torch.equal(boxed, everywhere)
    assert 0 < int((everywhere.abs().sum(dim=1) > 0).sum()) < 0.5 * target.num_voxels  # the box crops
    far = Grid(source.size, source.spacing, (500.0, 0.0, 0.0), source.direction)
    assert torch.count_nonzero(resample_field(field, far, target, padding="zeros")) == 0
    covering = Grid((40, 40, 40), (3.0, 3.0, 3.0), (-60.0, -60.0, -60.0))  # sees every target voxel
    full = sample_field(field.new_ones((1, 3, 40, 40, 40)), target.mapped_index_points(
        covering.world_to_normalized() @ target.index_to_world()), "zeros")
    assert torch.equal(resample_field(field.new_ones((1, 3, 40, 40, 40)), covering, target, padding="zeros"), full)
