"""Sampling spread over threads (regsuite.engine.sampling): bit for bit the single call.

The engine's warps and field compositions go through :func:`grid_sample`, which cuts the output
points into slabs sampled as one batch. Every value and every gradient with respect to the points
must be exactly those of one ``F.grid_sample`` call, whatever the slab count, remainder, channel
count and padding, so that registrations give the same transform on any thread count.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from regsuite.engine import sampling
from regsuite.engine.sampling import MIN_SPLIT_POINTS, grid_sample


def _points(depth: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Points near the identity, some of them outside the image (padding is exercised)."""
    generator = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1.1, 1.1, n) for n in (depth, height, width)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return (torch.stack([x, y, z], dim=-1) + 0.05 * torch.randn(depth, height, width, 3, generator=generator))[None]


@pytest.mark.parametrize("slabs", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_slabs_give_the_single_call_values_and_point_gradients(slabs, channels, padding):
    generator = torch.Generator().manual_seed(channels)
    image = torch.rand(1, channels, 9, 10, 11, generator=generator)
    points = _points(13, 7, 8, seed=slabs).requires_grad_(True)  # 13 planes: a remainder for each count
    weights = torch.rand(1, channels, 13, 7, 8, generator=generator)

    expected = F.grid_sample(image, points, mode="bilinear", padding_mode=padding, align_corners=True)
    (expected_gradient,) = torch.autograd.grad((expected * weights).sum(), points)
    result = grid_sample(image, points, padding=padding, slabs=slabs)
    (gradient,) = torch.autograd.grad((result * weights).sum(), points)

    assert result.shape == expected.shape
    assert torch.equal(result, expected)
    assert torch.equal(gradient, expected_gradient)


class _CallBatches:
    """Stand-in for the sampling module's ``F``: records the batch size of every ``grid_sample``
    call and forwards it to PyTorch (to see which path was taken, not only what it gave)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def grid_sample(self, image, points, **options):
        self.batches.append(int(points.shape[0]))
        return F.grid_sample(image, points, **options)


@pytest.fixture
def calls(monkeypatch) -> _CallBatches:
    spy = _CallBatches()
    monkeypatch.setattr(sampling, "F", spy)
    return spy


def test_slabs_are_one_batched_call_and_a_remainder_call(calls):
    image = torch.rand(1, 3, 6, 6, 6)
    grid_sample(image, _points(13, 4, 4, seed=1), slabs=3)  # 12 planes as 3 slabs, then 1 plane
    assert calls.batches == [3, 1]
    calls.batches.clear()
    grid_sample(image, _points(12, 4, 4, seed=1), slabs=3)
    assert calls.batches == [3]


def test_an_image_that_needs_a_gradient_gets_one_call_and_its_gradient(calls):
    image = torch.rand(1, 1, 6, 6, 6, requires_grad=True)
    points = _points(8, 5, 5, seed=1)
    expected = F.grid_sample(image, points, align_corners=True)
    (expected_gradient,) = torch.autograd.grad(expected.square().sum(), image)
    result = grid_sample(image, points, slabs=2)
    (gradient,) = torch.autograd.grad(result.square().sum(), image)
    assert calls.batches == [1]
    assert torch.equal(result, expected)
    assert torch.equal(gradient, expected_gradient)
    # without autograd (an export of a parameter) the same image is sampled in slabs
    calls.batches.clear()
    with torch.no_grad():
        assert torch.equal(grid_sample(image, points, slabs=2), expected.detach())
    assert calls.batches == [2]


def test_batches_small_outputs_and_one_plane_use_one_call(calls):
    image = torch.rand(2, 1, 5, 5, 5)
    points = _points(6, 4, 4, seed=2).expand(2, -1, -1, -1, -1)
    assert torch.equal(grid_sample(image, points, slabs=2), F.grid_sample(image, points, align_corners=True))
    single = torch.rand(1, 3, 5, 5, 5)
    plane = _points(1, 4, 4, seed=3)
    assert torch.equal(grid_sample(single, plane, slabs=2), F.grid_sample(single, plane, align_corners=True))
    # default slab count: below MIN_SPLIT_POINTS output points it is one call
    small = _points(4, 4, 4, seed=4)
    assert small[0, ..., 0].numel() < MIN_SPLIT_POINTS
    assert torch.equal(grid_sample(single, small), F.grid_sample(single, small, align_corners=True))
    assert calls.batches == [2, 1, 1]  # the batch of 2 is the caller's, not slabs


def test_a_large_output_on_the_default_thread_count_is_slabs_and_the_single_call(calls):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        image = torch.rand(1, 1, 20, 20, 20)
        points = _points(65, 64, 64, seed=5)  # 266 240 points, above MIN_SPLIT_POINTS; odd depth
        assert points[0, ..., 0].numel() >= MIN_SPLIT_POINTS
        assert torch.equal(grid_sample(image, points), F.grid_sample(image, points, align_corners=True))
        assert calls.batches == [2, 1]  # two slabs of 32 planes, then the last plane
    finally:
        torch.set_num_threads(threads)
