"""Recursive cascades of a network (``"cascade": k``) and inverse consistency: known answers on
smooth synthetic fields, the engine's export of a cascade, and preset checks."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from regsuite.engine.config import load_preset
from regsuite.engine.filters import gaussian_blur
from regsuite.engine.grid import Grid
from regsuite.engine.registration import register
from regsuite.engine.transforms.cascade import VelocityChain
from regsuite.engine.transforms.dense import VelocityField, compose_on_grid, resample_field
from regsuite.errors import PresetError
from regsuite.learning.consistency import inverse_consistency_error, inverse_consistency_loss
from regsuite.learning.field import NetworkField
from regsuite.learning.inference import CanonicalPair, predict, predict_cascade
from regsuite.learning.models import load_model

from test_learning_stage import VOXELMORPH, brain_like, oblique

GRID = Grid((40, 48, 40), (4.0, 4.0, 4.0), (-80.0, -90.0, -70.0), oblique(25.0))


def smooth_velocity(largest_mm: float = 3.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    v = gaussian_blur(torch.randn((1, 3) + GRID.shape_zyx, generator=generator), 4.0)
    return v / v.abs().max() * largest_mm


@torch.no_grad()
def test_a_cascade_of_k_equal_steps_is_one_step_of_k_times_the_velocity():
    """exp(v) o exp(v) o exp(v) = exp(3 v): the chain composes its steps exactly, up to the linear
    interpolation of smooth fields (measured: 0.0013 mm for k = 2, 0.06 mm for k = 3, at the
    grid's edge, of displacements up to 6.3 and 9.4 mm)."""
    v = smooth_velocity()
    for k in (1, 2, 3):
        chain = VelocityChain(GRID, [v] * k)
        single = VelocityField(GRID, k * v, steps=9).displacement()
        largest = float(single.norm(dim=1).max())
        assert largest > 2.0 * k  # the fields are far from the identity
        assert float((chain.displacement() - single).norm(dim=1).max()) < 0.01 * largest
        assert torch.allclose(chain.field, k * v)


@torch.no_grad()
def test_the_chains_inverse_undoes_it_and_a_reversed_chain_is_another_map():
    v1, v2 = smooth_velocity(seed=1), smooth_velocity(seed=2)
    chain = VelocityChain(GRID, [v1, v2])
    identity = compose_on_grid(chain.displacement(), chain.inverse_displacement(), GRID)
    inside = identity[..., 4:-4, 4:-4, 4:-4]  # away from the edge, where border values repeat
    assert float(inside.norm(dim=1).max()) < 0.05  # mm, for displacements of several mm
    # order matters: exp(v1) o exp(v2) is not exp(v2) o exp(v1) for non-commuting fields
    reversed_chain = VelocityChain(GRID, [v2, v1])
    assert float((reversed_chain.displacement() - chain.displacement()).norm(dim=1).max()) > 0.1
    # the map acts as exp(v1)(exp(v2)(x)): compose the two single maps by hand
    by_hand = compose_on_grid(VelocityField(GRID, v2).displacement(), VelocityField(GRID, v1).displacement(), GRID)
    assert torch.allclose(chain.displacement(), by_hand, atol=1e-5)


@torch.no_grad()
def test_inverse_consistency_is_zero_for_an_exact_inverse_pair_and_measures_a_wrong_one():
    v = smooth_velocity()
    forward, backward = VelocityField(GRID, v).displacement(), VelocityField(GRID, -v).displacement()
    # exp(v) and exp(-v): only interpolation error (measured 0.002 mm mean)
    assert inverse_consistency_error(forward, backward, GRID) < 0.01
    assert float(inverse_consistency_loss(forward, backward, GRID)) < 1e-3
    # the same map twice: phi(phi(x)) - x is about twice the displacement
    twice = inverse_consistency_error(forward, forward, GRID)
    mean = float(forward.norm(dim=1).mean())
    assert 1.8 * mean < twice < 2.2 * mean
    mask = torch.zeros((1, 1) + GRID.shape_zyx)
    mask[..., 10:30, 10:38, 10:30] = 1
    assert inverse_consistency_error(forward, forward, GRID, mask) > 0


def test_the_inverse_consistency_loss_has_a_gradient_that_restores_consistency():
    """Gradient descent on the loss alone moves a wrong backward field towards exp(-v)."""
    v = smooth_velocity(2.0)
    with torch.no_grad():
        forward = VelocityField(GRID, v).displacement()
    backward = torch.zeros_like(forward, requires_grad=True)
    optimizer = torch.optim.Adam([backward], lr=0.2)
    start = inverse_consistency_error(forward, backward.detach(), GRID)
    for _ in range(60):
        optimizer.zero_grad()
        inverse_consistency_loss(forward, backward, GRID).backward()
        optimizer.step()
    assert inverse_consistency_error(forward, backward.detach(), GRID) < 0.2 * start


def test_a_cascaded_network_stage_composes_its_runs_and_exports_the_chain():
    fixed = brain_like(direction=oblique(10.0))
    moving = brain_like(size=(60, 70, 80), spacing=(1.0, 1.5, 1.1), shift=(4.0, -3.0, 2.0), seed=5)
    preset = {"name": "cascade", "initialization": "none",
              "stages": [{"model": "network", "network": VOXELMORPH, "cascade": 2}]}
    result = register(fixed, moving, preset, threads=1)
    chain = result.deformable
    assert isinstance(chain, VelocityChain) and len(chain) == 2
    assert result.metrics["stages"][0]["cascade"] == 2
    # run 1 is the single pass; run 2 sees the moving image warped by run 1
    model = load_model(VOXELMORPH)
    pair = CanonicalPair.build(model, fixed, moving, sitk.Transform())
    first = predict(model, pair)
    # the chain holds the runs' velocities on the 2 mm canonical grid, where it composes them
    assert chain.grid.is_same(pair.grid)
    assert torch.allclose(chain.velocities[0], resample_field(first.field, first.grid, pair.grid))
    field = NetworkField(pair.grid, model.network.velocity_level, first.steps)
    warped = field.warp(pair.moving, resample_field(first.displacement(), first.grid, pair.grid))
    second = predict(model, CanonicalPair(pair.grid, pair.fixed, warped))
    assert torch.allclose(chain.velocities[1], resample_field(second.field, second.grid, pair.grid))
    assert float(second.field.abs().max()) > 0.05  # the second run still moves something
    # the written transform is the chain's map at the fixed voxels; its inverse undoes it
    grid = Grid.from_sitk(fixed)
    index = np.argwhere(sitk.GetArrayFromImage(fixed) > 0.5)[::101][:, ::-1]
    world = grid.index_to_world_points(index)
    expected = resample_field(chain.displacement(), chain.grid, grid, padding="zeros")[0].permute(1, 2, 3, 0)
    want = expected.double().numpy()[index[:, 2], index[:, 1], index[:, 0]]
    got = np.array([result.transform.TransformPoint(tuple(p)) for p in world]) - world
    assert np.abs(got - want).max() < 1e-3
    # the inverse undoes it where the mapped point stays on the fixed grid (outside it the
    # exported inverse field is zero, as ITK reads it): points 15 voxels in from every edge.
    # Maps of up to 13 mm composed on the 2 mm canonical grid: measured median 0.038 mm, largest
    # 0.31 mm (one network run, its field on the 4 mm velocity grid: 0.05 and 0.32 mm; the chain
    # composed on that 4 mm grid, as before: 0.11 and 0.68 mm)
    inner = np.argwhere(sitk.GetArrayFromImage(fixed)[15:-15, 15:-15, 15:-15] > 0.5)[::101][:, ::-1] + 15
    points = grid.index_to_world_points(inner)
    inverse = result.inverse() if callable(result.inverse) else result.inverse
    back = np.array([inverse.TransformPoint(result.transform.TransformPoint(tuple(p))) for p in points])
    error = np.linalg.norm(back - points, axis=1)
    assert np.median(error) < 0.08 and error.max() < 0.5
    assert predict_cascade(model, pair, 1).field.equal(first.field)


@pytest.mark.parametrize("stage, message", [
    ({"model": "network", "network": VOXELMORPH, "cascade": 0}, "cascade"),
    ({"model": "network", "network": VOXELMORPH, "cascade": 6}, "cascade"),
    ({"model": "network", "network": VOXELMORPH, "cascade": 1.5}, "cascade"),
    ({"model": "network", "network": VOXELMORPH, "cascade": "2"}, "cascade"),
    ({"model": "affine", "cascade": 2}, "for network stages only"),
])
def test_cascade_values_are_checked(stage, message):
    with pytest.raises(PresetError, match=message):
        load_preset({"stages": [stage]})


def test_instance_optimization_cannot_start_from_a_cascade():
    with pytest.raises(PresetError, match="cascade of 2 network runs"):
        load_preset({"stages": [{"model": "network", "network": VOXELMORPH, "cascade": 2},
                                {"model": "svf", "initial_field": "previous"}]})
    assert load_preset({"stages": [{"model": "network", "network": VOXELMORPH, "cascade": 3}]}).stages[0].cascade == 3


def test_a_hypermorph_session_repeats_the_stages_cascade():
    """The slider's session runs the network as often as the preset's stage did, so moving the
    slider back to the registration's lambda gives back its transform."""
    from regsuite.learning.session import LambdaSession

    fixed = brain_like()
    moving = brain_like(shift=(3.0, -2.0, 1.0), seed=6)
    preset = {"name": "hm-cascade", "initialization": "none",
              "stages": [{"model": "network", "network": "brain-t1-hypermorph", "lambda": 0.4, "cascade": 2}]}
    result = register(fixed, moving, preset, threads=1)
    session = LambdaSession.from_registration(result, fixed, moving)
    assert session.cascade == 2
    grid = Grid.from_sitk(fixed)
    index = np.argwhere(sitk.GetArrayFromImage(fixed) > 0.5)[::211][:, ::-1]
    world = grid.index_to_world_points(index)
    again = session.transform(0.4)
    a = np.array([result.transform.TransformPoint(tuple(p)) for p in world])
    b = np.array([again.TransformPoint(tuple(p)) for p in world])
    assert np.abs(a - b).max() < 1e-4
