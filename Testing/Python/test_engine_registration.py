"""register(): known transforms are recovered in physical space, on different grids."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from phantoms import make_grid, rotation, sample_phantom
from regsuite.engine.config import load_preset
from regsuite.engine.registration import register
from regsuite.errors import InputError, RegistrationCancelled
from regsuite.io.transforms import read_transform, write_transform

OBLIQUE = rotation((0.15, -0.1, 0.25))


def _pair(world_map, fixed_grid=None, moving_grid=None):
    fixed = sample_phantom(fixed_grid or make_grid((36, 32, 28), (2.2, 2.2, 2.6), None, OBLIQUE))
    moving = sample_phantom(moving_grid or make_grid((40, 38, 22), (2.0, 2.1, 3.2)), world_map)
    return fixed, moving


def _fast(model_stage: dict, initialization: str = "moments", **extra) -> dict:
    return {"name": "test", "initialization": initialization, "stages": [model_stage], **extra}


def _errors(transform, true_map, fixed, step=4, margin=6):
    """Distances (mm) between ``transform`` and ``true_map`` on a sub-grid of fixed voxels."""
    size = fixed.GetSize()
    errors = []
    for i in range(margin, size[0] - margin, step):
        for j in range(margin, size[1] - margin, step):
            for k in range(margin, size[2] - margin, step):
                x = np.array(fixed.TransformIndexToPhysicalPoint((i, j, k)))
                errors.append(np.linalg.norm(np.array(transform.TransformPoint(x.tolist())) - true_map(x[None])[0]))
    return np.array(errors)


def _max_error(transform, true_map, fixed, step=4, margin=6):
    return float(_errors(transform, true_map, fixed, step, margin).max())


def _mean_error(transform, true_map, fixed, margin=8, step=3):
    return float(_errors(transform, true_map, fixed, step, margin).mean())


def test_rigid_recovered_on_oblique_anisotropic_grids():
    rot = rotation((0.08, -0.06, 0.12))
    shift = np.array([4.0, -3.0, 2.5])
    true_map = lambda p: p @ rot.T + shift  # fixed world -> moving world
    # moving(y) = phantom(true_map^-1(y)), so that moving(true_map(x)) = fixed(x)
    inverse = lambda p: (p - shift) @ rot
    fixed, moving = _pair(inverse)
    stage = {"model": "rigid", "metric": "ncc", "learning_rate": 1.0, "levels": [[2, 1, 120], [1, 0, 60]]}
    result = register(fixed, moving, _fast(stage), threads=2)
    assert _max_error(result.transform, true_map, fixed) < 1.0  # voxels are 2-3 mm
    assert _mean_error(result.transform, true_map, fixed, margin=6, step=4) < 0.4
    assert isinstance(result.transform, sitk.Euler3DTransform)
    before, after = result.metrics["stages"][0]["metric_before"], result.metrics["stages"][0]["metric_after"]
    assert after < before


def test_affine_recovered_with_lbfgs():
    matrix = np.array([[1.06, 0.04, 0.0], [-0.03, 0.95, 0.02], [0.0, 0.05, 1.04]])
    shift = np.array([2.0, 1.0, -2.0])
    true_map = lambda p: p @ matrix.T + shift
    inverse = lambda p: (p - shift) @ np.linalg.inv(matrix).T
    fixed, moving = _pair(inverse)
    stage = {"model": "affine", "metric": "mse", "optimizer": "lbfgs", "learning_rate": 1.0, "levels": [[2, 1, 60], [1, 0, 40]]}
    result = register(fixed, moving, _fast(stage), threads=2)
    assert _max_error(result.transform, true_map, fixed) < 0.8


@pytest.mark.parametrize("seed,perturbation", [(0, 0.0), (1, 1e-6)])
def test_evolutionary_optimizer_recovers_a_large_translation(seed, perturbation):
    # An 18 mm shift, no initialization. The second case changes both the sample stream and
    # the last bits of the moving image (relative 1e-6, a few float32 ulps; the metric then
    # differs in its last bits, as it does between CPUs): the answer must not hinge on either.
    shift = np.array([14.0, -10.0, 6.0])
    fixed, moving = _pair(lambda p: p - shift)
    if perturbation:
        values = sitk.GetArrayFromImage(moving)
        noise = np.random.default_rng(7).uniform(-1.0, 1.0, values.shape)
        perturbed = sitk.GetImageFromArray((values * (1.0 + perturbation * noise)).astype(np.float32))
        perturbed.CopyInformation(moving)
        moving = perturbed
    stage = {"model": "rigid", "metric": "ncc", "optimizer": "cma-es", "learning_rate": 8.0,
             "levels": [[4, 1, 60], [2, 0, 40], [1, 0, 40]]}
    # One thread: ~1300 evaluations on at most 32k voxels, where thread hand-offs would dominate.
    result = register(fixed, moving, _fast(stage, initialization="none"), threads=1, seed=seed)
    # Image-limited: the NCC optimum on the 2.2-2.6 mm fixed grid itself lies about 0.05 mm
    # from the truth at these points (150 generations at full resolution, 3 seeds: 0.043-0.055
    # mm); these budgets reached 0.015-0.060 mm over 16 seeds and perturbed inputs. 0.1 mm is
    # 1/22 of a voxel. (Before each level restarted at the full 8 mm step: 0.4-2.8 mm by seed.)
    assert _max_error(result.transform, lambda p: p + shift, fixed) < 0.1


def _smooth_warp(p):
    return p + np.stack([3.0 * np.sin(p[:, 1] / 14.0), 2.5 * np.cos(p[:, 0] / 16.0), 2.0 * np.sin(p[:, 2] / 12.0)], 1)


#: The known smooth warp (amplitudes 3.0, 2.5 and 2.0 mm along x, y, z; wavelengths 75-100 mm)
#: moves the inner voxels of the 36 x 36 x 30 grid of 2 mm voxels by 3.01 mm on average.
START_MEAN_MM = 3.01
#: Mean error (mm) left by each recipe of these tests, bounded about 15 % above the value measured
#: on one CPU (in brackets), which float noise on other CPUs moves by far less. With 60 + 40
#: iterations at 4 and 2 mm and the update and field smoothed over 1-2 voxels, the dense models
#: leave about half a voxel (1 mm, a third of the warp); the B-spline (8 mm control points for
#: 75-100 mm wavelengths) and the symmetric velocity field leave about a third of a voxel. The old
#: bound, 0.42 x 3.01 = 1.27 mm, let any of them lose a quarter of its accuracy unnoticed.
RECOVERED_MM = {
    "svf": 1.17,  # [1.017]
    "bspline": 0.66,  # [0.569]
    "displacement": 1.22,  # [1.057]
    "svf exact_every 5": 1.20,  # [1.042]
    "svf field_shrink 2": 1.14,  # [0.987]
    "svf compositive": 1.25,  # [1.082]
    "displacement compositive": 1.22,  # [1.053]
    "svf symmetric": 0.76,  # [0.657]
}
#: exp(-v)(exp(v)(x)) - x at the grid centre for the velocity-field results: the exported maps are
#: the exact integrations, so the round trip is an interpolation error, measured 0.005-0.008 mm.
ROUND_TRIP_MM = 0.01


def _round_trip_mm(result, fixed) -> float:
    x = np.array(fixed.TransformIndexToPhysicalPoint((18, 18, 15)))
    back = np.array(result.inverse.TransformPoint(result.transform.TransformPoint(x.tolist())))
    return float(np.linalg.norm(back - x))


@pytest.mark.parametrize("model,optimizer", [("svf", "gaussian"), ("bspline", "adam"), ("displacement", "gaussian")])
def test_deformable_models_reduce_a_known_smooth_deformation(model, optimizer):
    grid = make_grid((36, 36, 30), (2.0, 2.0, 2.0))
    fixed = sample_phantom(grid)
    moving = sample_phantom(grid, _inverse_of_smooth_warp)
    stage = {"model": model, "metric": "lncc", "optimizer": optimizer, "learning_rate": 0.5 if model != "bspline" else 0.3,
             "control_spacing": 8.0, "levels": [[2, 1, 60], [1, 0, 40]]}
    result = register(fixed, moving, _fast(stage, initialization="none"), threads=2)
    assert _mean_error(sitk.Transform(), _smooth_warp, fixed) == pytest.approx(START_MEAN_MM, abs=0.01)
    assert _mean_error(result.transform, _smooth_warp, fixed) < RECOVERED_MM[model]
    if model == "svf":
        assert result.inverse is not None
        assert _round_trip_mm(result, fixed) < ROUND_TRIP_MM


def _inverse_of_smooth_warp(points):
    estimate = points.copy()
    for _ in range(30):  # fixed-point iteration: y = x + d(x)  =>  x = y - d(x)
        estimate = points - (_smooth_warp(estimate) - estimate)
    return estimate


def test_written_transform_reproduces_the_engine_resampling(tmp_path):
    fixed, moving = _pair(lambda p: p - np.array([2.0, 1.0, 0.0]))
    config = load_preset("deformable").to_dict()
    for stage in config["stages"]:
        stage["levels"] = [[2, 1, 15]]
    result = register(fixed, moving, config, threads=2)
    engine = sitk.GetArrayFromImage(result.resample(moving))
    write_transform(result.transform, tmp_path / "exact.h5", field_quantum=None)  # full precision
    again = sitk.Resample(moving, fixed, read_transform(tmp_path / "exact.h5"))
    assert np.abs(sitk.GetArrayFromImage(again) - engine).max() < 1e-5
    # The default file rounds the field to 2**-10 mm: a point moves by at most sqrt(3) 2**-11 mm,
    # times the affine's stretch (< 1.1 here); the trilinear image changes by at most its steepest
    # slope along an axis (intensity per mm) times the sum of the point's axis moves (sqrt(3) x).
    write_transform(result.transform, tmp_path / "compact.h5")
    compact = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, read_transform(tmp_path / "compact.h5")))
    values = sitk.GetArrayFromImage(moving)
    slope = max(np.abs(np.diff(values, axis=2 - axis)).max() / moving.GetSpacing()[axis] for axis in range(3))
    bound = slope * np.sqrt(3.0) * 1.1 * np.sqrt(3.0) * 2.0 ** -11
    assert 0.0 < np.abs(compact - engine).max() <= bound
    assert result.inverse is not None


def test_progress_history_and_cancel():
    fixed, moving = _pair(lambda p: p - np.array([2.0, 0.0, 0.0]))
    events = []
    stage = {"model": "rigid", "metric": "ncc", "levels": [[2, 1, 10], [1, 0, 5]], "tolerance": 0}
    result = register(fixed, moving, _fast(stage), threads=2, progress=events.append)
    assert len(events) == len(result.history) == 15
    assert (events[0].level, events[-1].level, events[-1].levels) == (1, 2, 2)
    for answered_yes_at in (1, 4, 13):  # the first iteration, within the first level, in the second
        calls, events = [], []
        with pytest.raises(RegistrationCancelled):
            register(fixed, moving, _fast(stage), threads=2, progress=events.append,
                     cancel=lambda n=answered_yes_at: len(calls.append(1) or calls) >= n)
        # cancel is asked once an iteration, after its progress report, and stops the run at once
        assert len(calls) == len(events) == answered_yes_at


def test_bad_inputs_give_clear_errors_and_inputs_stay_untouched():
    fixed, moving = _pair(lambda p: p)
    before = sitk.GetArrayFromImage(moving).copy()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            register(fixed, moving, "rigid", device="cuda")
    flat = sitk.Image([20, 20], sitk.sitkFloat32)
    with pytest.raises(InputError, match="2D"):
        register(flat, moving, "rigid")
    nan = sitk.Image(fixed)
    nan[3, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        register(nan, moving, "rigid")
    with pytest.raises(InputError, match="empty"):
        register(fixed, moving, "rigid", fixed_mask=_empty_mask(fixed))
    far = sitk.Image(moving)
    far.SetOrigin([1000.0, 1000.0, 1000.0])
    with pytest.raises(InputError, match="overlap"):
        register(fixed, far, {"initialization": "none", "stages": [{"model": "rigid"}]})
    assert np.array_equal(sitk.GetArrayFromImage(moving), before)


def _empty_mask(image):
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    return mask


def test_fixed_mask_restricts_the_metric():
    fixed, moving = _pair(lambda p: p - np.array([3.0, 0.0, 0.0]))
    mask = sitk.Cast(sitk.BinaryThreshold(fixed, 0.3, 10.0), sitk.sitkUInt8)
    stage = {"model": "rigid", "metric": "ncc", "levels": [[2, 1, 60], [1, 0, 30]]}
    result = register(fixed, moving, _fast(stage), fixed_mask=mask, threads=2)
    assert _max_error(result.transform, lambda p: p + np.array([3.0, 0.0, 0.0]), fixed) < 0.8


@pytest.mark.parametrize("extra", [{"exact_every": 5}, {"field_shrink": 2.0}],
                         ids=["compositive-updates", "coarse-velocity-grid"])
def test_svf_speed_options_still_recover_the_smooth_deformation(extra):
    """exact_every (first-order updates of exp(v) between exact integrations) and field_shrink (the
    velocity on a coarser grid, the gradient at full resolution) keep the accuracy of the plain run."""
    grid = make_grid((36, 36, 30), (2.0, 2.0, 2.0))
    fixed = sample_phantom(grid)
    moving = sample_phantom(grid, _inverse_of_smooth_warp)
    levels = [{"shrink": 2, "smoothing": 1, "iterations": 60}, {"shrink": 1, "smoothing": 0, "iterations": 40}]
    if "field_shrink" in extra:
        levels[1]["field_shrink"] = extra["field_shrink"]
    stage = {"model": "svf", "metric": "lncc", "optimizer": "gaussian", "learning_rate": 0.5, "levels": levels,
             "exact_every": extra.get("exact_every", 1)}
    result = register(fixed, moving, _fast(stage, initialization="none"), threads=2)
    label = "svf exact_every 5" if "exact_every" in extra else "svf field_shrink 2"
    assert _mean_error(result.transform, _smooth_warp, fixed) < RECOVERED_MM[label]
    assert _round_trip_mm(result, fixed) < ROUND_TRIP_MM  # the exported field is still the exact exp(v), exp(-v)


def test_velocity_first_order_update_matches_exact_integration():
    from regsuite.engine.grid import Grid
    from regsuite.engine.transforms.dense import VelocityField

    grid = Grid((20, 18, 16), (2.0, 2.0, 2.5), (0.0, 0.0, 0.0), np.eye(3))
    z, y, x = torch.meshgrid(*[torch.linspace(0, 1, n) for n in grid.shape_zyx], indexing="ij")
    velocity = torch.stack([3 * torch.sin(3 * y), 2 * torch.cos(2 * x), 1.5 * torch.sin(2 * z)])[None]
    change = 0.02 * velocity.roll(1, dims=1)
    model = VelocityField(grid, velocity, steps=6)
    current = model.displacement()
    approximate = model.advanced(current, change)
    exact = model.exponential(velocity + change)
    assert (approximate - exact).abs().max() < 0.1 * change.abs().max()  # second-order error only
    assert (current - exact).abs().max() > 0.5 * change.abs().max()


def test_preset_rejects_field_shrink_outside_dense_models_and_bad_values():
    from regsuite.errors import PresetError

    with pytest.raises(PresetError, match="field_shrink is for 'displacement' and 'svf'"):
        load_preset({"stages": [{"model": "bspline", "levels": [{"shrink": 1, "iterations": 5, "field_shrink": 2}]}]})
    with pytest.raises(PresetError, match="field_shrink"):
        load_preset({"stages": [{"model": "svf", "levels": [{"shrink": 1, "iterations": 5, "field_shrink": 0.5}]}]})
    with pytest.raises(PresetError, match="exact_every"):
        load_preset({"stages": [{"model": "svf", "exact_every": 0}]})
    with pytest.raises(PresetError, match="field_smoothing"):
        load_preset({"stages": [{"model": "svf", "levels": [{"shrink": 1, "iterations": 5, "field_smoothing": -1}]}]})
    level = load_preset({"stages": [{"model": "svf", "levels": [{"shrink": 1, "iterations": 5, "field_smoothing": 0.5}]}]})
    assert level.stages[0].levels[0].field_smoothing == 0.5


def test_own_adam_matches_torch_adam():
    from regsuite.engine.optimizers import Adam

    ours = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)
    reference = ours.detach().clone().requires_grad_(True)
    optimizers = [(ours, Adam([ours], lr=0.05)), (reference, torch.optim.Adam([reference], lr=0.05))]
    for _ in range(40):
        for parameter, optimizer in optimizers:
            optimizer.zero_grad()
            ((parameter - 1.0) ** 4 + parameter.sin()).sum().backward()
            optimizer.step()
    assert torch.allclose(ours, reference, atol=1e-5)


def test_lie_bracket_gives_the_composition_to_second_order():
    """exp(v) o (id + d) = exp(v + d + [v, d] / 2) up to third-order terms (BCH), on an oblique grid."""
    from regsuite.engine.grid import Grid
    from regsuite.engine.stages.deformable import lie_bracket
    from regsuite.engine.transforms.dense import VelocityField

    grid = Grid((40, 36, 32), (2.0, 2.0, 2.5), (0.0, 0.0, 0.0), OBLIQUE)
    z, y, x = torch.meshgrid(*[torch.linspace(0, 1, n) for n in grid.shape_zyx], indexing="ij")
    v = torch.stack([6 * torch.sin(3 * y), 5 * torch.cos(2 * x), 4 * torch.sin(2 * z)])[None]
    d = 0.3 * torch.stack([torch.cos(4 * z), torch.sin(3 * x), torch.cos(3 * y)])[None]
    model = VelocityField(grid, v, steps=8)
    target = model.advanced(model.exponential(v), d)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3), slice(3, -3))
    plain = float((model.exponential(v + d) - target)[inner].abs().mean())
    corrected = float((model.exponential(v + d + 0.5 * lie_bracket(v, d, grid)) - target)[inner].abs().mean())
    assert corrected < 0.2 * plain


def test_compositive_updates_recover_the_smooth_deformation_without_folding():
    grid = make_grid((36, 36, 30), (2.0, 2.0, 2.0))
    fixed = sample_phantom(grid)
    moving = sample_phantom(grid, _inverse_of_smooth_warp)
    for model in ("svf", "displacement"):
        stage = {"model": model, "metric": "lncc", "optimizer": "gaussian", "learning_rate": 0.5, "update": "compositive",
                 "exact_every": 4, "levels": [[2, 1, 60], [1, 0, 40]]}
        result = register(fixed, moving, _fast(stage, initialization="none"), threads=2)
        assert _mean_error(result.transform, _smooth_warp, fixed) < RECOVERED_MM[f"{model} compositive"]
        field = sitk.TransformToDisplacementField(result.transform, sitk.sitkVectorFloat64, fixed.GetSize(),
                                                  fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection())
        assert float(sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field)).min()) > 0


def test_half_resolution_helpers_match_full_resolution_on_smooth_fields():
    """The large-level shortcuts (gradient smoothing and Lie bracket through a 2x coarser volume)."""
    from regsuite.engine.filters import gaussian_blur, gaussian_blur_fast
    from regsuite.engine.grid import Grid
    from regsuite.engine.stages.deformable import lie_bracket, lie_bracket_coarse

    grid = Grid((61, 56, 50), (1.0, 1.2, 1.5), (0.0, 0.0, 0.0), OBLIQUE)
    z, y, x = torch.meshgrid(*[torch.linspace(0, 1, n) for n in grid.shape_zyx], indexing="ij")
    a = torch.stack([6 * torch.sin(3 * y), 5 * torch.cos(2 * x), 4 * torch.sin(2 * z)])[None]
    b = 0.3 * torch.stack([torch.cos(4 * z), torch.sin(3 * x), torch.cos(3 * y)])[None]
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(4, -4))
    full, fast = gaussian_blur(a, 1.732)[inner], gaussian_blur_fast(a, 1.732)[inner]
    assert float((full - fast).abs().max()) < 0.01 * float(full.abs().max())
    exact, coarse = lie_bracket(a, b, grid)[inner], lie_bracket_coarse(a, b, grid)[inner]
    assert float((exact - coarse).abs().mean()) < 0.02 * float(exact.abs().mean())
    impulse = torch.zeros(1, 1, 31, 32, 33)
    impulse[..., 15, 16, 16] = 1.0
    assert abs(float(gaussian_blur_fast(impulse, 2.0).sum()) - 1.0) < 1e-4  # mass kept


def test_gaussian_blur_matches_a_grouped_convolution_and_keeps_gradients():
    """The shifted-view filter equals the textbook grouped conv3d with replicated borders, per axis sigma."""
    import torch.nn.functional as F

    from regsuite.engine.filters import gaussian_blur, gaussian_kernel1d

    volume = torch.rand(1, 3, 9, 12, 14, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = (0.5, 1.2, 2.0)  # x, y, z
    reference = volume
    for axis, sigma in zip((4, 3, 2), sigmas):
        kernel = gaussian_kernel1d(sigma, dtype=torch.float64)
        radius = kernel.numel() // 2
        shape = [1, 1, 1]
        shape[axis - 2] = kernel.numel()
        pad = [0] * 6
        pad[(4 - axis) * 2] = pad[(4 - axis) * 2 + 1] = radius
        weight = kernel.reshape(1, 1, *shape).repeat(3, 1, 1, 1, 1)
        reference = F.conv3d(F.pad(reference, pad, mode="replicate"), weight, groups=3)
    assert torch.allclose(gaussian_blur(volume, sigmas), reference, atol=1e-12)
    leaf = volume.clone().requires_grad_(True)
    gaussian_blur(leaf, 1.0).sum().backward()
    assert torch.allclose(leaf.grad.sum(), torch.tensor(float(volume.numel()), dtype=torch.float64))


def test_half_velocity_integrated_with_one_step_less_squares_to_the_full_map():
    """exp(v/2) o exp(v/2) = exp(v): the symmetric update integrates halves with steps - 1."""
    from regsuite.engine.grid import Grid
    from regsuite.engine.transforms.dense import VelocityField, compose_on_grid

    grid = Grid((30, 28, 26), (2.0, 2.0, 2.5), (0.0, 0.0, 0.0), OBLIQUE)
    z, y, x = torch.meshgrid(*[torch.linspace(0, 1, n) for n in grid.shape_zyx], indexing="ij")
    v = torch.stack([5 * torch.sin(3 * y), 4 * torch.cos(2 * x), 3 * torch.sin(2 * z)])[None]
    model = VelocityField(grid, v, steps=6)
    half = model.exponential(0.5 * v, steps=5)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3), slice(3, -3))
    squared = compose_on_grid(half, half, grid)[inner]
    assert float((squared - model.exponential(v)[inner]).abs().max()) < 0.05
    assert float((half[inner] - model.exponential(v)[inner]).abs().max()) > 1.0  # a half is not the whole


def test_symmetric_updates_recover_the_smooth_deformation_and_are_nearly_inverse_consistent():
    """update 'symmetric': both images move halfway. Registering the pair both ways gives maps that
    are close to each other's inverse, closer than the one-sided (compositive) updates."""
    grid = make_grid((36, 36, 30), (2.0, 2.0, 2.0))
    fixed = sample_phantom(grid)
    moving = sample_phantom(grid, _inverse_of_smooth_warp)
    gaps = {}
    for update in ("symmetric", "compositive"):
        stage = {"model": "svf", "metric": "lncc", "optimizer": "gaussian", "learning_rate": 0.5, "update": update,
                 "exact_every": 4, "levels": [[2, 1, 60], [1, 0, 40]]}
        forward = register(fixed, moving, _fast(stage, initialization="none"), threads=2).transform
        backward = register(moving, fixed, _fast(stage, initialization="none"), threads=2).transform
        if update == "symmetric":
            assert _mean_error(forward, _smooth_warp, fixed) < RECOVERED_MM["svf symmetric"]
            field = sitk.TransformToDisplacementField(forward, sitk.sitkVectorFloat64, fixed.GetSize(),
                                                      fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection())
            assert float(sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field)).min()) > 0
        gaps[update] = _mean_error(sitk.CompositeTransform([backward, forward]), lambda p: p, fixed)
    assert gaps["symmetric"] < gaps["compositive"]


