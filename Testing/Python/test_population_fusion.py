"""Tests of regsuite.population.fusion: majority, STAPLE, locally weighted and joint label fusion."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError
from regsuite.population.fusion import METHODS, FusionResult, fuse_labels, joint_fusion_weights

SHAPE = (24, 24, 24)


def _blocks(rng: np.random.Generator, values: int, block: int = 4, shape=SHAPE) -> np.ndarray:
    """A label map of ``block``-voxel cubes with random labels ``0..values-1``."""
    coarse = rng.integers(0, values, tuple(n // block for n in shape))
    return np.kron(coarse, np.ones((block,) * 3, np.int64)).astype(np.uint8)


def _texture(rng: np.random.Generator, shape=SHAPE, sd: float = 10.0) -> np.ndarray:
    return (100.0 + sd * rng.standard_normal(shape)).astype(np.float32)


def _expected_majority(atlases: list[np.ndarray]) -> np.ndarray:
    """Brute force: per voxel, the most frequent label, the lowest one among ties."""
    expected = np.empty(atlases[0].shape, np.int64)
    for voxel in itertools.product(*(range(n) for n in atlases[0].shape)):
        votes = [int(atlas[voxel]) for atlas in atlases]
        expected[voxel] = min(set(votes), key=lambda label: (-votes.count(label), label))
    return expected


def _total_probability(result: FusionResult) -> np.ndarray:
    return sum(result.probabilities.values())


# ----------------------------------------------------------------------------- majority


def test_majority_matches_brute_force_and_breaks_ties_to_the_lowest_label():
    rng = np.random.default_rng(0)
    values = np.array([0, 3, 7, 9], np.int16)
    atlases = [values[rng.integers(0, 4, (6, 6, 6))] for _ in range(3)]
    atlases[0][0, 0, 0], atlases[1][0, 0, 0], atlases[2][0, 0, 0] = 9, 3, 7      # three-way tie: 3
    atlases[0][0, 0, 1], atlases[1][0, 0, 1], atlases[2][0, 0, 1] = 9, 7, 9      # 9 wins 2:1
    result = fuse_labels(atlases, "majority", probabilities=True)
    assert result.labels.dtype == np.int16
    assert result.labels[0, 0, 0] == 3 and result.labels[0, 0, 1] == 9
    np.testing.assert_array_equal(result.labels, _expected_majority(atlases))
    assert result.label_values == [0, 3, 7, 9]
    assert set(result.probabilities) == {0, 3, 7, 9}
    np.testing.assert_allclose(_total_probability(result), 1.0, atol=1e-6)
    assert result.probabilities[3][0, 0, 0] == pytest.approx(1 / 3)
    assert result.probabilities[9][0, 0, 1] == pytest.approx(2 / 3)
    assert result.probabilities[7][0, 0, 1] == pytest.approx(1 / 3)
    assert result.probabilities[0][0, 0, 1] == 0.0
    for value, probability in result.probabilities.items():
        assert probability.dtype == np.float32 and probability.shape == (6, 6, 6)
        votes = sum((atlas == value).astype(np.float32) for atlas in atlases) / 3
        np.testing.assert_allclose(probability, votes, atol=1e-6)


def test_whole_float_labels_and_negative_or_large_values_are_accepted():
    rng = np.random.default_rng(1)
    values = np.array([-5, 0, 2, 70000])
    atlases = [values[rng.integers(0, 4, (5, 5, 5))] for _ in range(3)]
    result = fuse_labels([atlas.astype(np.float64) for atlas in atlases])
    assert result.labels.dtype == np.int64
    assert result.label_values == [-5, 0, 2, 70000]
    np.testing.assert_array_equal(result.labels, _expected_majority(atlases))


def test_consensus_fraction_and_unchanged_majority():
    atlases = [np.zeros((4, 5, 5), np.uint8) for _ in range(5)]
    # z = 0: unanimous (label 0); z = 1: 4 of 5 vote 1; z = 2: 3 of 5 vote 2; z = 3: 2-2-1 split
    for k, atlas in enumerate(atlases):
        atlas[1] = 1 if k < 4 else 3
        atlas[2] = 2 if k < 3 else 4
        atlas[3] = (5, 5, 6, 6, 7)[k]
    fractions = {}
    outputs = []
    for consensus in (0.6, 0.8, 1.0):
        result = fuse_labels(atlases, "majority", consensus=consensus)
        fractions[consensus] = result.consensus_fraction
        outputs.append(result.labels)
    assert fractions == {0.6: pytest.approx(0.75), 0.8: pytest.approx(0.5), 1.0: pytest.approx(0.25)}
    for output in outputs:
        np.testing.assert_array_equal(output[:, 0, 0], [0, 1, 2, 5])
        np.testing.assert_array_equal(output, outputs[0])


def test_consensus_voxels_keep_their_label_in_weighted_voting():
    rng = np.random.default_rng(2)
    target = _texture(rng)
    labels = [np.ones(SHAPE, np.uint8) for _ in range(5)]
    labels[4][8:16, 8:16, 8:16] = 2                                   # 4 of 5 say 1 there
    images = [target + 30 * rng.standard_normal(SHAPE).astype(np.float32) for _ in range(4)] + [target.copy()]
    shortcut = fuse_labels(labels, "weighted", target=target, images=images, consensus=0.8)
    assert shortcut.consensus_fraction == 1.0
    assert (shortcut.labels == 1).all()
    exhaustive = fuse_labels(labels, "weighted", target=target, images=images, consensus=1.0)
    assert exhaustive.consensus_fraction == pytest.approx(1 - 8 ** 3 / 24 ** 3)
    assert (exhaustive.labels[8:16, 8:16, 8:16] == 2).all()          # the matching atlas outweighs four


# ----------------------------------------------------------------------------- STAPLE


def test_staple_of_identical_atlases_is_the_atlas():
    atlas = _blocks(np.random.default_rng(3), 4)
    result = fuse_labels([atlas, atlas, atlas], "staple", consensus=1.0)
    np.testing.assert_array_equal(result.labels, atlas)
    assert result.consensus_fraction == 1.0


def test_staple_learns_systematic_raters_that_outvote_the_good_one():
    rng = np.random.default_rng(3)
    truth = _blocks(rng, 3)

    def rater(correct: float) -> np.ndarray:
        right = rng.random(SHAPE) < correct
        return np.where(right, truth, (truth + 1) % 3).astype(np.uint8)   # errors are always "one up"

    raters = [rater(0.97)] + [rater(0.6) for _ in range(4)]
    majority = fuse_labels(raters, "majority")
    staple = fuse_labels(raters, "staple", probabilities=True)
    assert staple.consensus_fraction == majority.consensus_fraction
    assert (majority.labels == truth).mean() < 0.85
    assert (staple.labels == truth).mean() > 0.95
    assert set(np.unique(staple.labels)) <= {0, 1, 2}
    np.testing.assert_allclose(_total_probability(staple), 1.0, atol=1e-5)
    stacked = np.stack([staple.probabilities[v] for v in staple.label_values])
    contested = majority.labels != staple.labels
    assert contested.any()
    np.testing.assert_array_equal(np.argmax(stacked, axis=0)[contested], staple.labels[contested])


def test_staple_undecided_voxels_fall_back_to_the_majority_vote():
    a = np.zeros((2, 4, 4), np.uint8)
    a[:, :, :2] = 1
    a[:, :, 2:] = 2
    b = np.where(a == 1, 2, 1).astype(np.uint8)                       # a perfectly symmetric disagreement
    assert sitk.GetArrayFromImage(sitk.MultiLabelSTAPLE([sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)],
                                                        9)).max() == 9   # SimpleITK abstains here
    result = fuse_labels([a, b], "staple", probabilities=True)
    assert result.consensus_fraction == 0.0
    assert (result.labels == 1).all()                                 # 1:1 tie -> the lower label
    np.testing.assert_allclose(result.probabilities[1], 0.5)


# ----------------------------------------------------------------------------- weighted and joint


def _outvoted_case(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Atlases 0 and 1 wrongly say 2 in a cube where their images are unlike the target; atlas 2 says 1
    there and its image is the target's."""
    target = _texture(rng)
    labels = [np.zeros(SHAPE, np.uint8) for _ in range(3)]
    labels[0][8:16, 8:16, 8:16] = 2
    labels[1][8:16, 8:16, 8:16] = 2
    labels[2][8:16, 8:16, 8:16] = 1
    images = []
    for _ in range(2):
        image = target.copy()
        image[4:20, 4:20, 4:20] += 20 * rng.standard_normal((16, 16, 16)).astype(np.float32)
        images.append(image)
    images.append(target.copy())
    return labels, target, images


