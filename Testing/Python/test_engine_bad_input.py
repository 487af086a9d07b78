"""Hostile presets and inputs: every one ends as a one-line RegistrationSuite error, never a traceback.

The presets go through the real :func:`register` (validation runs before any image work, so
these calls are fast); the memory and thin-image checks run on real phantom volumes; one group
runs the command line in a subprocess and reads its exit status and stderr.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from phantoms import make_grid, sample_phantom
from regsuite.engine import config as config_module
from regsuite.engine.config import MAX_INTEGRATION_STEPS, list_presets, load_preset
from regsuite.engine.grid import Grid
from regsuite.engine.limits import (BSPLINE_BYTES_PER_POINT, bspline_bytes, check_stage_memory,
                                    control_grid_size, smallest_spacing)
from regsuite.engine.metrics import METRICS, metric_options
from regsuite.engine.pyramid import MIN_LEVEL_VOXELS, Pyramid, crop_to_foreground, foreground_box
from regsuite.engine.registration import _out_of_memory_fails, register
from regsuite.engine.transforms.bspline import BSplineField
from regsuite.engine.transforms.dense import DenseField
from regsuite.errors import InputError, PresetError, RegistrationFailed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair() -> tuple[sitk.Image, sitk.Image]:
    """A 24x24x20 phantom (3 mm voxels) and a copy shifted by 2 mm along x."""
    grid = make_grid((24, 24, 20), (3.0, 3.0, 3.0))
    return sample_phantom(grid), sample_phantom(grid, lambda p: p + [2.0, 0.0, 0.0])


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text, text
    return text


def rigid(**level_or_stage) -> dict:
    """A one-stage rigid preset with two levels; keys of LevelConfig go to level 1, others to the stage."""
    level_keys = {"shrink", "smoothing", "iterations", "learning_rate", "control_spacing"}
    level = {"shrink": 1, "smoothing": 0, "iterations": 3}
    level.update({k: v for k, v in level_or_stage.items() if k in level_keys})
    stage = {"model": "rigid", "levels": [{"shrink": 2, "smoothing": 1, "iterations": 3}, level]}
    stage.update({k: v for k, v in level_or_stage.items() if k not in level_keys})
    return {"stages": [stage]}


# ----------------------------------------------------------------------------- preset values
HOSTILE = [
    (rigid(iterations=math.nan), "stages[0].levels[1].iterations must be a finite number"),
    (rigid(iterations=math.inf), "stages[0].levels[1].iterations must be a finite number"),
    (rigid(iterations=2.5), "stages[0].levels[1].iterations must be an integer"),
    (rigid(iterations=-1), "stages[0].levels[1].iterations must be >= 0"),
    (rigid(iterations=1e30), "stages[0].levels[1].iterations must be <= 10000000"),
    (rigid(iterations=True), "stages[0].levels[1].iterations must be a number, got True"),
    (rigid(shrink="2"), "stages[0].levels[1].shrink must be a number, got '2'"),
    (rigid(shrink=0.5), "stages[0].levels[1].shrink must be >= 1"),
    (rigid(shrink=-math.inf), "stages[0].levels[1].shrink must be a finite number"),
    (rigid(smoothing=math.nan), "stages[0].levels[1].smoothing must be a finite number"),
    (rigid(smoothing=-1), "stages[0].levels[1].smoothing must be >= 0"),
    (rigid(learning_rate=0), "stages[0].levels[1].learning_rate must be > 0"),
    (rigid(learning_rate=math.nan), "stages[0].levels[1].learning_rate must be a finite number"),
    (rigid(tolerance=math.inf), "stages[0].tolerance must be a finite number"),
    (rigid(window=0), "stages[0].window must be >= 1"),
    (rigid(use_masks="yes"), "stages[0].use_masks must be true or false"),
    (rigid(model=["rigid"]), "stages[0].model must be a string, got list"),
    (rigid(model={"name": "rigid"}), "stages[0].model must be a string, got dict"),
    (rigid(metric=["ncc"]), "stages[0].metric must be one of mse, ssd"),
    (rigid(metric="ssim"), "stages[0].metric: unknown metric 'ssim'"),
    (rigid(optimizer=7), "stages[0].optimizer must be one of adam"),
    (rigid(metric_options=[1]), "stages[0].metric_options must be a JSON object"),
    (rigid(levels=[]), "stages[0].levels must be a non-empty list"),
    (rigid(levels=[[2, 1, 3, 4]]), "stages[0].levels[0] must be [shrink, smoothing, iterations] or an object"),
    (rigid(levels=[{"shrink": 2, "iteration": 3}]), "stages[0].levels[0]: unknown key(s) iteration"),
    ({"stages": [{"model": "bspline", "control_spacing": 0}]}, "stages[0].control_spacing must be > 0"),
    ({"stages": [{"model": "bspline", "control_spacing": -5.0}]}, "stages[0].control_spacing must be > 0"),
    ({"stages": [{"model": "bspline", "levels": [{"shrink": 2, "control_spacing": math.nan}]}]},
     "stages[0].levels[0].control_spacing must be a finite number"),
    ({"stages": [{"model": "bspline", "regularization": {"bending": math.nan}}]},
     "stages[0].regularization.bending must be a finite number"),
    ({"stages": [{"model": "svf", "integration_steps": 100}]},
     f"stages[0].integration_steps must be <= {MAX_INTEGRATION_STEPS}"),
    ({"stages": [{"model": "svf", "integration_steps": 3.5}]}, "stages[0].integration_steps must be an integer"),
    ({"stages": [{"model": "svf", "optimizer": "gaussian", "gradient_smoothing": -1}]},
     "stages[0].gradient_smoothing must be >= 0"),
    ({"stages": []}, "needs a non-empty 'stages' list"),
    ({"stages": [{"model": "rigid"}], "name": 5}, "preset: name must be a string, got int"),
    ({"stages": [{"model": "rigid"}], "initialization": ["moments"]}, "preset: initialization must be one of none"),
    ({"stages": [{"model": "rigid"}], "intensity": {"mode": "window", "window": [-1000, math.inf]}},
     "intensity mode 'window' needs \"window\": [low, high]"),
    ({"stages": [{"model": "rigid"}], "intensity": {"low": 99, "high": 1}}, "intensity 'low' (99) must be below 'high' (1)"),
    ({"stages": [{"model": "rigid"}], "intensity": {"low": math.nan}}, "intensity 'low' must be a percentile"),
    ({"stages": [{"model": "rigid"}], "intensity": {"mode": "none", "clip": "no"}}, "intensity mode 'none' does not take clip"),
    ({"stages": [{"model": "rigid"}], "intensity": {"clip": 1}}, "intensity.clip must be true or false"),
]


@pytest.mark.parametrize("preset, message", HOSTILE, ids=[m[:48] for _, m in HOSTILE])
def test_hostile_preset_values_are_one_line_preset_errors(pair, preset, message):
    """register() refuses the preset before reading the images; the message names key, stage and level."""
    with pytest.raises(PresetError) as error:
        register(*pair, preset, threads=1)
    assert message in one_line(error)


def test_json_nan_and_infinity_literals_are_refused(tmp_path):
    """Python's json module reads the non-standard NaN / Infinity literals; validation refuses them."""
    path = tmp_path / "nan.json"
    path.write_text('{"stages": [{"model": "rigid", "learning_rate": Infinity, "levels": [[2, 1, NaN]]}]}')
    with pytest.raises(PresetError) as error:
        load_preset(path)
    assert "preset 'nan.json': stages[0].levels[0].iterations must be a finite number, got nan" == one_line(error)


