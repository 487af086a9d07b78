"""Longitudinal change (regsuite.evaluation.volumes, regsuite.population.change, ``regsuite change``).

The phantom: 40^3 voxels of 2 mm, a smooth body with texture and two bright balls (labels 1
and 2, radii 11 and 10 mm). The follow-up is the same analytic image seen through a known
smooth map ``T`` (baseline world -> follow-up world) made of two radial maps
``x -> c + (x - c) s(|x - c|)``, ``s(r) = 1 + k exp(-r^2 / 2 sigma^2)``: one contracts ball 1
(k = -0.05), one expands ball 2 (k = +0.04). A radial map's Jacobian is exactly
``s^2 (s + r s')`` (tangential stretch ``s`` twice, radial ``d(r s)/dr``), so the true change of
each label is the mean of the exact ``J_T`` over its voxels (about -10 % and +9 %): the very
quantity the method estimates, the integral of J over the label's voxels. The follow-up is
sampled analytically at ``T^-1(y)`` (no interpolation) and its label map is the analytic
balls pulled back the same way.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from phantoms import make_grid, phantom_function
from regsuite.errors import InputError, RegistrationFailed
from regsuite.evaluation.volumes import (ROW_KEYS, brain_mask, change_row, jacobian_integrals, label_values,
                                         label_volumes, region_integral, symmetric_jacobian, symmetric_ratio)
from regsuite.population.change import HALFWAY_OUTPUTS, OUTPUTS, halfway_kind, measure_change, read_label_table
from regsuite.population.runner import SerialRunner

# ---------------------------------------------------------------------------- phantom
CENTRES = (np.array([-12.0, 4.0, 0.0]), np.array([13.0, -6.0, 3.0]))
RADII = (11.0, 10.0)
#: (k, sigma mm) of the radial map centred on each ball
MAPS = ((-0.05, 12.0), (0.04, 11.0))
#: few iterations of a symmetric velocity field, 2 then 1 voxel; one thread (a registration
#: takes about 2 s on one core; threads only add overhead at 40^3)
QUICK = {"name": "change-test", "initialization": "none",
         "stages": [{"model": "svf", "metric": "lncc", "metric_options": {"radius": 2}, "optimizer": "gaussian",
                     "learning_rate": 0.5, "update": "symmetric", "exact_every": 4,
                     "levels": [[2, 1, 40], [1, 0, 30]]}]}
#: The recovered change of each ball (percentage points). Volume follows the boundary (the
#: integral of J over a region is the volume of its image): a mean radial error of 1/80 voxel
#: (0.025 mm) on a 10 mm ball is 3 x 0.25 % = 0.75 points. Measured with QUICK on this phantom:
#: -10.51 vs -10.03 (ball 1) and 8.24 vs 8.86 (ball 2), i.e. 0.48 and 0.62 points.
BALL_TOLERANCE = 1.2
#: The whole-brain row, here the union of the two balls: its error is the balls' errors weighted by
#: their volumes (measured 0.61 points), so it gets their tolerance.
BRAIN_TOLERANCE = BALL_TOLERANCE


def _radial(points, centre, k, sigma):
    d = points - centre
    r = np.linalg.norm(d, axis=1)
    return centre + d * (1 + k * np.exp(-r ** 2 / (2 * sigma ** 2)))[:, None]


def _radial_inverse(points, centre, k, sigma):
    d = points - centre
    rho = np.linalg.norm(d, axis=1)
    r = rho.copy()
    for _ in range(30):  # Newton on r s(r) = rho (monotonic: s + r s' > 0 for these k, sigma)
        e = np.exp(-r ** 2 / (2 * sigma ** 2))
        r = r - (r * (1 + k * e) - rho) / (1 + k * e - k * e * r ** 2 / sigma ** 2)
    return centre + d * np.where(rho > 0, r / np.maximum(rho, 1e-12), 1.0)[:, None]


def _radial_jacobian(points, centre, k, sigma):
    r = np.linalg.norm(points - centre, axis=1)
    e = np.exp(-r ** 2 / (2 * sigma ** 2))
    s = 1 + k * e
    return s ** 2 * (s - k * e * r ** 2 / sigma ** 2)


def true_map(points):
    """T: baseline world -> follow-up world."""
    for centre, (k, sigma) in zip(CENTRES, MAPS):
        points = _radial(points, centre, k, sigma)
    return points


def true_inverse(points):
    for centre, (k, sigma) in reversed(list(zip(CENTRES, MAPS))):
        points = _radial_inverse(points, centre, k, sigma)
    return points


def true_jacobian(points):
    """det DT = J_2(T_1(x)) J_1(x), exactly."""
    (c1, c2), (m1, m2) = CENTRES, MAPS
    return _radial_jacobian(_radial(points, c1, *m1), c2, *m2) * _radial_jacobian(points, c1, *m1)


def _image_function(points):
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    body = 1 / (1 + np.exp(((x / 32) ** 2 + (y / 28) ** 2 + (z / 26) ** 2 - 1) * 12))
    value = 0.3 * body + 0.5 * phantom_function(points, 3)
    for centre, radius, height in zip(CENTRES, RADII, (0.6, 0.9)):
        value = value + height / (1 + np.exp((np.linalg.norm(points - centre, axis=1) - radius) / 0.7))
    return value


def _label_function(points):
    labels = np.zeros(len(points), np.uint8)
    for value, (centre, radius) in enumerate(zip(CENTRES, RADII), start=1):
        labels[np.linalg.norm(points - centre, axis=1) < radius] = value
    return labels


def _grid_points(grid):
    size = grid.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    matrix = np.array(grid.GetDirection()).reshape(3, 3) @ np.diag(grid.GetSpacing())
    return index @ matrix.T + np.array(grid.GetOrigin())


def _image(values, grid, dtype=np.float32):
    size = grid.GetSize()
    array = values.reshape(size[0], size[1], size[2]).transpose(2, 1, 0).astype(dtype)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(grid)
    return image


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("change-phantom")
    grid = make_grid((40, 40, 40), (2.0, 2.0, 2.0))
    points = _grid_points(grid)
    pulled = true_inverse(points)
    baseline_labels = _label_function(points)
    jacobian = true_jacobian(points)
    files = {"baseline": _image(_image_function(points), grid), "followup": _image(_image_function(pulled), grid),
             "baseline_labels": _image(baseline_labels, grid, np.uint8),
             "followup_labels": _image(_label_function(pulled), grid, np.uint8)}
    paths = {}
    for name, image in files.items():
        paths[name] = str(folder / f"{name}.nii.gz")
        sitk.WriteImage(image, paths[name])
    truth = {label: 100 * (jacobian[baseline_labels == label].mean() - 1) for label in (1, 2)}
    # with a segmentation, the whole-brain row covers the union of the labelled structures
    truth["brain"] = 100 * (jacobian[baseline_labels > 0].mean() - 1)
    table = folder / "names.txt"
    table.write_text("# value name r g b a\n0 Background 0 0 0 0\n1 Shrinking 200 70 70 255\n"
                     "2 Growing 70 70 200 255\n")
    paths["table"] = str(table)
    return {"paths": paths, "truth": truth, "folder": folder}


def _runner():
    return SerialRunner(threads=1)


@pytest.fixture(scope="module")
def forward_run(phantom):
    p = phantom["paths"]
    out = phantom["folder"] / "forward"
    summary = measure_change(p["baseline"], p["followup"], str(out), segment=p["baseline_labels"],
                             followup_segment=p["followup_labels"], labels=p["table"], preset=QUICK,
                             runner=_runner())
    return summary, out


@pytest.fixture(scope="module")
def swapped_run(phantom):
    p = phantom["paths"]
    out = phantom["folder"] / "swapped"
    summary = measure_change(p["followup"], p["baseline"], str(out), segment=p["followup_labels"],
                             followup_segment=p["baseline_labels"], preset=QUICK, runner=_runner())
    return summary, out


def _rows(summary):
    return {row["label"]: row for row in summary["rows"]}


# ---------------------------------------------------------------------------- arithmetic
def _labels_and_jacobian():
    labels = sitk.Image([10, 8, 6], sitk.sitkInt16)
    labels.SetSpacing((1.0, 2.0, 3.0))
    labels[0:4, 0:4, 0:2] = 1  # 32 voxels of 6 mm^3
    labels[5:10, 0:2, 3:6] = 7  # 30 voxels
    jac = np.ones(tuple(reversed(labels.GetSize())), np.float32)
    values = sitk.GetArrayFromImage(labels)
    jac[values == 1] = 1.25
    jac[values == 7] = 0.8
    image = sitk.GetImageFromArray(jac)
    image.CopyInformation(labels)
    return labels, image


def test_label_volumes_and_integrals_are_exact():
    labels, jac = _labels_and_jacobian()
    assert label_values(labels) == [1, 7]
    assert label_volumes(labels) == pytest.approx({1: 32 * 6 / 1000, 7: 30 * 6 / 1000}, rel=1e-15)
    parts = jacobian_integrals(labels, jac)
    assert parts[1].voxels == 32 and parts[1].volume_ml == pytest.approx(0.192, rel=1e-15)
    assert parts[1].mapped_ml == pytest.approx(0.24, rel=1e-15) and parts[1].ratio == pytest.approx(1.25, rel=1e-15)
    assert parts[7].ratio == pytest.approx(0.8, rel=1e-7)  # float32 0.8
    mask = sitk.Cast(labels == 7, sitk.sitkUInt8)
    assert region_integral(mask, jac).ratio == pytest.approx(0.8, rel=1e-7)


def test_constant_jacobian_of_1_1_is_plus_10_percent():
    labels, _ = _labels_and_jacobian()
    jac = sitk.Image(labels.GetSize(), sitk.sitkFloat64) + 1.1
    jac.CopyInformation(labels)
    part = jacobian_integrals(labels, jac)[1]
    row = change_row(1, part.volume_ml, part.ratio)
    assert row["change_percent"] == pytest.approx(10.0, abs=1e-12)
    assert row["followup_ml"] == pytest.approx(0.192 * 1.1, rel=1e-14)
    assert row["change_ml"] == pytest.approx(0.0192, rel=1e-12)
    assert tuple(row) == ROW_KEYS


def test_symmetric_combination():
    # forward says +10 %, backward says the baseline is 1/1.1 of the follow-up: consistent, +10 %
    assert symmetric_ratio(1.1, 1 / 1.1) == pytest.approx(1.1, rel=1e-15)
    # inconsistent answers meet at their geometric mean: +10 % and +5 % -> sqrt(1.1 * 1.05)
    assert symmetric_ratio(1.1, 1 / 1.05) == pytest.approx(math.sqrt(1.1 * 1.05), rel=1e-15)
    for forward, backward in ((0.93, 1.04), (1.2, 0.7), (1.0, 1.0)):  # exchanging the scans: exactly 1 / r
        assert symmetric_ratio(forward, backward) * symmetric_ratio(backward, forward) == pytest.approx(1, abs=1e-15)
    with pytest.raises(RegistrationFailed, match="must be positive"):
        symmetric_ratio(-0.1, 1.0)


def test_symmetric_jacobian_map():
    grid = sitk.Image([4, 4, 4], sitk.sitkFloat32)
    forward = grid + 1.21
    backward = grid + (1 / 1.21)
    assert np.allclose(sitk.GetArrayFromImage(symmetric_jacobian(forward, backward)), 1.21, rtol=1e-6)
    folded = sitk.GetArrayFromImage(symmetric_jacobian(grid - 1.0, backward))  # floored, finite
    assert np.isfinite(folded).all() and folded.max() < 1e-2
    with pytest.raises(InputError, match="not on one grid"):
        symmetric_jacobian(forward, sitk.Image([4, 4, 5], sitk.sitkFloat32))


def test_brain_mask_rules():
    image = sitk.Image([12, 12, 12], sitk.sitkFloat32)
    image[3:9, 3:9, 3:9] = 4.0
    image[5, 5, 5] = 0.0  # a zero inside stays out: the non-zero voxels are the region
    mask, rule = brain_mask(image)
    assert rule == "non-zero voxels" and int(sitk.GetArrayViewFromImage(mask).sum()) == 215
    noisy = sitk.GetArrayFromImage(image) + 0.5 + np.random.default_rng(0).uniform(0, 0.2, (12, 12, 12))
    noisy[5, 5, 5] = 0.6  # a dark voxel inside: the hole is filled
    noisy_image = sitk.GetImageFromArray(noisy.astype(np.float32))
    mask, rule = brain_mask(noisy_image)
    assert rule == "Otsu foreground" and int(sitk.GetArrayViewFromImage(mask).sum()) == 216


def test_read_label_table(tmp_path):
    table = tmp_path / "lut.txt"
    table.write_text("#$Id: FreeSurferColorLUT.txt\n\n0   Unknown  0 0 0 0\n17  Left-Hippocampus 220 216 20 0  # note\n"
                     "53 Right-Hippocampus 220 216 20 0\n1000 ctx-lh-unknown 25 5 25\n")
    assert read_label_table(table) == {0: "Unknown", 17: "Left-Hippocampus", 53: "Right-Hippocampus",
                                       1000: "ctx-lh-unknown"}
    for text, message in (("17.5 Half 1 2 3 0\n", "'17.5' is not a whole-number label value"),
                          ("17\n", "label 17 has no name"),
                          ("17 A 1 2 3 0\n17 B 1 2 3 0\n", "line 2: label 17 is named twice"),
                          ("17 A red 2 3 0\n", "is not numeric"),
                          ("17 A 1 2\n", "4 fields"),
                          ("# nothing\n", "names no label")):
        table.write_text(text)
        with pytest.raises(InputError, match=message) as error:
            read_label_table(table)
        assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------- workflow
def test_known_change_is_recovered(phantom, forward_run):
    summary, _ = forward_run
    rows = _rows(summary)
    truth = phantom["truth"]
    assert truth[1] == pytest.approx(-10.03, abs=0.01) and truth[2] == pytest.approx(8.86, abs=0.01)
    for label in (1, 2):
        assert rows[label]["change_percent"] == pytest.approx(truth[label], abs=BALL_TOLERANCE)
    assert rows["brain"]["change_percent"] == pytest.approx(truth["brain"], abs=BRAIN_TOLERANCE)
    assert [row["label"] for row in summary["rows"]] == ["brain", 1, 2]
    assert (rows[1]["name"], rows[2]["name"], rows["brain"]["name"]) == ("Shrinking", "Growing", "whole brain")
    for row in summary["rows"]:  # the documented arithmetic
        ratio = math.sqrt(row["forward_ratio"] / row["backward_ratio"])
        assert row["followup_ml"] == pytest.approx(row["baseline_ml"] * ratio, rel=1e-12)
        assert row["change_percent"] == pytest.approx(100 * (ratio - 1), abs=1e-10)
        assert row["change_ml"] == pytest.approx(row["followup_ml"] - row["baseline_ml"], abs=1e-12)
    assert rows[1]["baseline_ml"] == pytest.approx(
        np.count_nonzero(sitk.GetArrayViewFromImage(sitk.ReadImage(phantom["paths"]["baseline_labels"])) == 1)
        * 0.008, rel=1e-12)
    meta = summary["meta"]
    assert meta["preset"] == "change-test" and meta["seconds"] > 0 and meta["forward_only_labels"] == []
    assert set(meta["registrations"]) == {"forward", "backward"}


def test_swapping_the_scans_gives_the_reciprocal_ratio(forward_run, swapped_run):
    forward, swapped = _rows(forward_run[0]), _rows(swapped_run[0])
    for label in ("brain", 1, 2):
        ratio, other = 1 + forward[label]["change_percent"] / 100, 1 + swapped[label]["change_percent"] / 100
        # exact by construction: the two registrations are the same computations either way
        assert ratio * other == pytest.approx(1.0, abs=1e-9)
        assert swapped[label]["forward_ratio"] == forward[label]["backward_ratio"]
        assert swapped[label]["change_percent"] == pytest.approx(100 * (1 / ratio - 1), abs=1e-7)


def test_outputs_are_complete_and_consistent(phantom, forward_run):
    summary, out = forward_run
    assert sorted(os.listdir(out)) == sorted([*OUTPUTS.values(), *HALFWAY_OUTPUTS.values()])
    recorded = json.loads((out / "change.json").read_text())
    assert recorded == json.loads(json.dumps(summary))
    with open(out / "change.csv", newline="") as stream:
        table = list(csv.DictReader(stream))
    assert [row["label"] for row in table] == ["brain", "1", "2"]
    for row, expected in zip(table, recorded["rows"]):
        assert list(row) == list(ROW_KEYS)
        for key in ("baseline_ml", "followup_ml", "change_ml", "change_percent", "forward_ratio", "backward_ratio"):
            assert float(row[key]) == expected[key]  # the same numbers, to the last bit
        assert row["name"] == (expected["name"] or "")
    baseline = sitk.ReadImage(phantom["paths"]["baseline"])
    jacobian = sitk.ReadImage(str(out / "jacobian.nii.gz"))
    log_jacobian = sitk.ReadImage(str(out / "log_jacobian.nii.gz"))
    for image in (jacobian, log_jacobian):
        assert image.GetPixelID() == sitk.sitkFloat32 and image.GetSize() == baseline.GetSize()
        assert np.allclose(image.GetOrigin(), baseline.GetOrigin())
        assert np.allclose(image.GetSpacing(), baseline.GetSpacing())
    values = sitk.GetArrayFromImage(jacobian)
    assert np.allclose(np.log(values), sitk.GetArrayFromImage(log_jacobian), atol=1e-6)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(phantom["paths"]["baseline_labels"]))
    assert values[labels == 1].mean() < 0.95 and values[labels == 2].mean() > 1.05
    # transform.h5 maps baseline -> follow-up: the balls' surfaces land at their known radii (points
    # may slide along a surface, which looks the same everywhere); inverse_transform.h5 maps back
    transform = sitk.ReadTransform(str(out / "transform.h5"))
    backward = sitk.ReadTransform(str(out / "inverse_transform.h5"))
    for centre, radius in zip(CENTRES, RADII):
        edge = centre + np.array([0.0, 0.0, radius])
        mapped = np.array(transform.TransformPoint(edge.tolist()))
        truth = true_map(np.array([edge, centre]))
        assert np.linalg.norm(mapped - truth[1]) == pytest.approx(np.linalg.norm(truth[0] - truth[1]), abs=0.3)
        assert np.linalg.norm(np.array(backward.TransformPoint(mapped.tolist())) - edge) < 1.5
    assert (out / "change.png").read_bytes()[:4] == b"\x89PNG"


def test_the_halfway_maps_split_the_registration_in_two_halves(phantom, forward_run):
    """``halfway_to_followup = T o halfway_to_baseline`` (the pair still registers through the
    halfway space), and each scan moves by half of the change: the halfway maps' displacements
    are half of ``T``'s, in opposite directions (QUICK has no affine: ``A`` is the identity)."""
    summary, out = forward_run
    assert "exp(-v/2)" in summary["meta"]["halfway"]
    transform = sitk.ReadTransform(str(out / "transform.h5"))
    to_baseline = sitk.ReadTransform(str(out / "halfway_to_baseline.h5"))
    to_followup = sitk.ReadTransform(str(out / "halfway_to_followup.h5"))
    labels = sitk.ReadImage(phantom["paths"]["baseline_labels"])
    index = np.argwhere(sitk.GetArrayFromImage(labels) > 0)[::7]  # (z, y, x) inside the two balls
    points = [labels.TransformIndexToPhysicalPoint([int(i) for i in row[::-1]]) for row in index]
    full = np.array([np.subtract(transform.TransformPoint(p), p) for p in points])
    back = np.array([np.subtract(to_baseline.TransformPoint(p), p) for p in points])
    ahead = np.array([np.subtract(to_followup.TransformPoint(p), p) for p in points])
    through = np.array([np.subtract(transform.TransformPoint(to_baseline.TransformPoint(p)), p) for p in points])
    assert np.abs(full).max() > 0.5  # the balls' known change moves points by up to about 1 mm
    # T o exp(-v/2) = exp(v) o exp(-v/2) = exp(v/2) up to the fields' linear interpolation, their
    # integration (7 squarings each) and their storage (rounded to 1/256 mm): measured 0.045 mm at
    # most (1/45 of a voxel) here; 0.1 mm is 1/20 of a voxel
    assert np.abs(through - ahead).max() < 0.1
    # half the change: exp(v/2) differs from exp(v)/2 by second-order terms (measured 0.056 mm at
    # most against full displacements of up to 1.5 mm)
    assert np.abs(ahead - full / 2).max() < 0.1
    # and the other half the other way: exp(-v/2) undoes exp(v/2) (measured 0.016 mm at most,
    # against halfway displacements of up to 0.8 mm)
    undone = np.array([np.subtract(to_baseline.TransformPoint(to_followup.TransformPoint(p)), p) for p in points])
    assert np.abs(undone).max() < 0.05 and np.abs(back).max() > 0.25


