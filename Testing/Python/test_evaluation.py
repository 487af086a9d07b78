"""Tests of regsuite.evaluation: Dice, HD95, landmark errors, Jacobian statistics, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError
from regsuite.evaluation.jacobian import jacobian_determinant, jacobian_statistics
from regsuite.evaluation.landmarks import error_summary, landmark_errors
from regsuite.evaluation.overlap import dice_per_label, hausdorff95_per_label
from regsuite.evaluation.report import evaluate, format_table
from regsuite.io.points import read_points
from regsuite.io.transforms import displacement_field

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LUNG = SHARED / "lung_ct_pair"


def _labels(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint16))
    image.SetSpacing(spacing)
    return image


def _box(shape, x, y, z, value=1) -> np.ndarray:
    array = np.zeros(shape, np.uint16)
    array[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = value
    return array


def _oblique(size=(20, 18, 16)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing((1.2, 0.9, 2.0))
    image.SetOrigin((-5.0, 3.0, 7.0))
    image.SetDirection(sitk.VersorTransform((0.4, -0.3, 0.8), 0.5).GetMatrix())
    return image


# ---------------------------------------------------------------- Dice


def test_dice_identical_labels_is_one():
    array = _box((20, 20, 20), (2, 10), (2, 10), (2, 10), 1) + _box((20, 20, 20), (12, 18), (5, 15), (3, 9), 7)
    image = _labels(array)
    assert dice_per_label(image, image) == {1: 1.0, 7: 1.0}


def test_dice_of_overlapping_boxes():
    shape = (20, 20, 20)
    a = _box(shape, (0, 10), (0, 10), (0, 10))          # 1000 voxels
    b = _box(shape, (5, 15), (0, 10), (0, 10))          # 1000 voxels, 500 shared
    assert dice_per_label(_labels(a), _labels(b)) == {1: pytest.approx(0.5)}
    c = _box(shape, (0, 10), (0, 10), (0, 5))           # 500 voxels inside a
    assert dice_per_label(_labels(a), _labels(c)) == {1: pytest.approx(2 * 500 / 1500)}


def test_dice_label_selection():
    shape = (12, 12, 12)
    a = _box(shape, (0, 4), (0, 4), (0, 4), 1) + _box(shape, (6, 10), (6, 10), (6, 10), 2)
    b = _box(shape, (0, 4), (0, 4), (0, 4), 1) + _box(shape, (6, 10), (6, 10), (0, 4), 3)
    assert dice_per_label(_labels(a), _labels(b)) == {1: 1.0}  # default: present in both
    explicit = dice_per_label(_labels(a), _labels(b), labels=[2, 3, 9])
    assert explicit[2] == 0.0 and explicit[3] == 0.0 and math.isnan(explicit[9])


def test_dice_grid_mismatch():
    a = _labels(np.ones((8, 8, 8)))
    b = _labels(np.ones((8, 8, 8)), spacing=(1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="not on the grid of the fixed labels: spacing"):
        dice_per_label(a, b)


# ---------------------------------------------------------------- HD95


@pytest.mark.parametrize("shift,spacing", [(2, (1.0, 1.0, 1.0)), (3, (1.5, 1.0, 0.8))])
def test_hd95_of_shifted_boxes_is_the_shift(shift, spacing):
    shape = (30, 30, 30)
    a = _box(shape, (5, 17), (6, 18), (7, 19), 4)
    b = _box(shape, (5 + shift, 17 + shift), (6, 18), (7, 19), 4)
    assert hausdorff95_per_label(_labels(a, spacing), _labels(b, spacing)) == {4: pytest.approx(shift * spacing[0])}


def test_hd95_of_shifted_spheres_is_about_the_shift():
    z, y, x = np.indices((40, 40, 40))
    a = ((x - 17) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 <= 64).astype(np.uint8)
    b = ((x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 <= 64).astype(np.uint8)
    distance = hausdorff95_per_label(_labels(a, (0.5, 0.5, 0.5)), _labels(b, (0.5, 0.5, 0.5)))[1]
    assert distance == pytest.approx(1.5, abs=0.5)


def test_hd95_identical_zero_and_missing_label_nan():
    shape = (16, 16, 16)
    a = _box(shape, (2, 8), (2, 8), (2, 8), 1)
    b = _box(shape, (2, 8), (2, 8), (2, 8), 1)
    result = hausdorff95_per_label(_labels(a), _labels(b), labels=[1, 2])
    assert result[1] == 0.0 and math.isnan(result[2])


# ---------------------------------------------------------------- landmarks


def test_landmark_errors_with_known_translation():
    rng = np.random.default_rng(3)
    fixed = rng.uniform(-50, 50, size=(10, 3))
    offset = np.array([3.0, -4.0, 12.0])
    moving = fixed + offset
    np.testing.assert_allclose(landmark_errors(fixed, moving, None), np.full(10, 13.0))
    translation = sitk.TranslationTransform(3, tuple(offset))
    np.testing.assert_allclose(landmark_errors(fixed, moving, translation), np.zeros(10), atol=1e-12)
    half = sitk.TranslationTransform(3, tuple(offset / 2))
    np.testing.assert_allclose(landmark_errors(fixed, moving, half), np.full(10, 6.5))
    summary = error_summary(landmark_errors(fixed, moving, None))
    assert summary["mean"] == pytest.approx(13.0) and summary["count"] == 10


def test_landmark_errors_bad_shapes():
    with pytest.raises(InputError, match="differ in size"):
        landmark_errors(np.zeros((3, 3)), np.zeros((4, 3)), None)
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        landmark_errors(np.zeros((3, 2)), np.zeros((3, 2)), None)


# ---------------------------------------------------------------- Jacobian


def test_jacobian_of_scaling_affine_on_oblique_grid():
    reference = _oblique()
    scales = (1.5, 0.8, 1.25)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(np.diag(scales).ravel().tolist())
    affine.SetCenter((3.0, 1.0, -2.0))
    jacobian = jacobian_determinant(affine, reference)
    assert jacobian.GetPixelID() == sitk.sitkFloat32 and jacobian.GetSize() == reference.GetSize()
    stats = jacobian_statistics(jacobian)
    assert stats["mean"] == pytest.approx(np.prod(scales), rel=1e-6)
    assert stats["folding_percent"] == 0.0 and stats["sd_log_jacobian"] == pytest.approx(0.0, abs=1e-6)


def test_jacobian_from_dense_field_matches_affine_everywhere():
    reference = _oblique()
    matrix = np.array([[1.2, 0.1, 0.0], [0.05, 0.9, -0.1], [0.0, 0.2, 1.1]])
    affine = sitk.AffineTransform(matrix.ravel().tolist(), (1.0, -2.0, 0.5), (0.0, 0.0, 0.0))
    # a displacement field transform forces the finite-difference path, oblique grid included
    dense = sitk.DisplacementFieldTransform(displacement_field(affine, reference))
    values = sitk.GetArrayFromImage(jacobian_determinant(dense, reference))
    np.testing.assert_allclose(values, np.linalg.det(matrix), rtol=1e-5)  # borders too


def test_folding_field_is_detected():
    reference = sitk.Image([32, 32, 32], sitk.sitkFloat32)
    z, y, x = np.indices((32, 32, 32)).astype(float)
    bump = np.exp(-((x - 16) ** 2 + (y - 16) ** 2 + (z - 16) ** 2) / (2 * 3.0 ** 2))
    array = np.zeros((32, 32, 32, 3))
    array[..., 0] = -2.5 * (x - 16) * bump  # d u_x / d x = -2.5 at the centre
    field = sitk.GetImageFromArray(array, isVector=True)
    transform = sitk.DisplacementFieldTransform(field)
    jacobian = jacobian_determinant(transform, reference)
    stats = jacobian_statistics(jacobian)
    assert stats["folding_percent"] > 0.0 and stats["min"] < 0.0
    assert math.isfinite(stats["sd_log_jacobian"]) and stats["sd_log_jacobian"] > 0.0
    # central difference at the centre: 1 + (u(17) - u(15)) / 2 = 1 - 2.5 exp(-1 / 18)
    assert sitk.GetArrayFromImage(jacobian)[16, 16, 16] == pytest.approx(1 - 2.5 * math.exp(-1 / 18), rel=1e-5)
    mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    mask[0:4, 0:4, 0:4] = 1  # a corner far from the bump
    corner = jacobian_statistics(jacobian, mask)
    assert corner["folding_percent"] == 0.0 and corner["voxels"] == 64
    assert corner["mean"] == pytest.approx(1.0, abs=1e-3)


def test_jacobian_statistics_known_values_and_mask_checks():
    values = np.ones((4, 4, 4), np.float32)
    values[0, 0, 0:2] = [math.e, 1 / math.e]
    values[1, 1, 1] = 0.0
    values[2, 2, 2] = -1.0
    stats = jacobian_statistics(sitk.GetImageFromArray(values))
    positive = np.log(values[values > 0])
    assert stats["sd_log_jacobian"] == pytest.approx(float(np.std(positive)))
    assert stats["folding_percent"] == pytest.approx(100 * 2 / 64)
    assert stats["min"] == -1.0 and stats["max"] == pytest.approx(math.e)
    wrong = sitk.Image([4, 4, 5], sitk.sitkUInt8) + 1
    with pytest.raises(InputError, match="size"):
        jacobian_statistics(sitk.GetImageFromArray(values), wrong)


# ---------------------------------------------------------------- report


def test_evaluate_everything_and_json():
    shape = (24, 24, 24)
    fixed_array = _box(shape, (4, 12), (4, 12), (4, 12), 1) + _box(shape, (14, 20), (4, 12), (4, 12), 2)
    moving_array = np.roll(fixed_array, 3, axis=2)  # moving = fixed shifted by +3 voxels in x
    spacing = (1.5, 1.0, 1.0)
    fixed_labels, moving_labels = _labels(fixed_array, spacing), _labels(moving_array, spacing)
    transform = sitk.TranslationTransform(3, (4.5, 0.0, 0.0))  # fixed world -> moving world
    fixed_points = np.array([[0.0, 0.0, 0.0], [10.0, 5.0, 2.0]])
    moving_points = fixed_points + [4.5, 0.0, 0.0]
    mask = sitk.Image(fixed_labels.GetSize(), sitk.sitkUInt8) + 1
    mask.CopyInformation(fixed_labels)
    results = evaluate(transform=transform, fixed_labels=fixed_labels, moving_labels=moving_labels,
                       fixed_points=fixed_points, moving_points=moving_points, mask=mask)
    text = json.dumps(results, allow_nan=False)
    assert json.loads(text) == results
    assert results["dice"]["per_label"] == {"1": 1.0, "2": 1.0}
    assert results["dice"]["mean_before"] == pytest.approx((2 * 5 / 16 + 2 * 3 / 12) / 2)
    assert results["hd95_mm"]["mean"] == 0.0
    assert results["landmarks"]["after"]["max"] == pytest.approx(0.0, abs=1e-12)
    assert results["landmarks"]["before"]["mean"] == pytest.approx(4.5)
    assert results["jacobian"]["mean"] == pytest.approx(1.0) and results["jacobian"]["masked"] is True
    table = format_table(results)
    for words in ("Dice mean (2 labels)", "HD95", "landmark error before (mm)", "SD log|J| in mask", "folding %"):
        assert words in table


def test_evaluate_needs_something():
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate()
    with pytest.raises(InputError, match="both fixed labels and moving labels"):
        evaluate(fixed_labels=_labels(np.ones((4, 4, 4))))


def test_evaluate_nan_becomes_none():
    shape = (12, 12, 12)
    fixed = _labels(_box(shape, (0, 4), (0, 4), (0, 4), 1))
    moving = _labels(_box(shape, (0, 4), (0, 4), (0, 4), 2))
    results = evaluate(fixed_labels=fixed, moving_labels=moving, labels=[1, 3])
    assert results["dice"]["per_label"] == {"1": 0.0, "3": None}
    assert results["hd95_mm"]["per_label"] == {"1": None, "3": None}
    json.dumps(results, allow_nan=False)
    assert "n/a" in format_table(results)


@pytest.mark.skipif(not LUNG.is_dir(), reason="shared data folder absent")
def test_shared_lung_landmarks_initial_error():
    fixed = read_points(LUNG / "landmarks51_baseline_fixed.txt")
    moving = read_points(LUNG / "landmarks51_followup_moving.txt")
    assert fixed.shape == moving.shape == (51, 3)
    errors = landmark_errors(fixed, moving, None)
    assert 25.0 < errors.mean() < 45.0  # the data's README: about 35 mm before registration