@pytest.mark.parametrize("method", ["weighted", "joint"])
def test_similar_atlas_outweighs_two_dissimilar_ones(method):
    labels, target, images = _outvoted_case(np.random.default_rng(4))
    cube = (slice(8, 16),) * 3
    majority = fuse_labels(labels, "majority")
    assert (majority.labels[cube] == 2).all()
    result = fuse_labels(labels, method, target=target, images=images, probabilities=True)
    assert result.consensus_fraction == pytest.approx(1 - 8 ** 3 / 24 ** 3)
    assert (result.labels[cube] == 1).all()
    outside = np.ones(SHAPE, bool)
    outside[cube] = False
    assert (result.labels[outside] == 0).all()
    np.testing.assert_allclose(_total_probability(result), 1.0, atol=1e-5)
    assert (result.probabilities[1][cube] > 0.9).all()
    for probability in result.probabilities.values():
        assert probability.min() >= 0.0 and probability.max() <= 1.0


def test_joint_fusion_discounts_atlases_with_the_same_errors():
    """Two identical atlases (fully correlated errors) say 2; a third, whose errors lie elsewhere
    (uncorrelated) and are a little smaller, says 1. Similarity-weighted votes follow the pair;
    joint fusion counts the pair about once and follows the third atlas."""
    rng = np.random.default_rng(5)
    target = _texture(rng)
    z, y, x = np.indices(SHAPE)
    even = ((x + y + z) % 2 == 0).astype(np.float32)
    sign = np.where(z % 2 == 0, 1.0, -1.0).astype(np.float32)        # zero-mean errors: standardising keeps them
    pair = target + 2.0 * sign * even                                 # errors on the even voxels
    distinct = target + 1.8 * sign * (1 - even)                       # errors on the odd voxels
    labels = [np.zeros(SHAPE, np.uint8) for _ in range(3)]
    cube = (slice(8, 16),) * 3
    labels[0][cube] = labels[1][cube] = 2
    labels[2][cube] = 1
    images = [pair, pair.copy(), distinct]
    weighted = fuse_labels(labels, "weighted", target=target, images=images, probabilities=True)
    joint = fuse_labels(labels, "joint", target=target, images=images, probabilities=True)
    assert (fuse_labels(labels).labels[cube] == 2).all()
    assert (weighted.labels[cube] == 2).all()
    assert (weighted.probabilities[2][cube] > 0.55).all()
    assert (joint.labels[cube] == 1).all()
    assert (joint.probabilities[2][cube] < 0.45).all()                 # the pair weighs less than one atlas