@pytest.mark.parametrize("preset, kind", [("brain-mri", "velocity"), ("brain-mri-voxelmorph", "velocity"),
                                          ("brain-any-contrast-io", "velocity"), ("rigid", "linear"),
                                          ("bspline", None), ("ct-mr", None)])
def test_which_presets_get_halfway_maps(preset, kind):
    """An affine, or an affine then one velocity field, splits into halves; a B-spline does not."""
    from regsuite.engine.config import load_preset

    assert halfway_kind(load_preset(preset)) == kind


def test_halfway_maps_of_a_known_affine_and_velocity_compose_to_the_registration():
    """With a known rotation-and-shift ``A`` and a smooth velocity ``v``: ``to_moving = A o exp(v)
    o to_fixed``, and ``A^(1/2)`` applied twice is ``A``."""
    from regsuite.population.maps import (affine_transform, field_transform, halfway_transforms, homogeneous,
                                          mean_affine, velocity_exp)

    grid = make_grid((32, 32, 32), (2.0, 2.0, 2.0))
    affine = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.1, -0.05, 0.08, (3.0, -2.0, 1.5))
    root = mean_affine([affine], 0.5)
    assert np.allclose(root @ root, homogeneous(affine), atol=1e-10)
    z, y, x = np.meshgrid(*[np.arange(32) * 2.0 - 31.0] * 3, indexing="ij")
    bump = np.exp(-(x ** 2 + y ** 2 + z ** 2) / (2 * 12.0 ** 2))
    velocity = np.stack([2.0 * bump, -1.0 * bump, 0.5 * bump], axis=-1)
    image = sitk.GetImageFromArray(velocity.astype(np.float32), isVector=True)
    image.CopyInformation(grid)
    to_fixed, to_moving = halfway_transforms(affine, image)
    transform = sitk.CompositeTransform([affine_transform(homogeneous(affine)),
                                         field_transform(velocity_exp(velocity, grid), grid)])
    for point in ([0.0, 0.0, 0.0], [5.0, -4.0, 3.0], [-10.0, 8.0, -6.0]):
        direct = np.array(to_moving.TransformPoint(point))
        composed = np.array(transform.TransformPoint(to_fixed.TransformPoint(point)))
        # exp(v) o exp(-v/2) against exp(v/2), each by 7 squarings with linear interpolation on a
        # 2 mm grid, v up to 2.3 mm: measured 0.012 mm at most (at the bump's centre)
        assert np.linalg.norm(direct - composed) < 0.03, point


