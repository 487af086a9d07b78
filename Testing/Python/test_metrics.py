"""Tests of the differentiable similarity measures (regsuite.engine.metrics)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regsuite.engine.metrics import METRICS, SimilarityMetric, box_mean, make_metric, mind_ssc
from regsuite.engine.metrics.mind import _NEIGHBOURS, _PAIRS
from regsuite.errors import InputError, PresetError

@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors gain nothing from threads; on a busy machine each parallel region can wait
    a whole scheduler tick, which made the finite-difference checks 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ALL = ["mse", "ncc", "lncc", "mi", "nmi", "ngf", "mind"]
MULTIMODAL = ["mi", "nmi", "ngf", "mind"]


def smooth_volume(shape=(20, 22, 24), seed=0, dtype=torch.float32) -> torch.Tensor:
    """Blurred noise in [0, 1] (N=1, C=1): structure at every position, no flat regions."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, 1) + tuple(shape), generator=generator, dtype=torch.float64)
    for _ in range(2):
        noise = F.avg_pool3d(F.pad(noise, (2,) * 6, mode="replicate"), 5, 1)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return noise.to(dtype)


def translate(image: torch.Tensor, shift_voxels: torch.Tensor) -> torch.Tensor:
    """``image`` resampled at ``x + shift`` (index units, order x, y, z) with grid_sample."""
    n, _, d, h, w = image.shape
    sizes = torch.tensor([w, h, d], dtype=image.dtype)
    theta = torch.zeros(n, 3, 4, dtype=image.dtype)
    theta[:, :, :3] = torch.eye(3, dtype=image.dtype)
    theta = theta + F.pad((2.0 * shift_voxels / (sizes - 1)).view(1, 3, 1), (3, 0))
    grid = F.affine_grid(theta, list(image.shape), align_corners=True)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def value(metric: SimilarityMetric, fixed, warped, mask=None) -> float:
    with torch.no_grad():
        return float(metric(fixed, warped, mask, (1.0, 1.0, 1.0)))


# --- perfect alignment, invariances, multimodal preference ---------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_minimum_at_alignment(name):
    fixed = smooth_volume()
    metric = make_metric(name)
    at_zero = value(metric, fixed, translate(fixed, torch.zeros(3)))
    for shift in ([1.5, 0, 0], [0, -1.0, 0], [0, 0, 2.0], [0.7, 0.7, -0.7]):
        assert at_zero < value(metric, fixed, translate(fixed, torch.tensor(shift))), shift


def test_known_values():
    fixed = smooth_volume()
    assert value(make_metric("mse"), fixed, fixed + 0.5) == pytest.approx(0.25, rel=1e-5)
    assert value(make_metric("ssd"), fixed, fixed) == 0.0
    assert value(make_metric("ncc"), fixed, fixed) == pytest.approx(-1.0, abs=1e-5)
    assert value(make_metric("ncc"), fixed, 1.0 - fixed) == pytest.approx(1.0, abs=1e-5)
    assert value(make_metric("lncc"), fixed, 2.0 - 3.0 * fixed) == pytest.approx(1.0, abs=1e-4)
    assert value(make_metric("ngf", epsilon=1e-4), fixed, fixed) == pytest.approx(0.0, abs=1e-4)
    assert 0.0 < value(make_metric("ngf"), fixed, fixed) < 0.1  # the edge parameter damps weak edges
    assert value(make_metric("mind"), fixed, fixed) == 0.0
    # Independent images: the joint histogram factorises, MI = 0 and NMI = 1.
    constant = torch.full_like(fixed, 0.3)
    assert value(make_metric("mi"), fixed, constant) == pytest.approx(0.0, abs=1e-6)
    assert value(make_metric("nmi"), fixed, constant) == pytest.approx(-1.0, abs=1e-6)
    nmi = -value(make_metric("nmi"), fixed, fixed.square())
    assert 1.0 < nmi <= 2.0


@pytest.mark.parametrize("name,options", [("ncc", {}), ("lncc", {}), ("lncc", {"radius": 1}), ("mind", {}),
                                          ("ngf", {})])
def test_invariance_to_linear_intensity_change(name, options):
    fixed, other = smooth_volume(), smooth_volume(seed=1)
    metric = make_metric(name, **options)
    reference = value(metric, fixed, other)
    for scale, offset in ((2.5, 3.0), (0.01, -7.0)):
        assert value(metric, fixed, scale * other + offset) == pytest.approx(reference, abs=2e-5)
        assert value(metric, scale * fixed + offset, other) == pytest.approx(reference, abs=2e-5)
    assert value(metric, fixed, 4.0 * fixed - 1.0) == pytest.approx(value(metric, fixed, fixed), abs=2e-5)