def test_joint_search_votes_with_the_label_of_the_matched_patch():
    rng = np.random.default_rng(6)
    truth = _blocks(rng, 3)
    target = _texture(rng) + 20.0 * truth
    shifted = [np.roll(truth, 1, axis=2), np.roll(target, 1, axis=2)]   # atlas(x) = truth(x - 1)
    noisy = [target + 15 * rng.standard_normal(SHAPE).astype(np.float32) for _ in range(2)]
    wrong = np.where(truth == 0, 1, truth).astype(np.uint8)            # two noisy atlases, 1 for 0
    labels = [wrong, wrong.copy(), shifted[0]]
    images = [noisy[0], noisy[1], shifted[1]]
    decided = np.zeros(SHAPE, bool)                                     # unanimous voxels skip the fusion
    decided[3:-3, 3:-3, 3:-3] = (labels[0] != labels[2])[3:-3, 3:-3, 3:-3]
    found = fuse_labels(labels, "joint", target=target, images=images, search_radius=1, consensus=1.0)
    assert decided.sum() > 500
    assert (found.labels[decided] == truth[decided]).all()
    fixed = fuse_labels(labels, "joint", target=target, images=images, search_radius=0, consensus=1.0)
    assert (fixed.labels[decided] != truth[decided]).sum() > 20


