"""Every shipped preset runs end to end on a small phantom pair, with its iterations cut down.

A preset that no longer parses, or a stage option that a refactor broke (a metric option, a
per-level setting, the symmetric update, a window intensity mode), fails here in seconds instead of
in a user's 10-minute registration. The recipes keep every setting but the iteration counts (1-3 a
level) and the coarsest shrink factors (at most 2, so that the 28-32 voxel phantom keeps at least
14 voxels a side on every level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from phantoms import make_grid, rotation, sample_phantom
from regsuite.engine.config import list_presets, load_preset
from regsuite.engine.registration import register

SHIFT = np.array([2.0, -1.5, 1.0])  # mm
TURN = rotation((0.03, -0.02, 0.04))  # about 3 degrees
#: Presets whose description asks for a fixed mask (the lung mask of a chest CT).
NEEDS_MASK = {"lung-ct"}
#: Presets for CT in Hounsfield units (a window intensity mode): the phantom is given HU values.
CT_WINDOW = {"lung-ct"}
#: Multimodal presets: the moving image gets a non-linear contrast.
MULTIMODAL = {"ct-mr", "multimodal-rigid"}


def _warp(points: np.ndarray) -> np.ndarray:
    """A smooth local deformation (up to 2 mm) that leaves the deformable stages work to do."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return points + np.stack([2.0 * np.sin(y / 12.0), 1.5 * np.cos(x / 14.0), 1.5 * np.sin(z / 10.0)], 1)


def _true_map(points: np.ndarray) -> np.ndarray:
    """Fixed world -> moving world: the warp, then the rigid motion."""
    return _warp(points) @ TURN.T + SHIFT


def _inverse_map(points: np.ndarray) -> np.ndarray:
    rigid_back = (points - SHIFT) @ TURN
    estimate = rigid_back.copy()
    for _ in range(30):  # fixed-point iteration: y = x + d(x)  =>  x = y - d(x)
        estimate = rigid_back - (_warp(estimate) - estimate)
    return estimate


def _mean_error(transform: sitk.Transform, fixed: sitk.Image) -> float:
    """Mean distance (mm) between ``transform`` and the true map on inner fixed voxels."""
    index = np.stack(np.meshgrid(*[np.arange(8, n - 6, 4) for n in fixed.GetSize()], indexing="ij"), -1).reshape(-1, 3)
    points = np.array([fixed.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in index])
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in points])
    return float(np.linalg.norm(mapped - _true_map(points), axis=1).mean())


def _quick(name: str) -> dict[str, Any]:
    """The preset as a dict, every level cut to at most 3 iterations and a shrink of at most 2."""
    config = load_preset(name).to_dict()
    for stage in config["stages"]:
        for level in stage["levels"]:
            level["iterations"] = min(int(level["iterations"]), 3)
            level["shrink"] = min(float(level["shrink"]), 2.0)
    return config


#: exp(-v) o exp(v) at the inverse check's point for presets whose result is a network's field,
#: measured in mm (the cascade: 0.31-0.36 mm when it was composed on the 4 mm grid)
NETWORK_INVERSE_MM = {"brain-mri-voxelmorph": 0.34, "brain-mri-voxelmorph-cascade": 0.22,
                      "brain-mri-hypermorph": 0.17, "brain-mri-voxelmorph-ic": 0.07, "brain-any-contrast": 0.014}


def _pair(name: str) -> tuple[sitk.Image, sitk.Image, sitk.Image | None]:
    fixed = sample_phantom(make_grid((32, 30, 28), (2.5, 2.5, 2.5)))
    moving = sample_phantom(make_grid((30, 30, 26), (2.6, 2.6, 2.7)), _inverse_map)
    mask = sitk.Cast(sitk.BinaryThreshold(fixed, 0.2, 1e9), sitk.sitkUInt8) if name in NEEDS_MASK else None
    if name in CT_WINDOW:  # 0 (air, -950 HU) .. 1.4 (soft tissue, about +310 HU)
        fixed, moving = fixed * 900.0 - 950.0, moving * 900.0 - 950.0
    if name in MULTIMODAL:
        moving = (1.0 - sitk.Exp(moving * -3.0)) * 100.0  # compressed bright range, another scale
    return fixed, moving, mask


