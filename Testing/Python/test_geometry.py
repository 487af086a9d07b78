"""regsuite.geometry: the one RAS<->LPS definition and the one grid-equality check.

RAS<->LPS helpers are checked against VTK (which applies a RAS matrix the way Slicer does) and
SimpleITK (which applies the LPS one); ``same_grid`` at its tolerance boundaries (10 % inside
passes, 10 % outside fails, so float noise in the last bits cannot flip a result), on real
files, and through the functions that use it (masks, displacement-field output, engine grids).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from phantoms import make_grid, rotation
from regsuite.engine.grid import Grid
from regsuite.errors import InputError
from regsuite.geometry import (
    DIRECTION_ATOL,
    LPS_FROM_RAS,
    ORIGIN_ATOL_MM,
    SPACING_RTOL,
    geometry_differences,
    lps_to_ras,
    lps_to_ras_matrix,
    ras_to_lps,
    ras_to_lps_matrix,
    same_grid,
)
from regsuite.io.images import read_mask
from regsuite.io.transforms import write_displacement_field

OBLIQUE = rotation((0.2, -0.15, 0.3))


# ---------------------------------------------------------------------- RAS <-> LPS
def test_point_flip_is_exact_both_ways_and_leaves_its_input_alone():
    rng = np.random.default_rng(3)
    points = rng.uniform(-300.0, 300.0, (50, 3))
    kept = points.copy()
    lps = ras_to_lps(points)
    assert lps.tolist()[0] == [-points[0, 0], -points[0, 1], points[0, 2]]
    assert np.array_equal(lps_to_ras(lps), points)  # negation is exact: bit-for-bit round trip
    assert np.array_equal(points, kept) and lps is not points
    field = rng.normal(size=(4, 5, 6, 3))  # a (k, j, i, 3) vector field flips per component
    assert np.array_equal(ras_to_lps(field)[..., 2], field[..., 2])
    assert np.array_equal(ras_to_lps(field)[..., :2], -field[..., :2])
    assert np.array_equal(LPS_FROM_RAS @ LPS_FROM_RAS, np.eye(3))
    with pytest.raises(ValueError):
        LPS_FROM_RAS[0, 0] = 1.0  # the shared constant cannot be changed by a caller


def test_matrix_conversion_is_the_same_map_in_vtk_and_simpleitk():
    """A RAS map applied by VTK to RAS points equals its LPS form applied by ITK to LPS points."""
    import vtk

    rng = np.random.default_rng(4)
    matrix_ras = np.eye(4)
    matrix_ras[:3, :3] = rotation((0.3, -0.2, 0.5)) @ np.diag([1.1, 0.9, 1.05])
    matrix_ras[:3, 3] = (12.0, -7.5, 3.25)
    vtk_transform = vtk.vtkTransform()
    vtk_transform.SetMatrix(matrix_ras.ravel().tolist())
    lps = ras_to_lps_matrix(matrix_ras)
    itk_transform = sitk.AffineTransform(lps[:3, :3].ravel().tolist(), lps[:3, 3].tolist())
    for point_lps in rng.uniform(-100.0, 100.0, (10, 3)):
        by_vtk = ras_to_lps(vtk_transform.TransformPoint(lps_to_ras(point_lps).tolist()))
        by_itk = np.array(itk_transform.TransformPoint(point_lps.tolist()))
        assert np.allclose(by_vtk, by_itk, rtol=0.0, atol=1e-9)  # double precision, |p| <= 200 mm
    assert np.array_equal(lps_to_ras_matrix(lps), matrix_ras)  # C (C M C) C = M exactly
    assert np.array_equal(ras_to_lps_matrix(matrix_ras[:3, :3]), lps[:3, :3])


@pytest.mark.parametrize("bad", [np.zeros((4, 2)), 5.0, np.zeros(4)])
def test_point_flip_refuses_what_is_not_3d_coordinates(bad):
    with pytest.raises(InputError, match="RAS/LPS"):
        ras_to_lps(bad)


def test_matrix_conversion_refuses_other_shapes():
    with pytest.raises(InputError, match="3x3 or 4x4"):
        ras_to_lps_matrix(np.eye(2))


# ---------------------------------------------------------------------- same grid
def _reference() -> sitk.Image:
    return make_grid((20, 18, 16), (0.8, 1.25, 2.5), (250.0, -120.0, 60.0), OBLIQUE)


def _changed(part: str, fraction: float) -> sitk.Image:
    """The reference grid with one part moved by ``fraction`` of its tolerance."""
    image = _reference()
    if part == "spacing":
        spacing = list(image.GetSpacing())
        spacing[1] *= 1.0 + fraction * SPACING_RTOL
        image.SetSpacing(spacing)
    elif part == "origin":
        origin = list(image.GetOrigin())
        origin[0] += fraction * ORIGIN_ATOL_MM
        image.SetOrigin(origin)
    else:
        direction = list(image.GetDirection())
        direction[4] -= fraction * DIRECTION_ATOL
        image.SetDirection(direction)
    return image


@pytest.mark.parametrize("part", ["spacing", "origin", "direction"])
def test_same_grid_tolerance_boundaries(part):
    reference = _reference()
    inside, outside = _changed(part, 0.9), _changed(part, 1.1)
    assert same_grid(inside, reference) and geometry_differences(inside, reference) == []
    assert not same_grid(outside, reference)
    differences = geometry_differences(outside, reference)
    assert len(differences) == 1 and differences[0].startswith(part + " ")
    # an engine Grid is judged exactly like the image it describes
    assert Grid.from_sitk(inside).is_same(Grid.from_sitk(reference))
    assert not Grid.from_sitk(outside).is_same(Grid.from_sitk(reference))
    assert same_grid(Grid.from_sitk(outside), outside) and not same_grid(Grid.from_sitk(outside), reference)


def test_size_and_dimension_differences_are_named():
    reference = _reference()
    bigger = make_grid((20, 18, 17), (0.8, 1.25, 2.5), (250.0, -120.0, 60.0), OBLIQUE)
    assert geometry_differences(bigger, reference) == ["size (20, 18, 17) vs (20, 18, 16)"]
    flat = sitk.Image([20, 18], sitk.sitkFloat32)
    assert geometry_differences(flat, reference) == ["dimension 2 vs 3"]


def test_a_nifti_round_trip_is_the_same_grid(tmp_path):
    """NIfTI keeps geometry in float32: the grid moves by ~2e-6 mm, which the former 1e-6 mm
    check of the displacement-field writer called a different grid."""
    image = sitk.Image([6, 5, 4], sitk.sitkInt16)
    image.SetOrigin((-123.456789, 201.987654, -87.654321))
    image.SetSpacing((0.9765625, 0.9766, 1.2345678))
    image.SetDirection(OBLIQUE.ravel().tolist())
    for suffix in (".nii.gz", ".nrrd"):
        sitk.WriteImage(image, str(tmp_path / f"grid{suffix}"))
        back = sitk.ReadImage(str(tmp_path / f"grid{suffix}"))
        assert same_grid(back, image), suffix
        moved = np.abs(np.subtract(back.GetOrigin(), image.GetOrigin())).max()
        if suffix == ".nii.gz":
            assert 1e-6 < moved < ORIGIN_ATOL_MM / 50  # float32 rounding of ~200 mm, far inside
        else:
            assert moved == 0.0


# ---------------------------------------------------------------------- its users
def test_read_mask_accepts_and_refuses_by_the_shared_tolerance():
    reference = _reference()
    for fraction, accepted in ((0.9, True), (1.1, False)):
        mask = sitk.Image(_changed("origin", fraction))
        mask = sitk.Cast(mask, sitk.sitkUInt8)
        mask[3, 3, 3] = 1
        if accepted:
            assert int(sitk.GetArrayViewFromImage(read_mask(mask, reference, "fixed mask")).sum()) == 1
        else:
            with pytest.raises(InputError, match="fixed mask image is not on the grid of its image: origin"):
                read_mask(mask, reference, "fixed mask")


def test_displacement_field_output_is_resampled_only_off_the_grid(tmp_path):
    """A field within tolerance of the reference is written as it is; one beyond it is
    resampled onto the reference (the output then has the reference's grid)."""
    reference = _reference()
    for fraction, resampled in ((0.9, False), (1.1, True)):
        field_grid = _changed("origin", fraction)
        values = np.random.default_rng(5).normal(size=field_grid.GetSize()[::-1] + (3,))
        field = sitk.GetImageFromArray(values, isVector=True)
        field.CopyInformation(field_grid)
        path = tmp_path / f"field-{fraction}.nii.gz"
        write_displacement_field(field, reference, path)
        written = sitk.ReadImage(str(path))
        target = reference if resampled else field_grid
        assert np.allclose(written.GetOrigin(), target.GetOrigin(), rtol=0.0, atol=2e-5)  # NIfTI float32
        if not resampled:
            assert np.allclose(sitk.GetArrayViewFromImage(written), values, rtol=0.0, atol=1e-6)