@pytest.mark.parametrize("name", ALL)
def test_flat_images_give_finite_values_and_gradients(name):
    phantom = torch.zeros(1, 1, 16, 16, 16)
    phantom[..., 4:12, 4:12, 4:12] = 1000.0  # piecewise constant, large flat regions
    phantom[..., 6:9, 6:9, 6:9] = 1300.0
    for fixed, moving in ((phantom, phantom.roll(1, 4) * 0.5 + 7.0), (torch.ones_like(phantom), torch.zeros_like(phantom))):
        warped = moving.clone().requires_grad_(True)
        loss = make_metric(name)(fixed, warped)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(warped.grad).all()
    if name in ("ncc", "lncc"):  # a constant image correlates with nothing
        assert float(loss.detach()) == 0.0


def test_lncc_ignores_flat_windows():
    phantom = torch.zeros(1, 1, 16, 16, 16)
    phantom[..., 4:12, 4:12, 4:12] = 1000.0
    flat = torch.ones_like(phantom, dtype=torch.bool)
    flat[..., 2:14, 2:14, 2:14] = False  # windows of radius 2 that see only the background
    metric = make_metric("lncc")
    unrelated = smooth_volume((16, 16, 16))
    assert value(metric, phantom, unrelated, flat.float()) == pytest.approx(0.0, abs=1e-3)


def test_squared_lncc_is_the_signed_square_of_each_window_correlation():
    """squared=true (as ANTs' CC and Greedy's NCC): -mean(rho |rho|) instead of -mean(rho)."""
    fixed = smooth_volume((14, 15, 16), dtype=torch.float64)
    warped = 0.5 * fixed + 0.5 * smooth_volume((14, 15, 16), seed=3, dtype=torch.float64)
    plain, squared = make_metric("lncc", radius=1), make_metric("lncc", radius=1, squared=True)
    # windows where rho is known: a linear remap (rho = 1) and a negated image (rho = -1)
    assert value(squared, fixed, 3.0 * fixed + 1.0) == pytest.approx(-1.0, abs=1e-4)
    assert value(squared, fixed, 1.0 - fixed) == pytest.approx(1.0, abs=1e-4)
    # partly correlated images: |rho| < 1 everywhere, so the squared value is smaller in size
    assert 0.0 < -value(squared, fixed, warped) < -value(plain, fixed, warped) < 1.0


@pytest.mark.parametrize("name", ["mi", "nmi"])
@pytest.mark.parametrize("remap", ["monotone", "non-monotone"])
def test_information_prefers_aligned_multimodal_pair(name, remap):
    fixed = smooth_volume()
    moving = torch.exp(3.0 * fixed) if remap == "monotone" else torch.cos(2.0 * math.pi * fixed)
    metric = make_metric(name, bins=24)
    aligned = value(metric, fixed, moving)
    for shift in ([2.0, 0, 0], [0, 1.0, 0], [0, 0, -1.5]):
        assert aligned < value(metric, fixed, translate(moving, torch.tensor(shift))) - 0.05
    if remap == "non-monotone":  # a single-modality measure is fooled by the folded intensities
        assert abs(value(make_metric("ncc"), fixed, moving)) < 0.5


@pytest.mark.parametrize("name", ["ngf", "mind"])
def test_structural_measures_prefer_aligned_inverted_contrast(name):
    fixed = smooth_volume()
    moving = 1.0 - fixed.square()  # monotone decreasing remap: contrast inverted and bent
    metric = make_metric(name)
    aligned = value(metric, fixed, moving)
    assert aligned < value(metric, fixed, translate(moving, torch.tensor([1.5, 0.0, 0.0])))


def test_sampled_mi_is_deterministic_and_close_to_full():
    fixed = smooth_volume(shape=(24, 24, 24))
    moving = torch.exp(2.0 * translate(fixed, torch.tensor([0.5, 0.0, 0.0])))
    sampled = make_metric("mi", samples=4000, seed=3)
    full = value(make_metric("mi"), fixed, moving)
    first = value(sampled, fixed, moving)
    assert first == value(sampled, fixed, moving) == value(make_metric("mi", samples=4000, seed=3), fixed, moving)
    assert first != value(make_metric("mi", samples=4000, seed=4), fixed, moving)
    assert first == pytest.approx(full, abs=0.08)