def test_shipped_presets_pass_the_stricter_validation():
    for name in list_presets():
        config = load_preset(name)
        assert config.stages and all(stage.levels for stage in config.stages), name


def test_preset_metric_names_match_the_engine():
    """config.METRICS (torch-free copy for validation) lists exactly the engine's measures."""
    assert config_module.METRICS == tuple(METRICS)


@pytest.mark.parametrize("options, message", [
    ({"metric": "lncc", "metric_options": {"radius": 10 ** 9}}, "option radius must be an integer from 1 to 32"),
    ({"metric": "mi", "metric_options": {"bins": 10 ** 9}}, "option bins must be an integer from 8 to 1024"),
    ({"metric": "ncc", "metric_options": {"eps": math.inf}}, "option eps must be a finite number > 0"),
    ({"metric": "mind", "metric_options": {"dilation": 10 ** 6}}, "option dilation must be an integer from 1 to 16"),
    ({"metric": "ngf", "metric_options": {"bins": 8}}, "metric 'ngf': unknown option bins"),
])
def test_bad_metric_options_name_the_stage_before_any_work(pair, options, message):
    """Huge windows and histograms would otherwise fail inside torch's allocator."""
    preset = {"stages": [{"model": "rigid", "levels": [[2, 1, 2]]}, {"model": "affine", "levels": [[2, 1, 2]], **options}]}
    with pytest.raises(PresetError) as error:
        register(*pair, preset, threads=1)
    text = one_line(error)
    assert "stages[1]" in text and message in text, text