def test_joint_fusion_weights_sum_to_one_and_share_out_correlated_errors():
    rng = np.random.default_rng(7)
    weights = joint_fusion_weights(rng.standard_normal((50, 5, 27)))
    assert weights.shape == (50, 5)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    same = joint_fusion_weights(np.ones((4, 27)))
    np.testing.assert_allclose(same, 0.25)
    # errors of atlases 0 and 1 identical, of atlas 2 elsewhere: M = a [[1,1,0],[1,1,0],[0,0,1]]
    differences = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    a, alpha = 4.0 ** 2, 0.1
    u, v = 1 / (2 * a + alpha), 1 / (a + alpha)
    expected = np.array([u, u, v]) / (2 * u + v)
    np.testing.assert_allclose(joint_fusion_weights(differences, alpha=alpha, beta=2.0), expected, rtol=1e-9)


# ----------------------------------------------------------------------------- bad input


def _atlas(shape=(4, 4, 4)) -> np.ndarray:
    return np.zeros(shape, np.uint8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=[]), r"at least 1 atlas"),
    (dict(labels=[_atlas(), _atlas((4, 4, 5))]), r"atlas 1 labels have shape \(4, 4, 5\) but atlas 0 labels have "
                                                   r"shape \(4, 4, 4\)"),
    (dict(labels=[_atlas(), _atlas() + 0.5]), r"atlas 1 labels have non-integer values"),
    (dict(labels=[_atlas(), np.full((4, 4, 4), np.nan)]), r"atlas 1 labels have non-integer values"),
    (dict(labels=[_atlas()], method="vote"), r"unknown fusion method 'vote'; known methods: majority, staple, "
                                             r"weighted, joint"),
    (dict(labels=[_atlas()], method="weighted", images=[_atlas()]),
     r"'weighted' needs the target intensity image"),
    (dict(labels=[_atlas(), _atlas()], method="joint", target=_atlas(), images=[_atlas()]),
     r"'joint' needs one intensity image per atlas: got 1 for 2 atlases"),
    (dict(labels=[_atlas()], method="joint", target=_atlas()), r"needs one intensity image per atlas: got 0"),
    (dict(labels=[_atlas()], method="joint", target=_atlas((4, 4, 3)), images=[_atlas()]),
     r"target image has shape \(4, 4, 3\) but atlas 0 labels have shape \(4, 4, 4\)"),
    (dict(labels=[_atlas()], patch_radius=-1), r"patch_radius must be >= 0; got -1"),
    (dict(labels=[_atlas()], search_radius=-2), r"search_radius must be >= 0; got -2"),
    (dict(labels=[_atlas()], consensus=0.5), r"consensus must be in \(0\.5, 1\]; got 0\.5"),
    (dict(labels=[_atlas()], consensus=1.2), r"consensus must be in \(0\.5, 1\]; got 1\.2"),
    (dict(labels=[_atlas((4, 4))]), r"atlas 0 labels are 2-D"),
])
def test_bad_input_is_refused_in_one_line(kwargs, message):
    with pytest.raises(InputError, match=message) as caught:
        fuse_labels(**kwargs)
    assert "\n" not in str(caught.value)


def test_methods_are_the_documented_four():
    assert METHODS == ("majority", "staple", "weighted", "joint")
