"""Which models have an inverse is known once (engine/config.INVERTIBLE_MODELS), and both the
engine's result and the command line follow it.

Each model runs a real (tiny, two-iteration) registration of a phantom pair; what is checked is
whether an inverse exists and, for the linear ones, that it undoes the transform.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from phantoms import make_grid, sample_phantom
from regsuite.engine.config import (AFFINE_NETWORK_MODELS, DEFORMABLE_MODELS, INVERTIBLE_MODELS, LINEAR_MODELS,
                                    NETWORK_MODELS, load_preset)
from regsuite.engine.registration import register


def _pair() -> tuple[sitk.Image, sitk.Image]:
    grid = make_grid((20, 20, 20), (4.0, 4.0, 4.0))
    return sample_phantom(grid), sample_phantom(grid, lambda p: p + np.array([2.0, -1.0, 1.5]))


def _recipe(model: str) -> dict:
    return {"name": f"tiny-{model}", "initialization": "none",
            "stages": [{"model": model, "levels": [{"shrink": 1, "smoothing": 0, "iterations": 2}]}]}


def test_the_list_is_the_linear_models_svf_and_network():
    assert set(INVERTIBLE_MODELS) == set(LINEAR_MODELS) | {"affine-network", "svf", "network"}
    assert set(INVERTIBLE_MODELS) <= (set(LINEAR_MODELS) | set(AFFINE_NETWORK_MODELS) | set(DEFORMABLE_MODELS)
                                      | set(NETWORK_MODELS))
    assert load_preset("brain-mri-voxelmorph").is_invertible and load_preset("brain-mri-fast").is_invertible
    assert load_preset("affine").is_invertible and load_preset("brain-mri").is_invertible
    assert not load_preset("bspline").is_invertible


@pytest.mark.parametrize("model", LINEAR_MODELS + DEFORMABLE_MODELS)
def test_register_gives_an_inverse_exactly_for_the_invertible_models(model):
    fixed, moving = _pair()
    result = register(fixed, moving, _recipe(model), device="cpu", threads=1)
    assert (result.inverse is not None) == (model in INVERTIBLE_MODELS)
    if model in LINEAR_MODELS:
        point = (3.0, -5.0, 7.0)
        back = result.inverse.TransformPoint(result.transform.TransformPoint(point))
        assert np.allclose(back, point, rtol=0.0, atol=1e-9)  # an exact matrix inverse, double precision


def test_a_non_linear_initial_transform_leaves_no_inverse():
    fixed, moving = _pair()
    field = sitk.Image(fixed.GetSize(), sitk.sitkVectorFloat64)
    field.CopyInformation(fixed)
    initial = sitk.DisplacementFieldTransform(field)
    result = register(fixed, moving, _recipe("affine"), initial_transform=initial, device="cpu", threads=1)
    assert result.inverse is None


def test_the_command_line_refuses_an_inverse_of_a_displacement_preset_before_registering(tmp_path):
    fixed, moving = _pair()
    sitk.WriteImage(fixed, str(tmp_path / "f.nrrd"))
    sitk.WriteImage(moving, str(tmp_path / "m.nrrd"))
    preset = tmp_path / "dense.json"
    preset.write_text(json.dumps(_recipe("displacement")))
    out = subprocess.run([sys.executable, "-m", "regsuite", "register", "--fixed", str(tmp_path / "f.nrrd"),
                          "--moving", str(tmp_path / "m.nrrd"), "--preset", str(preset),
                          "--output-transform", str(tmp_path / "t.h5"), "--output-inverse", str(tmp_path / "i.h5")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'displacement' stage, which has no inverse" in lines[0]
    assert ", ".join(INVERTIBLE_MODELS) in lines[0]
    assert not (tmp_path / "t.h5").exists() and not (tmp_path / "i.h5").exists()