def test_every_shipped_preset_is_covered():
    """The parametrisation below comes from the preset folder: an empty or unshipped folder would
    make it run nothing and pass, so the eight shipped presets are counted here."""
    assert len(list_presets()) >= 8
    assert NEEDS_MASK | CT_WINDOW | MULTIMODAL <= set(list_presets())


@pytest.mark.parametrize("name", list_presets())
def test_preset_runs_end_to_end_on_a_phantom(name):
    config = _quick(name)
    fixed, moving, mask = _pair(name)
    events: list[Any] = []
    result = register(fixed, moving, config, fixed_mask=mask, threads=2, seed=0, progress=events.append)

    # every level of every stage ran, with the cut iteration counts
    expected = sum(level["iterations"] for stage in config["stages"] for level in stage["levels"])
    assert len(result.history) == len(events) == expected
    assert [s["model"] for s in result.metrics["stages"]] == [s["model"] for s in config["stages"]]
    for stage in result.metrics["stages"]:
        before, after = stage["metric_before"], stage["metric_after"]
        assert np.isfinite([before, after]).all(), stage
        if stage["model"] in ("rigid", "affine", "affine-matrix"):
            # linear stages keep their best parameters, so the metric cannot get worse (1e-4:
            # float32 noise on metrics of magnitude ~1 and the scoring level differing from the last)
            assert after <= before + 1e-4, (name, stage)
        elif stage["model"] == "network":
            # the brain networks know skull-stripped T1 brains, not this smooth phantom: no gain is
            # promised on it (measured: local NCC -0.0372 -> -0.0365), but a broken stage (a field
            # in the wrong frame or units) would ruin it: at most 10 % worse per network run. A
            # cascade repeats the out-of-place field: 2 runs measured -0.0326 (12 %) with the
            # cascade-trained network, -0.0317 with brain-t1-voxelmorph; the same 2 runs with the
            # field's sign flipped give -0.0218 (41 % worse)
            runs = stage.get("cascade", 1)
            assert after <= before + 0.1 * runs * abs(before), (name, stage)
        else:  # the warp is there to be reduced: measured gains 0.006-0.055 after 2-9 iterations
            assert after < before, (name, stage)

    # a valid transform of the preset's kind that does not run away from the known motion
    assert result.is_linear == load_preset(name).is_linear
    error = _mean_error(result.transform, fixed)
    assert np.isfinite(error)
    # The phantom starts 2.7 mm (mean) from the true map. A few iterations need not improve on the
    # initialisation (measured: 0.86-1.75 mm, the MI presets 2.8-3.2 mm), but a broken stage or
    # export lands much farther: an inverted transform or one left in RAS is about 5 mm off.
    # The brain networks do not know this phantom and a cascade repeats their out-of-place field:
    # brain-mri-voxelmorph-cascade (2 runs) measured 3.82 mm, 1.10 mm above the identity's 2.72.
    runs = max([stage.get("cascade", 1) for stage in config["stages"]])
    assert error < _mean_error(sitk.Transform(), fixed) + 1.0 + 0.5 * (runs - 1), (name, error)

    warped = result.resample(moving)
    assert warped.GetSize() == fixed.GetSize() and warped.GetOrigin() == fixed.GetOrigin()
    assert np.isfinite(sitk.GetArrayViewFromImage(warped)).all()
    x = np.array(fixed.TransformIndexToPhysicalPoint((16, 15, 14)))
    mapped = np.array(result.transform.TransformPoint(x.tolist()))
    if result.inverse is not None:  # linear and velocity-field results: the inverse undoes the map
        back = np.array(result.inverse.TransformPoint(mapped.tolist()))
        # exact for linear results; exp(-v) o exp(v) of the velocity presets (instance
        # optimization included) is off by an interpolation error, measured 0.009-0.020 mm here
        # (under 1/100 of the 2.5 mm voxels). A network's result lives on its 4 mm velocity grid
        # (a cascade's is composed on the 2 mm canonical grid), so its error grows with the field
        # the network puts on this phantom: measured per preset in NETWORK_INVERSE_MM (bound: 1.25 x + 0.01 mm).
        tolerance = 1.25 * NETWORK_INVERSE_MM[name] + 0.01 if name in NETWORK_INVERSE_MM else 0.025
        assert np.linalg.norm(back - x) < tolerance, (name, back, x)