def test_preset_of_the_wrong_type_and_bad_arguments(pair):
    with pytest.raises(PresetError, match="a preset must be a name, a JSON file path, a mapping"):
        register(*pair, ["rigid"])
    for kwargs, message in (({"threads": 0}, "threads must be an integer from 1 to 1024"),
                            ({"threads": 1.5}, "threads must be an integer"),
                            ({"threads": 2 ** 40}, "threads must be an integer from 1 to 1024"),
                            ({"initial_transform": sitk.Euler2DTransform()}, "initial_transform is 2D"),
                            ({"seed": -1}, "seed must be an integer from 0"),
                            ({"device": None}, "device must be 'auto', 'cpu' or 'cuda'"),
                            ({"initial_transform": "identity"}, "initial_transform must be a SimpleITK transform")):
        with pytest.raises(InputError) as error:
            register(*pair, "rigid", **kwargs)
        assert message in one_line(error)


# ----------------------------------------------------------------------------- memory bounds
def test_a_control_spacing_far_below_the_voxel_size_is_refused_before_allocating(pair):
    """0.01 mm over a 72x72x60 mm box: 7203x7203x6003 control points, ~7e4 GiB, more than any device.

    Without the check torch fails inside its allocator (or the machine swaps); the estimate is
    made from the image extent alone, so the call returns at once with the smallest spacing
    that would fit.
    """
    preset = {"initialization": "none", "stages": [{"model": "bspline", "control_spacing": 0.01, "levels": [[2, 1, 2]]}]}
    with pytest.raises(PresetError) as error:
        register(*pair, preset, threads=1)
    text = one_line(error)
    assert "stages[0].levels[0]: a B-spline control spacing of 0.01 mm gives 7203x7203x6003 control points" in text
    assert "use a control spacing of at least" in text


