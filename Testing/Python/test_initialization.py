"""Tests of regsuite.engine.initialization on synthetic blobs with known transforms.

Images are sampled from an analytic object in world coordinates on oblique, anisotropic
grids; the moving image shows the object moved by a known fixed->moving transform ``T``
(``moving(x) = object(T^-1(x))``), so every mode has a known answer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.engine.initialization import LinearInit, initialize, rigid_matrix
from regsuite.errors import InputError, PresetError

OBJECT_CENTRE = np.array([10.0, -20.0, 30.0])     # world mm, in the fixed image


def blob(points: np.ndarray, semi_axes=(14.0, 8.0, 5.0), side_blob: bool = True) -> np.ndarray:
    """Smooth-edged ellipsoid (plus an off-centre sphere) around OBJECT_CENTRE, values 0..1."""
    p = points - OBJECT_CENTRE
    r = np.sqrt(np.sum((p / np.asarray(semi_axes)) ** 2, axis=1))
    value = 1.0 / (1.0 + np.exp((r - 1.0) * 12.0))
    if side_blob:       # breaks the mirror symmetries of the ellipsoid
        d = np.linalg.norm(p - np.array([8.0, 5.0, 0.0]), axis=1)
        value = np.maximum(value, 1.0 / (1.0 + np.exp((d - 3.5) * 2.0)))
    return value


def make_grid(size, spacing, angles, centre) -> sitk.Image:
    """Empty float image whose extent centre is ``centre`` (world), oblique directions."""
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    direction = rigid_matrix(angles)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in direction.ravel()])
    half = direction @ ((np.array(size) - 1.0) / 2.0 * np.array(spacing))
    image.SetOrigin([float(v) for v in np.asarray(centre) - half])
    return image


def world_points(image: sitk.Image) -> np.ndarray:
    """World positions of every voxel, in GetArrayFromImage (z, y, x) order, shape (N, 3)."""
    size = image.GetSize()
    kk, jj, ii = np.meshgrid(*(np.arange(s) for s in size[::-1]), indexing="ij")
    index = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1).astype(np.float64)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + index @ (direction * np.array(image.GetSpacing())).T


def fill(grid: sitk.Image, values: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(values.reshape(grid.GetSize()[::-1]).astype(np.float32))
    image.CopyInformation(grid)
    return image


def fixed_image(size=(44, 40, 36), spacing=(1.1, 1.3, 1.6), **kw) -> sitk.Image:
    grid = make_grid(size, spacing, (0.2, -0.15, 0.3), OBJECT_CENTRE + [1.5, -2.0, 1.0])
    return fill(grid, blob(world_points(grid), **kw))


def moving_image(true: LinearInit, offset=(3.0, -2.0, 4.0), **kw) -> sitk.Image:
    """Object moved by ``true`` (fixed->moving), sampled on a different oblique grid."""
    centre = true.apply(OBJECT_CENTRE[None])[0] + np.asarray(offset)
    grid = make_grid((40, 46, 38), (1.4, 1.15, 1.35), (-0.1, 0.25, -0.2), centre)
    inverse = np.linalg.inv(true.homogeneous())
    points = world_points(grid)
    fixed_points = points @ inverse[:3, :3].T + inverse[:3, 3]
    return fill(grid, blob(fixed_points, **kw))


def dice_after_resampling(fixed: sitk.Image, moving: sitk.Image, init: LinearInit) -> float:
    warped = sitk.Resample(moving, fixed, init.to_sitk(), sitk.sitkLinear, 0.0)
    a = sitk.GetArrayFromImage(fixed) > 0.5
    b = sitk.GetArrayFromImage(warped) > 0.5
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def rotation_angle_deg(r: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)))


def test_rigid_matrix_convention() -> None:
    a, b, g = 0.3, -0.4, 1.1
    r = rigid_matrix((a, b, g))
    assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)
    composed = rigid_matrix((0, 0, g)) @ rigid_matrix((0, b, 0)) @ rigid_matrix((a, 0, 0))
    assert np.allclose(r, composed)
    assert np.allclose(rigid_matrix((0.0, 0.0, math.pi / 2)) @ [1, 0, 0], [0, 1, 0])
    assert np.allclose(rigid_matrix((math.pi / 2, 0.0, 0.0)) @ [0, 1, 0], [0, 0, 1])
    assert np.allclose(rigid_matrix((0.0, math.pi / 2, 0.0)) @ [0, 0, 1], [1, 0, 0])
    euler = sitk.Euler3DTransform()
    euler.SetComputeZYX(True)         # ITK's Rz @ Ry @ Rx order
    euler.SetRotation(a, b, g)
    assert np.allclose(np.array(euler.GetMatrix()).reshape(3, 3), r)
    with pytest.raises(InputError):
        rigid_matrix((0.0, 1.0))


def test_to_sitk_matches_apply() -> None:
    init = LinearInit(rigid_matrix((0.3, -0.2, 0.5)) * [1.1, 0.9, 1.0], [4.0, -3.0, 2.5],
                      [10.0, 20.0, -5.0])
    points = np.random.default_rng(0).uniform(-50, 50, (20, 3))
    transform = init.to_sitk()
    via_sitk = np.array([transform.TransformPoint(tuple(p)) for p in points])
    assert np.allclose(init.apply(points), via_sitk, atol=1e-9)
    h = init.homogeneous()
    assert np.allclose(points @ h[:3, :3].T + h[:3, 3], via_sitk, atol=1e-9)
    with pytest.raises(InputError):
        init.apply(np.zeros((3, 2)))


def test_none_and_geometry() -> None:
    true = LinearInit(np.eye(3), [7.5, -4.0, 5.5], OBJECT_CENTRE)
    fixed, moving = fixed_image(), moving_image(true)

    def extent_centre(image: sitk.Image) -> np.ndarray:
        return np.array(image.TransformContinuousIndexToPhysicalPoint(
            [(s - 1) / 2.0 for s in image.GetSize()]))

    none = initialize(fixed, moving, "none")
    assert np.array_equal(none.matrix, np.eye(3)) and np.array_equal(none.translation, np.zeros(3))
    assert np.allclose(none.center, extent_centre(fixed), atol=1e-9)

    geometry = initialize(fixed, moving, "geometry")
    assert np.array_equal(geometry.matrix, np.eye(3))
    mapped = geometry.to_sitk().TransformPoint(tuple(extent_centre(fixed)))
    assert np.allclose(mapped, extent_centre(moving), atol=1e-9)
    # The grids are offset from the object, so geometry is not the object's translation.
    assert np.linalg.norm(geometry.translation - true.translation) > 3.0


def test_moments_recovers_translation() -> None:
    true = LinearInit(np.eye(3), [7.5, -4.0, 5.5], OBJECT_CENTRE)
    # Fixed image larger than 64 voxels per axis, so moments run on a shrunk copy.
    fixed = fixed_image(size=(96, 88, 72), spacing=(0.55, 0.6, 0.8))
    moving = moving_image(true)
    init = initialize(fixed, moving, "moments")
    assert np.array_equal(init.matrix, np.eye(3))
    probe = OBJECT_CENTRE + np.array([[0, 0, 0], [10, 0, 0], [0, -8, 5]], dtype=float)
    assert np.max(np.linalg.norm(init.apply(probe) - true.apply(probe), axis=1)) < 0.5
    assert dice_after_resampling(fixed, moving, init) > 0.9


def test_moments_shift_negative_background_and_masks() -> None:
    true = LinearInit(np.eye(3), [-6.0, 5.0, 3.0], OBJECT_CENTRE)
    fixed = fixed_image()
    moving = moving_image(true)
    # CT-like negative background in the fixed image: the shift to non-negative handles it.
    fixed_ct = sitk.ShiftScale(fixed, -1.0, 1000.0)      # values in [-1000, 0]
    moving_array = sitk.GetArrayFromImage(moving)
    # A distractor blob in a corner of the moving image, excluded by the moving mask.
    distractor = np.zeros_like(moving_array)
    distractor[2:10, 2:10, 2:10] = 1.0
    cluttered = sitk.GetImageFromArray(np.maximum(moving_array, distractor))
    cluttered.CopyInformation(moving)
    mask = sitk.GetImageFromArray((distractor == 0).astype(np.uint8))
    mask.CopyInformation(moving)
    before = sitk.GetArrayFromImage(cluttered).copy()

    unmasked = initialize(fixed_ct, cluttered, "moments")
    masked = initialize(fixed_ct, cluttered, "moments", moving_mask=mask)
    assert np.linalg.norm(unmasked.translation - true.translation) > 2.0
    assert np.linalg.norm(masked.translation - true.translation) < 0.5
    assert np.array_equal(sitk.GetArrayFromImage(cluttered), before)   # input untouched

    # A fixed mask on another grid restricting to one half shifts the fixed centre of mass.
    half_grid = make_grid((30, 30, 30), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), OBJECT_CENTRE)
    half = fill(half_grid, (world_points(half_grid)[:, 0] > OBJECT_CENTRE[0]).astype(float))
    half_init = initialize(fixed, moving, "moments", fixed_mask=sitk.Cast(half, sitk.sitkUInt8))
    assert half_init.center[0] > OBJECT_CENTRE[0] + 2.0

    empty = sitk.Image(moving.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(moving)
    with pytest.raises(InputError, match="moving mask is empty"):
        initialize(fixed, moving, "moments", moving_mask=empty)


@pytest.mark.parametrize("axis", [(0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.3, -0.5, 0.8)])
def test_principal_axes_recovers_rotation(axis) -> None:
    axis = np.asarray(axis) / np.linalg.norm(axis)
    angle = math.radians(30.0)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew
    true = LinearInit(rotation, [5.0, 3.0, -4.0], OBJECT_CENTRE)
    fixed, moving = fixed_image(), moving_image(true)

    init = initialize(fixed, moving, "principal-axes")
    assert np.allclose(init.matrix @ init.matrix.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(init.matrix) == pytest.approx(1.0)
    assert rotation_angle_deg(init.matrix.T @ rotation) < 2.0
    probe = OBJECT_CENTRE + np.array([[0, 0, 0], [12, 0, 0], [0, 7, 0], [0, 0, 4]], dtype=float)
    assert np.max(np.linalg.norm(init.apply(probe) - true.apply(probe), axis=1)) < 0.75
    dice_principal = dice_after_resampling(fixed, moving, init)
    dice_moments = dice_after_resampling(fixed, moving, initialize(fixed, moving, "moments"))
    assert dice_principal > 0.9
    # Moments alone leave the 30 degree rotation in place and overlap clearly worse.
    assert dice_moments < 0.9 and dice_principal > dice_moments + 0.1


def test_principal_axes_degenerate_moments() -> None:
    # Prolate spheroid (two equal moments): only the long axis is defined and is aligned by
    # the smallest rotation; a 30 degree tilt of the long axis is therefore recovered exactly.
    tilt = rigid_matrix((0.0, math.radians(30.0), 0.0))
    true = LinearInit(tilt, [2.0, -1.0, 3.0], OBJECT_CENTRE)
    spheroid = {"semi_axes": (14.0, 6.0, 6.0), "side_blob": False}
    fixed, moving = fixed_image(**spheroid), moving_image(true, **spheroid)
    init = initialize(fixed, moving, "principal-axes")
    assert rotation_angle_deg(init.matrix.T @ tilt) < 2.0
    # Sphere: no axis is defined, the rotation is the identity.
    sphere = {"semi_axes": (8.0, 8.0, 8.0), "side_blob": False}
    fixed, moving = fixed_image(**sphere), moving_image(true, **sphere)
    assert np.allclose(initialize(fixed, moving, "principal-axes").matrix, np.eye(3))


def test_bad_mode_and_images() -> None:
    fixed = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    with pytest.raises(PresetError, match="unknown initialization mode 'center'"):
        initialize(fixed, fixed, "center")
    with pytest.raises(InputError, match="2D"):
        initialize(sitk.Image([8, 8], sitk.sitkFloat32), fixed, "geometry")
    with pytest.raises(InputError, match="components"):
        initialize(fixed, sitk.Image([8, 8, 8], sitk.sitkVectorFloat32, 3), "moments")