# --- masks ------------------------------------------------------------------------------------


def half_mask(like: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(like)
    mask[..., :, :, : like.shape[-1] // 2] = 1.0
    return mask


@pytest.mark.parametrize("name", ALL)
def test_mask_changes_the_value(name):
    fixed = smooth_volume()
    warped = fixed.clone()
    warped[..., :, :, 12:] = smooth_volume(seed=5)[..., :, :, 12:]  # right half unrelated
    metric = make_metric(name)
    assert value(metric, fixed, warped, half_mask(fixed)) < value(metric, fixed, warped) - 1e-3


@pytest.mark.parametrize("name", ALL)
def test_zero_weight_voxels_do_not_matter(name):
    fixed, warped = smooth_volume(), smooth_volume(seed=1)
    mask = half_mask(fixed)  # x < 12 weighted
    changed = warped.clone()
    # Beyond the reach of every window / difference stencil around the weighted voxels (MIND:
    # dilation 2 + 2 for the shifted reads + radius 1; LNCC: radius 2).
    changed[..., :, :, 19:] = 5.0 * torch.rand_like(changed[..., :, :, 19:])
    changed_fixed = fixed.clone()
    changed_fixed[..., :, :, 19:] = -3.0
    metric = make_metric(name)
    reference = value(metric, fixed, warped, mask)
    if name in ("mse", "ncc", "mi", "nmi"):  # pointwise: any zero-weight voxel may change
        changed[..., :, :, 12:] = torch.rand_like(changed[..., :, :, 12:])
        changed_fixed[..., :, :, 12:] = 9.0
    assert value(metric, fixed, changed, mask) == pytest.approx(reference, abs=2e-5)
    assert value(metric, changed_fixed, warped, mask) == pytest.approx(reference, abs=2e-5)


def test_fractional_mask_weights_voxels():
    fixed = torch.zeros(1, 1, 4, 4, 4)
    warped = fixed.clone()
    warped[..., 0] = 2.0  # squared error 4 on a quarter of the voxels
    mask = torch.ones_like(fixed)
    mask[..., 0] = 0.5
    # weighted mean: (0.5 * 4 * 16) / (0.5 * 16 + 48) = 32 / 56
    assert value(make_metric("mse"), fixed, warped, mask) == pytest.approx(32.0 / 56.0)


# --- gradients --------------------------------------------------------------------------------


GRADIENT_CASES = [("mse", {}), ("ncc", {}), ("lncc", {"radius": 1}), ("lncc", {"radius": 4}), ("lncc", {"squared": True}),
                  ("mi", {"bins": 8}), ("mi", {"bins": 8, "samples": 200}), ("nmi", {"bins": 10}),
                  ("ngf", {}), ("mind", {"radius": 1, "dilation": 1}), ("mind", {"norm": "l1"})]


@pytest.mark.parametrize("name,options", GRADIENT_CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_gradient_wrt_warped_matches_finite_differences(name, options, masked):
    fixed = smooth_volume(shape=(6, 7, 8), dtype=torch.float64)
    warped = (0.6 * fixed.roll(1, 4) + 0.4 * smooth_volume(shape=(6, 7, 8), seed=2, dtype=torch.float64))
    mask = torch.rand(fixed.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) if masked else None
    metric = make_metric(name, **options)
    warped.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: metric(fixed, w, mask, (1.0, 1.5, 2.0)), (warped,),
                                    eps=1e-6, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_gradient_wrt_translation_matches_finite_differences(name):
    fixed = smooth_volume(shape=(10, 11, 12), dtype=torch.float64)
    moving = torch.exp(fixed) if name in MULTIMODAL else fixed
    metric = make_metric(name, **({"bins": 12} if name in ("mi", "nmi") else {}))
    shift = torch.tensor([0.31, -0.23, 0.17], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: metric(fixed, translate(moving, s)), (shift,),
                                    eps=1e-6, atol=1e-6, rtol=1e-3)


def test_box_mean_matches_pooling_and_is_differentiable():
    x = torch.randn(2, 3, 5, 9, 7, dtype=torch.float64)
    for radius in (1, 2, 4, 6):  # direct sums (width <= 7) and binary doubling, windows beyond the size
        k = 2 * radius + 1
        expected = F.avg_pool3d(F.pad(x, (radius,) * 6), k, 1) / F.avg_pool3d(F.pad(torch.ones_like(x), (radius,) * 6), k, 1)
        assert torch.allclose(box_mean(x, radius), expected, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: box_mean(t, 2), (x.clone().requires_grad_(),))


def test_mind_matches_direct_definition():
    image = torch.randn(1, 1, 9, 10, 11, dtype=torch.float64)
    radius, dilation = 1, 2
    margin = 2 * dilation + radius
    padded = F.pad(image, (margin,) * 6, mode="replicate")
    size = image.shape[2:]

    def at(offset):  # image at x + offset on the grid extended by the patch radius
        z, y, x = (margin - radius + dilation * o for o in offset)
        return padded[..., z:z + size[0] + 2 * radius, y:y + size[1] + 2 * radius, x:x + size[2] + 2 * radius]

    distances = torch.cat([F.avg_pool3d((at(_NEIGHBOURS[p]) - at(_NEIGHBOURS[q])).square(), 2 * radius + 1, 1)
                           for p, q in _PAIRS], dim=1)
    variance = distances.mean(1, keepdim=True)
    variance = torch.maximum(variance, 1e-3 * variance.mean())
    expected = torch.exp((distances.amin(1, keepdim=True) - distances) / variance)
    assert len(_PAIRS) == 12
    assert torch.allclose(mind_ssc(image, radius, dilation), expected, atol=1e-12)


# --- batch, cache, inputs, factory ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_batch_is_mean_of_items(name):
    a, b, c, d = (smooth_volume(seed=s) for s in range(4))
    metric = make_metric(name)
    batched = value(metric, torch.cat([a, b]), torch.cat([c, d]))
    assert batched == pytest.approx(0.5 * (value(metric, a, c) + value(metric, b, d)), abs=1e-5)


@pytest.mark.parametrize("name", ["lncc", "ngf", "mind"])
def test_fixed_cache_follows_in_place_changes(name):
    fixed, warped = smooth_volume(), smooth_volume(seed=1)
    metric = make_metric(name)
    before = value(metric, fixed, warped)
    fixed.mul_(-1.0).add_(smooth_volume(seed=2))  # same tensor object, new contents
    assert value(metric, fixed, warped) == pytest.approx(value(make_metric(name), fixed, warped), abs=1e-6)
    assert value(metric, fixed, warped) != pytest.approx(before, abs=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_inputs_are_not_modified(name):
    fixed, warped = smooth_volume(), smooth_volume(seed=1)
    mask = half_mask(fixed)
    copies = [t.clone() for t in (fixed, warped, mask)]
    make_metric(name)(fixed, warped.requires_grad_(True), mask).backward()
    assert all(torch.equal(t.detach(), c) for t, c in zip((fixed, warped, mask), copies))


def test_bad_inputs_raise_input_error():
    metric = make_metric("ncc")
    image = smooth_volume()
    with pytest.raises(InputError, match="same shape"):
        metric(image, image[..., 1:])
    with pytest.raises(InputError, match=r"\(N, 1, D, H, W\)"):
        metric(image[0], image[0])
    with pytest.raises(InputError, match="mask"):
        metric(image, image, torch.ones(1, 1, 3, 3, 3))
    for name in ALL:
        with pytest.raises(InputError, match="zero weight"):
            make_metric(name)(image, image, torch.zeros_like(image))
    with pytest.raises(InputError, match="spacing"):
        make_metric("ngf")(image, image, None, (1.0, -1.0, 1.0))


def test_factory():
    assert set(ALL) | {"ssd"} == set(METRICS)
    for name in ALL:
        metric = make_metric(name.upper())
        assert isinstance(metric, SimilarityMetric) and metric.name == name
        assert metric.multimodal == (name in MULTIMODAL)
    assert make_metric("lncc", radius=3).radius == 3
    with pytest.raises(PresetError, match="valid names: mse, ssd, ncc, lncc, mi, nmi, ngf, mind"):
        make_metric("cc")
    with pytest.raises(PresetError, match="unknown option bins; valid options: radius, eps, squared"):
        make_metric("lncc", bins=3)
    for name, options in (("lncc", {"radius": 0}), ("lncc", {"radius": 1.5}), ("mi", {"bins": 2}),
                          ("mi", {"samples": -5}), ("ngf", {"epsilon": 0}), ("mind", {"norm": "l3"}),
                          ("mind", {"dilation": True}), ("lncc", {"squared": 1})):
        with pytest.raises(PresetError, match=f"metric '{name}'"):
            make_metric(name, **options)