# ---------------------------------------------------------------------------- command line
@pytest.fixture
def cli_main():
    """The ``regsuite`` command's ``main``."""
    from regsuite.cli.main import main

    return main


def test_no_change_pair_from_the_command_line(phantom, cli_main, tmp_path, capsys):
    # two scans of the unchanged phantom, each with its own noise (sd 0.005: 1 % of the balls' contrast)
    p = phantom["paths"]
    baseline = sitk.ReadImage(p["baseline"])
    values = sitk.GetArrayFromImage(baseline)
    scans = []
    for seed in (1, 2):
        noise = np.random.default_rng(seed).normal(0, 0.005, values.shape).astype(np.float32)
        noisy = sitk.GetImageFromArray(values + noise)
        noisy.CopyInformation(baseline)
        scans.append(str(tmp_path / f"scan{seed}.nii.gz"))
        sitk.WriteImage(noisy, scans[-1])
    preset = tmp_path / "quick.json"
    preset.write_text(json.dumps(QUICK))
    out = tmp_path / "nested" / "out"
    common = ["change", "--baseline", scans[0], "--followup", scans[1], "--segment", p["baseline_labels"],
              "--preset", str(preset), "--output-dir", str(out), "--workers", "1", "--threads-per-worker", "1",
              "--work-dir", str(tmp_path / "work")]
    code = cli_main(common)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "register-forward done" in captured.err and "register-backward done" in captured.err
    assert captured.out.splitlines()[0].startswith("brain whole brain:")
    summary = json.loads((out / "change.json").read_text())
    assert "warped to the follow-up" in summary["meta"]["followup_segment"]
    for row in summary["rows"]:
        # noise only. Measured up to 0.57 points (ball 2): a 0.6 % volume error of a 10 mm ball is a mean
        # boundary error of 0.02 mm, 1/100 of a voxel; the quick preset follows some of the noise
        assert abs(row["change_percent"]) < 1.0, row
    # --resume skips both registrations and writes the same table
    code = cli_main(common + ["--resume", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == "" and captured.err == ""
    assert json.loads((out / "change.json").read_text())["rows"] == summary["rows"]


def _bad_inputs(phantom, tmp_path):
    p = phantom["paths"]
    shifted = sitk.ReadImage(p["baseline_labels"])
    shifted.SetOrigin((1.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    fractional = sitk.Cast(sitk.ReadImage(p["baseline_labels"]), sitk.sitkFloat32) * 0.5
    sitk.WriteImage(fractional, str(tmp_path / "fractional.nii.gz"))
    empty = sitk.ReadImage(p["baseline_labels"]) * 0
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    only_one = sitk.ReadImage(p["followup_labels"])
    only_one = sitk.Mask(only_one, sitk.Cast(only_one != 2, sitk.sitkUInt8))
    sitk.WriteImage(only_one, str(tmp_path / "only_one.nii.gz"))
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    (tmp_path / "bad.txt").write_text("1 A 1 2 3 0\nx B 1 2 3 0\n")
    (tmp_path / "a_file").write_text("x")
    base = {"baseline": p["baseline"], "followup": p["followup"]}
    return [
        ({**base, "baseline": str(tmp_path / "missing.nii.gz")}, "baseline image .* does not exist"),
        ({**base, "followup": str(tmp_path / "broken.nii.gz")}, "follow-up image .* cannot be read"),
        ({**base, "followup": p["baseline"]}, "baseline and follow-up are the same file"),
        ({**base, "segment": str(tmp_path / "shifted.nii.gz")}, "is not on the baseline grid: origin"),
        ({**base, "segment": str(tmp_path / "fractional.nii.gz")}, "has non-integer values"),
        ({**base, "segment": str(tmp_path / "empty.nii.gz")}, "is empty"),
        ({**base, "segment": p["baseline_labels"], "followup_segment": str(tmp_path / "only_one.nii.gz")},
         "label 2 is empty in the follow-up segmentation"),
        ({**base, "segment": p["baseline_labels"], "followup_segment": p["baseline"].replace("baseline", "x")},
         "follow-up segmentation .* does not exist"),
        ({**base, "followup_segment": p["followup_labels"]}, "--followup-segment needs --segment"),
        ({**base, "segment": p["baseline_labels"], "labels": str(tmp_path / "bad.txt")},
         "line 2: 'x' is not a whole-number label value"),
        ({**base, "output_dir": str(tmp_path / "a_file")}, "is an existing file"),
        ({**base, "preset": "no-such-preset"}, "no-such-preset"),
    ]


_FLAGS = {"baseline": "--baseline", "followup": "--followup", "segment": "--segment",
          "followup_segment": "--followup-segment", "labels": "--labels", "preset": "--preset",
          "output_dir": "--output-dir"}


def test_bad_inputs_give_one_line_and_write_nothing(phantom, tmp_path, cli_main, capsys):
    inputs = {name: Path(path).read_bytes() for name, path in phantom["paths"].items()}
    for number, (kwargs, message) in enumerate(_bad_inputs(phantom, tmp_path)):
        out = tmp_path / f"out{number}"
        kwargs.setdefault("output_dir", str(out))
        arguments = {key: value for key, value in kwargs.items() if key not in ("baseline", "followup", "output_dir")}
        with pytest.raises(InputError, match=message) as error:
            measure_change(kwargs["baseline"], kwargs["followup"], kwargs["output_dir"], runner=_runner(),
                           **{"preset": QUICK, **arguments})
        assert "\n" not in str(error.value)
        argv = ["change"] + [item for key, value in kwargs.items() for item in (_FLAGS[key], value)]
        if "preset" not in kwargs:
            argv += ["--preset", "rigid"]
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("regsuite: error: ") and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    assert {name: Path(path).read_bytes() for name, path in phantom["paths"].items()} == inputs
    # an existing output folder keeps what it had
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError):
        measure_change(phantom["paths"]["baseline"], phantom["paths"]["baseline"], str(out), runner=_runner())
    assert os.listdir(out) == ["keep.txt"]