def test_symmetric_loss_warps_the_fixed_image_and_its_mask():
    """In the middle space the fixed image and the fixed mask are both sampled at x + u_fixed(x):
    with a shift of whole voxels the MSE equals the one computed by slicing the arrays."""
    from regsuite.engine.config import StageConfig
    from regsuite.engine.pyramid import Pyramid
    from regsuite.engine.stages.deformable import DeformableLoss

    grid = make_grid((20, 18, 16), (2.0, 2.0, 2.0))
    fixed = sample_phantom(grid)
    moving = sample_phantom(grid, lambda p: p + np.array([1.0, -0.5, 0.3]))
    mask_array = np.zeros((16, 18, 20), np.uint8)
    mask_array[2:14, 3:15, 9:18] = 1
    mask = sitk.GetImageFromArray(mask_array)
    mask.CopyInformation(fixed)
    level = Pyramid(fixed, moving, mask).level(1, 0)
    loss = DeformableLoss(StageConfig("svf", metric="mse"), level, torch.eye(3, dtype=torch.float64),
                          torch.zeros(3, dtype=torch.float64))
    u_fixed = torch.zeros((1, 3) + level.fixed_grid.shape_zyx)
    u_fixed[:, 0] = 4.0  # two voxels along x (identity direction)
    _, similarity = loss(torch.zeros_like(u_fixed), u_fixed)
    f, m, w = level.fixed[0, 0], level.moving[0, 0], level.fixed_mask[0, 0]
    shifted_f, shifted_w = f[..., 2:], w[..., 2:]  # F(x + 2 voxels), mask(x + 2 voxels); the last 2 columns fall outside
    expected = ((shifted_f - m[..., :-2]).square() * shifted_w).sum() / shifted_w.sum()
    assert float(similarity) == pytest.approx(float(expected), rel=1e-5)
    unwarped_mask = ((shifted_f - m[..., :-2]).square() * w[..., :-2]).sum() / w[..., :-2].sum()
    assert abs(float(similarity) - float(unwarped_mask)) > 0.05 * float(similarity)  # the mask did move