def test_memory_estimate_and_suggested_spacing_against_an_explicit_budget():
    """Exact control-point counts, and the suggested spacing fits the budget while 10 % less does not."""
    domain = Grid((96, 112, 96), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert control_grid_size(domain, 5.0) == (23, 26, 23)  # ceil(96 / 5) + 3, ceil(112 / 5) + 3
    assert bspline_bytes(domain, 5.0) == 23 * 26 * 23 * BSPLINE_BYTES_PER_POINT
    budget = 2 ** 30
    spacing = smallest_spacing(domain, budget)
    assert bspline_bytes(domain, spacing) <= budget < bspline_bytes(domain, 0.9 * spacing)
    stage = load_preset({"stages": [{"model": "bspline", "control_spacing": 0.9 * spacing, "levels": [[2, 1, 1], [1, 0, 1]]}]}).stages[0]
    grids = [domain.shrink(2), domain]
    with pytest.raises(PresetError, match=r"^here\.levels\[1\]: a B-spline control spacing"):
        check_stage_memory(stage, grids, domain, budget, "here")
    stage.control_spacing = spacing  # level 0 uses twice the spacing, level 1 this one: both fit
    check_stage_memory(stage, grids, domain, budget, "here")
    dense = load_preset({"stages": [{"model": "svf", "levels": [[2, 1, 1], [1, 0, 1]]}]}).stages[0]
    with pytest.raises(PresetError, match=r"here\.levels\[1\]: a svf field on the 96x112x96 level grid"):
        check_stage_memory(dense, grids, domain, budget // 2, "here")  # 1.03 M voxels x 672 bytes > 0.5 GiB


def test_allocation_failures_become_registration_failed():
    """A real failed allocation (2**62 floats, beyond any address space) inside a stage."""
    with pytest.raises(RegistrationFailed, match=r"^stage 2 \(bspline\) ran out of memory"):
        with _out_of_memory_fails(1, "bspline"):
            torch.empty(2 ** 62)
    with pytest.raises(RuntimeError, match="unrelated"):  # other runtime errors are not disguised
        with _out_of_memory_fails(1, "bspline"):
            raise RuntimeError("unrelated")


# ----------------------------------------------------------------------------- thin images
@pytest.mark.parametrize("size", [(40, 40, 2), (40, 3, 40)])
def test_images_two_or_three_voxels_thick_are_refused(tmp_path, size):
    slab = sample_phantom(make_grid(size, (2.0, 2.0, 2.0)))
    full = sample_phantom(make_grid((40, 40, 40), (2.0, 2.0, 2.0)))
    axis = "xyz"[int(np.argmin(size))]
    shape = "x".join(map(str, size))
    with pytest.raises(InputError) as error:
        register(slab, full, "rigid", threads=1)
    assert one_line(error) == (f"fixed image has {min(size)} voxel(s) along {axis} (size {shape}); "
                               f"registration needs at least {MIN_LEVEL_VOXELS} voxels along every axis")
    path = tmp_path / "slab.nii.gz"
    sitk.WriteImage(slab, str(path))
    with pytest.raises(InputError, match=r"^moving image '.*slab\.nii\.gz' has"):
        register(full, str(path), "rigid", threads=1)


def test_2d_4d_and_vector_images_are_refused(pair):
    fixed = pair[0]
    volume = sitk.GetArrayFromImage(fixed)
    series = sitk.GetImageFromArray(np.stack([volume, volume]), isVector=False)  # 4D: two time points
    vector = sitk.GetImageFromArray(np.stack([volume, volume], axis=-1), isVector=True)
    for image, message in ((sitk.Image([16, 16], sitk.sitkFloat32), "is 2D"), (series, "is 4D"),
                           (vector, "2 components per voxel")):
        with pytest.raises(InputError) as error:
            register(fixed, image, "rigid", threads=1)
        assert one_line(error).startswith("moving image") and message in str(error.value)


def test_a_five_voxel_slab_keeps_four_voxels_per_level_and_registers():
    """The rigid preset shrinks by 4: a 5-voxel axis would keep 2 voxels; it keeps 4 (whole extent)."""
    grid = make_grid((40, 40, 5), (2.0, 2.0, 2.0))
    fixed, moving = sample_phantom(grid), sample_phantom(grid, lambda p: p + [3.0, -2.0, 0.0])
    pyramid = Pyramid(fixed, moving)
    level = pyramid.level(4, 2).fixed_grid
    assert level.size == (10, 10, 4)
    assert level.extent[2] == pytest.approx(Grid.from_sitk(fixed).extent[2])  # the clamped axis spans the slab
    assert level.spacing[:2] == (8.0, 8.0)  # the other axes shrink by 4 as asked
    result = register(fixed, moving, "rigid", threads=1)
    # The shift is 1.5 and 1 voxels in plane; 0.1 mm (5 % of a voxel) leaves room for float noise
    # across CPUs while a level that lost the slab (or a wrong clamp) misses by far more.
    moved = np.array(result.transform.TransformPoint((0.0, 0.0, 0.0)))
    assert np.allclose(moved, (-3.0, 2.0, 0.0), atol=0.1), moved


def test_the_foreground_crop_keeps_four_voxels_per_axis():
    """20 mm voxels: the 12 mm margin adds one voxel per side, a 3-voxel box; it grows to 4 inside
    the image (at the image edge it grows inwards only)."""
    image = sitk.Image([10, 10, 10], sitk.sitkFloat32)
    image.SetSpacing((20.0, 1.0, 20.0))
    image[5, 5, 0] = 1.0
    index, size = foreground_box(image, margin_mm=12.0)
    assert index.tolist() == [3, 0, 0] and size.tolist() == [4, 10, 4]
    cropped, _ = crop_to_foreground(image, margin_mm=12.0)
    assert cropped.GetSize() == (4, 10, 4) and cropped[2, 5, 0] == 1.0


# ----------------------------------------------------------------------------- run-time failure
def test_a_diverging_learning_rate_ends_as_registration_failed(pair):
    preset = {"initialization": "none", "stages": [{"model": "rigid", "learning_rate": 1e12, "levels": [[2, 1, 5]]}]}
    with pytest.raises(RegistrationFailed) as error:
        register(*pair, preset, threads=1)
    assert "lower the learning rate" in one_line(error)


# ----------------------------------------------------------------------------- audit
def test_engine_misuse_raises_project_errors_not_builtins():
    grid = Grid((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="no exact inverse"):
        DenseField(grid).to_sitk(grid, inverse=True)
    tilted = Grid((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]))
    with pytest.raises(InputError, match="direction cosines"):
        BSplineField(grid, 4.0).displacement(tilted)
    with pytest.raises(PresetError, match="unknown metric 'ssim'"):
        metric_options("ssim")


# ----------------------------------------------------------------------------- command line
def run_cli(*argv: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regsuite", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def assert_cli_refuses(process: subprocess.CompletedProcess, *needles: str) -> None:
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2, process.stderr
    assert len(lines) == 1 and lines[0].startswith("regsuite: error: "), process.stderr
    assert "Traceback" not in process.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_hostile_preset_thin_image_and_huge_control_grid_exit_2(tmp_path, pair):
    fixed, moving, slab = tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz", tmp_path / "slab.nii.gz"
    sitk.WriteImage(pair[0], str(fixed))
    sitk.WriteImage(pair[1], str(moving))
    sitk.WriteImage(sample_phantom(make_grid((24, 24, 3), (3.0, 3.0, 3.0))), str(slab))
    nan_preset = tmp_path / "nan.json"
    nan_preset.write_text('{"stages": [{"model": "rigid", "levels": [[2, 1, NaN]]}]}')
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps({"stages": [{"model": "bspline", "control_spacing": 0.01, "levels": [[2, 1, 2]]}]}))
    output = tmp_path / "t.tfm"
    assert_cli_refuses(run_cli("register", "--fixed", fixed, "--moving", moving, "--preset", nan_preset,
                               "--output-transform", output), "nan.json", "levels[0].iterations", "finite")
    assert_cli_refuses(run_cli("register", "--fixed", slab, "--moving", moving, "--preset", "rigid",
                               "--output-transform", output), "fixed image", "3 voxel(s) along z", "24x24x3")
    assert_cli_refuses(run_cli("register", "--fixed", fixed, "--moving", moving, "--preset", fine, "--device", "cpu",
                               "--output-transform", tmp_path / "t.h5"), "control spacing of 0.01 mm")
    assert not output.exists() and not (tmp_path / "t.h5").exists()