def test_preset_rejects_symmetric_updates_outside_gaussian_velocity_stages():
    from regsuite.errors import PresetError

    with pytest.raises(PresetError, match="update 'symmetric' needs model 'svf' with optimizer 'gaussian'"):
        load_preset({"stages": [{"model": "displacement", "optimizer": "gaussian", "update": "symmetric"}]})
    with pytest.raises(PresetError, match="unknown update 'sideways'"):
        load_preset({"stages": [{"model": "svf", "optimizer": "gaussian", "update": "sideways"}]})
    assert load_preset({"stages": [{"model": "svf", "optimizer": "gaussian", "update": "symmetric"}]}).stages[0].update == "symmetric"
    with pytest.raises(PresetError, match=r"levels\[0\]\.exact_every must be >= 1"):
        load_preset({"stages": [{"model": "svf", "levels": [{"shrink": 1, "iterations": 5, "exact_every": 0}]}]})
    level = load_preset({"stages": [{"model": "svf", "levels": [{"shrink": 1, "iterations": 5, "exact_every": 3}]}]})
    assert level.stages[0].levels[0].exact_every == 3


def test_level_metric_options_replace_the_stages_keys_at_that_level_only():
    """A level's ``metric_options`` is laid over the stage's: the loss of that level is the loss of a
    stage configured with the merged options, and the other levels keep the stage's."""
    from regsuite.engine.config import StageConfig
    from regsuite.engine.pyramid import Pyramid
    from regsuite.engine.stages.deformable import DeformableLoss
    from regsuite.errors import PresetError

    recipe = load_preset({"stages": [{"model": "svf", "metric": "lncc", "metric_options": {"radius": 1, "squared": True},
                                      "levels": [[1, 0, 1], {"shrink": 1, "iterations": 1, "metric_options": {"radius": 3}}]}]})
    stage = recipe.stages[0]
    assert stage.metric_options_at(0) == {"radius": 1, "squared": True}
    assert stage.metric_options_at(1) == {"radius": 3, "squared": True}
    grid = make_grid((20, 18, 16), (2.0, 2.0, 2.0))
    fixed = sample_phantom(grid)
    moving = sample_phantom(grid, lambda p: p + np.array([1.5, -1.0, 0.5]))
    level = Pyramid(fixed, moving).level(1, 0)
    eye, zero = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    u = torch.zeros((1, 3) + level.fixed_grid.shape_zyx)

    def similarity(stage_config, index):
        return float(DeformableLoss(stage_config, level, eye, zero, index)(u)[1])

    merged = StageConfig("svf", metric="lncc", metric_options={"radius": 3, "squared": True})
    assert similarity(stage, 1) == similarity(merged, 0)  # same options, same arithmetic
    assert similarity(stage, 0) == similarity(StageConfig("svf", metric="lncc", metric_options={"radius": 1, "squared": True}), 0)
    # 3x3x3 and 7x7x7 windows score this shifted smooth phantom differently: measured 8.7e-4 apart,
    # far above the float32 noise of a mean over these 5760 voxels (about 1e-6)
    assert abs(similarity(stage, 1) - similarity(stage, 0)) > 2e-4
    with pytest.raises(PresetError, match=r"stages\[0\]\.levels\[1\]\.metric_options must be a JSON object"):
        load_preset({"stages": [{"model": "svf", "levels": [[2, 1, 1], {"shrink": 1, "metric_options": [3]}]}]})
    bad = {"name": "bad", "stages": [{"model": "svf", "metric": "lncc",
                                      "levels": [[2, 1, 1], {"shrink": 1, "metric_options": {"radius": 99}}]}]}
    with pytest.raises(PresetError, match=r"stages\[0\]\.levels\[1\]: .*option radius must be an integer from 1 to 32"):
        register(fixed, moving, bad, threads=1)
