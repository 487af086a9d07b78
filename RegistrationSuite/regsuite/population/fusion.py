"""Label fusion for multi-atlas segmentation: many warped atlas label maps become one.

Every atlas's label map (and, for the intensity-guided methods, its intensity image) must
already lie on the target's grid; arrays are in ``(z, y, x)`` order and all of one shape.

Methods (:data:`METHODS`):

``majority``
    The most voted label per voxel; ties go to the lowest label value.
``staple``
    Multi-label STAPLE (SimpleITK ``MultiLabelSTAPLE``, Warfield et al. 2004, Rohlfing et al.
    2004): each atlas's confusion matrix and the true labels are estimated together by EM.
    Voxels STAPLE leaves undecided take the majority vote.
``weighted``
    Locally weighted voting (in the manner of Artaechevarria et al., IEEE TMI 2009): atlas ``i``
    votes with ``w_i(x) = (MSD_i(x) + 1e-3) ** -beta``, where ``MSD_i`` is the mean squared
    difference between the standardised atlas image and target in a Gaussian window of
    ``sigma_mm``.
``joint``
    Joint label fusion (Wang, Suh, Das, Pluta, Craige and Yushkevich, IEEE TPAMI 2013): the
    weights ``w = (M + alpha I)^-1 1 / (1^T (M + alpha I)^-1 1)`` minimise the expected
    error of the vote given the atlases' *correlated* errors, with
    ``M(i, j) = (sum over the patch of |A_i - T| |A_j - T|) ** beta``; see
    :func:`joint_fusion_weights`.

Consensus shortcut: a voxel where at least ``consensus`` of the atlases vote for one label keeps
that label and skips the expensive step. STAPLE estimates the atlases' performance on every
voxel where they disagree (unanimous voxels are left out), and decides the non-consensus ones.

Example:
    >>> import numpy as np
    >>> a = np.zeros((2, 3, 3), np.uint8); a[:, 0] = 1
    >>> b = a.copy(); b[:, 1] = 2
    >>> c = a.copy(); c[:, 2] = 2
    >>> result = fuse_labels([a, b, c], probabilities=True)
    >>> result.labels[0]
    array([[1, 1, 1],
           [0, 0, 0],
           [0, 0, 0]], dtype=uint8)
    >>> result.label_values, round(result.consensus_fraction, 3)
    ([0, 1, 2], 0.333)
    >>> float(result.probabilities[2][0, 1, 0])
    0.3333333432674408
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError

__all__ = ["METHODS", "FusionResult", "fuse_labels", "joint_fusion_weights"]

METHODS = ("majority", "staple", "weighted", "joint")

#: Floor added to the local mean squared difference (standardised intensities, i.e. units of SD^2)
#: of ``weighted`` voting, so that an atlas identical to the target gets a large, finite weight.
MSD_FLOOR = 1e-3
_VOTE_CHUNK = 1 << 18          # voxels per chunk of the vote arithmetic
_PATCH_BUDGET = 64 << 20       # bytes of gathered patch values per chunk of joint fusion
_BINCOUNT_LIMIT = 1 << 24      # label values below this are looked up with a table, not a search


@dataclass
class FusionResult:
    """The fused label map and what went into it.

    Attributes:
        labels: the fused label map, in the shape of the atlases and the (integer) dtype of their
            label values.
        label_values: the sorted label values present in any atlas (0 included if present).
        probabilities: per label value, a float32 map in [0, 1] that sums to 1 over the labels
            at each voxel: the vote fraction (``majority`` and every consensus voxel), the STAPLE
            posterior, or the label's share of the fusion weights (``weighted``, ``joint``; the
            joint weights' negative label sums are clipped to 0 first). Empty unless asked for.
        consensus_fraction: the share of voxels decided by the consensus shortcut.
    """

    labels: np.ndarray
    label_values: list[int]
    probabilities: dict[int, np.ndarray] = field(default_factory=dict)
    consensus_fraction: float = 0.0


class _LabelStack(NamedTuple):
    """The atlases' labels as indices into ``values`` (one row per atlas, voxels flattened)."""

    values: np.ndarray      # sorted label values, int64
    index: np.ndarray       # (atlases, voxels), unsigned
    dtype: np.dtype         # dtype of the fused labels
    shape: tuple[int, ...]


class _Votes(NamedTuple):
    winner: np.ndarray      # (voxels,) label index with the largest vote
    top: np.ndarray         # (voxels,) number of atlases voting for the most voted label
    shares: np.ndarray | None  # (atlases, voxels) share of atlas k's label, when asked


# ----------------------------------------------------------------------------- validation


def _check_options(method: str, consensus: float, patch_radius: int, search_radius: int, alpha: float,
                   beta: float, sigma_mm: float, spacing: Sequence[float]) -> tuple[float, float, float]:
    if method not in METHODS:
        raise InputError(f"unknown fusion method {method!r}; known methods: {', '.join(METHODS)}")
    if not isinstance(consensus, numbers.Real) or not 0.5 < consensus <= 1.0:
        raise InputError(f"consensus must be in (0.5, 1]; got {consensus!r}")
    for name, radius in (("patch_radius", patch_radius), ("search_radius", search_radius)):
        if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool):
            raise InputError(f"{name} must be a whole number of voxels; got {radius!r}")
        if radius < 0:
            raise InputError(f"{name} must be >= 0; got {radius}")
    for name, value in (("alpha", alpha), ("beta", beta), ("sigma_mm", sigma_mm)):
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise InputError(f"{name} must be a positive number; got {value!r}")
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError(f"spacing must be three positive numbers (z, y, x); got {spacing!r}") from None
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing must be three positive numbers (z, y, x); got {spacing!r}")
    return values  # type: ignore[return-value]


def _integer_labels(array: np.ndarray, which: int) -> np.ndarray:
    if array.dtype.kind in "iu":
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
            raise InputError(f"atlas {which} labels have non-integer values; a label map is needed")
        return array.astype(np.int64)
    raise InputError(f"atlas {which} labels have dtype {array.dtype}; an integer label map is needed")


def _checked_labels(labels: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(array) for array in labels]
    if not arrays:
        raise InputError("label fusion needs at least 1 atlas label map; got none")
    if arrays[0].ndim != 3:
        raise InputError(f"atlas 0 labels are {arrays[0].ndim}-D; a 3-D (z, y, x) array is needed")
    for which, array in enumerate(arrays[1:], start=1):
        if array.shape != arrays[0].shape:
            raise InputError(f"atlas {which} labels have shape {array.shape} but atlas 0 labels have shape "
                             f"{arrays[0].shape}")
    return [_integer_labels(array, which) for which, array in enumerate(arrays)]


def _checked_image(array: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise InputError(f"{name} has shape {array.shape} but atlas 0 labels have shape {shape}")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} has dtype {array.dtype}; a real-valued intensity image is needed")
    if not np.isfinite(array).all():
        raise InputError(f"{name} has non-finite values (NaN or infinity)")
    return array


def _checked_images(method: str, target: np.ndarray | None, images: Sequence[np.ndarray] | None,
                    count: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    """``[target, image 0, image 1, ...]``, validated."""
    if target is None:
        raise InputError(f"fusion method {method!r} needs the target intensity image (target=...)")
    if images is None or len(images) != count:
        given = 0 if images is None else len(images)
        raise InputError(f"fusion method {method!r} needs one intensity image per atlas: got {given} "
                         f"for {count} atlases")
    checked = [_checked_image(target, "target image", shape)]
    checked += [_checked_image(image, f"atlas {which} image", shape) for which, image in enumerate(images)]
    return checked


# ----------------------------------------------------------------------------- labels


def _present_values(array: np.ndarray) -> np.ndarray:
    if array.size and array.min() >= 0 and array.max() < _BINCOUNT_LIMIT:
        return np.flatnonzero(np.bincount(array.ravel()))
    return np.unique(array).astype(np.int64)


def _index_dtype(count: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if count <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _output_dtype(arrays: Sequence[np.ndarray]) -> np.dtype:
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind in "iu" else np.dtype(np.int64)


def _label_stack(arrays: Sequence[np.ndarray]) -> _LabelStack:
    """Map every label value to its rank among all values present (a compact index)."""
    values = np.unique(np.concatenate([_present_values(array) for array in arrays])).astype(np.int64)
    index = np.empty((len(arrays), arrays[0].size), _index_dtype(len(values)))
    use_table = values[0] >= 0 and values[-1] < _BINCOUNT_LIMIT
    if use_table:
        table = np.zeros(int(values[-1]) + 1, index.dtype)
        table[values] = np.arange(len(values))
    for row, array in enumerate(arrays):
        flat = array.ravel()
        index[row] = table[flat] if use_table else np.searchsorted(values, flat)
    return _LabelStack(values, index, _output_dtype(arrays), arrays[0].shape)


# ----------------------------------------------------------------------------- voting


def _vote(index: np.ndarray, weights: np.ndarray | None = None, shares: bool = False) -> _Votes:
    """Weighted vote of ``index`` (atlases, voxels); every atlas votes 1 when ``weights`` is None.

    Loops over pairs of atlases, never over labels: atlas ``k``'s score is the summed weight of
    the atlases that vote for its label. The winner is the label of the highest score, the
    lowest label value among (near-)equal scores.
    """
    atlases = index.shape[0]
    counts = np.ones(index.shape, np.int32)
    scores = None if weights is None else np.array(weights, np.float64)
    for a in range(atlases):
        for b in range(a + 1, atlases):
            same = index[a] == index[b]
            counts[a] += same
            counts[b] += same
            if scores is not None:
                scores[a] += np.where(same, weights[b], 0.0)
                scores[b] += np.where(same, weights[a], 0.0)
    score = counts if scores is None else scores
    best = score.max(axis=0)
    tied = score == best if scores is None else score >= best - 1e-9 * np.abs(best)
    winner = np.where(tied, index, np.iinfo(index.dtype).max).min(axis=0)
    share = None
    if shares:
        positive = np.maximum(score, 0).astype(np.float64)
        total = (positive / counts).sum(axis=0)   # each label's score counted once
        share = (positive / np.where(total > 0, total, 1.0)).astype(np.float32)
    return _Votes(winner.astype(index.dtype), counts.max(axis=0), share)


def _chunked_vote(index: np.ndarray, weights: np.ndarray | None, shares: bool) -> _Votes:
    """:func:`_vote` in chunks of voxels (bounded memory, cache-sized arrays)."""
    voxels = index.shape[1]
    winner = np.empty(voxels, index.dtype)
    top = np.empty(voxels, np.int32)
    share = np.empty(index.shape, np.float32) if shares else None
    for start in range(0, voxels, _VOTE_CHUNK):
        part = slice(start, min(start + _VOTE_CHUNK, voxels))
        votes = _vote(index[:, part], None if weights is None else weights[:, part], shares)
        winner[part], top[part] = votes.winner, votes.top
        if share is not None:
            share[:, part] = votes.shares
    return _Votes(winner, top, share)


def _scatter(maps: np.ndarray, index: np.ndarray, voxels: np.ndarray, shares: np.ndarray,
             clear: bool = True) -> None:
    """Write each atlas's label share into ``maps`` (labels, all voxels) at ``voxels``."""
    if clear:
        maps[:, voxels] = 0.0
    for row in range(index.shape[0]):
        maps[index[row], voxels] = shares[row]


# ----------------------------------------------------------------------------- STAPLE


def _staple_pixel(count: int) -> tuple[type, int]:
    """Pixel type holding label indices ``0..count-1`` and the undecided label ``count``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if count <= np.iinfo(dtype).max:
            return dtype, count
    return np.uint64, count


def _staple(index: np.ndarray, count: int,
            posterior_at: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """STAPLE on the voxels of ``index`` (atlases, voxels) - space plays no part in it.

    Returns the decided label index per voxel (``count`` where STAPLE left it undecided) and,
    when ``posterior_at`` (positions among those voxels) is given, the posterior (labels, those
    positions) rebuilt from STAPLE's confusion matrices.
    """
    dtype, undecided = _staple_pixel(count)
    images = [sitk.GetImageFromArray(row.astype(dtype)[np.newaxis, :]) for row in index]
    staple = sitk.MultiLabelSTAPLEImageFilter()
    staple.SetLabelForUndecidedPixels(undecided)
    decided = sitk.GetArrayFromImage(staple.Execute(images))[0].astype(np.int64)
    if posterior_at is None:
        return decided, None
    return decided, _staple_posterior(index, count, staple, posterior_at)


def _staple_posterior(index: np.ndarray, count: int, staple: sitk.MultiLabelSTAPLEImageFilter,
                      columns: np.ndarray) -> np.ndarray:
    """``P(true label | votes)`` proportional to ``prior(l) * prod_k theta_k(vote_k, l)``.

    ``theta_k`` (observed row, true column) is STAPLE's estimate for atlas ``k``; the prior is the
    label frequency over all atlases and voxels, as MultiLabelSTAPLE computes it by default.
    """
    used = int(index.max()) + 1                      # labels STAPLE saw
    prior = np.bincount(index.ravel().astype(np.int64), minlength=used) / index.size
    thetas = [np.asarray(staple.GetConfusionMatrix(k)).reshape(used + 1, used) for k in range(index.shape[0])]
    result = np.zeros((count, columns.size), np.float32)
    step = max(1, (_PATCH_BUDGET // 8) // max(used, 1))
    for start in range(0, columns.size, step):
        part = slice(start, start + step)
        weight = np.tile(prior, (columns[part].size, 1))
        for k, theta in enumerate(thetas):
            weight *= theta[index[k, columns[part]].astype(np.int64)]
        total = weight.sum(axis=1, keepdims=True)
        result[:used, part] = (weight / np.where(total > 0, total, 1.0)).T
    return result


# ----------------------------------------------------------------------------- intensities


def _standardisers(images: Sequence[np.ndarray]) -> list[tuple[float, float]]:
    """(mean, SD) of each image over the union of all images' non-zero voxels."""
    mask = np.zeros(images[0].shape, bool)
    for image in images:
        mask |= image != 0
    if not mask.any():
        mask[...] = True
    result = []
    for image in images:
        values = image[mask].astype(np.float64)
        mean, sd = float(values.mean()), float(values.std())
        result.append((mean, sd if sd > 0 else 1.0))
    return result


class _Block(NamedTuple):
    """The bounding box of some voxels grown by ``margin`` voxels, edge-padded past the volume."""

    low: np.ndarray         # corner in volume coordinates (may be negative)
    shape: tuple[int, int, int]

    @staticmethod
    def around(coords: np.ndarray, margin: Sequence[int]) -> "_Block":
        low = coords.min(axis=1) - np.asarray(margin)
        high = coords.max(axis=1) + 1 + np.asarray(margin)
        return _Block(low, tuple(int(n) for n in high - low))

    def cut(self, array: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        high = self.low + np.asarray(self.shape)
        start = np.maximum(self.low, 0)
        stop = np.minimum(high, array.shape)
        inner = array[tuple(slice(int(a), int(b)) for a, b in zip(start, stop))]
        pad = [(int(a), int(b)) for a, b in zip(start - self.low, high - stop)]
        return np.pad(inner.astype(dtype, copy=False), pad, mode="edge")

    def flat(self, coords: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(coords - self.low[:, None]), self.shape).astype(np.int64)


def _standardised_blocks(images: Sequence[np.ndarray], block: _Block) -> list[np.ndarray]:
    return [(block.cut(image) - np.float32(mean)) / np.float32(sd)
            for image, (mean, sd) in zip(images, _standardisers(images))]


# ----------------------------------------------------------------------------- weighted voting


def _local_weights(images: Sequence[np.ndarray], coords: np.ndarray, spacing: Sequence[float], sigma_mm: float,
                   beta: float) -> np.ndarray:
    """(atlases, voxels) weights ``(MSD + MSD_FLOOR) ** -beta``, scaled so each voxel's largest is 1."""
    sigma = [sigma_mm / s for s in spacing]
    radius = [int(4.0 * s + 0.5) for s in sigma]    # scipy's kernel radius at truncate=4
    block = _Block.around(coords, radius)
    target, *atlases = _standardised_blocks(images, block)
    where = block.flat(coords)
    log_weight = np.empty((len(atlases), coords.shape[1]), np.float64)
    for row, atlas in enumerate(atlases):
        msd = ndimage.gaussian_filter(np.square(atlas - target), sigma, mode="nearest")
        log_weight[row] = -beta * np.log(msd.ravel()[where].astype(np.float64) + MSD_FLOOR)
    return np.exp(log_weight - log_weight.max(axis=0))


# ----------------------------------------------------------------------------- joint label fusion


def joint_fusion_weights(differences: np.ndarray, alpha: float = 0.1, beta: float = 2.0) -> np.ndarray:
    """Joint label fusion weights of atlases from their patch differences to the target.

    ``differences`` (..., atlases, patch voxels) holds ``A_i - T`` over each atlas's patch
    (signs are ignored). With ``M(i, j) = (sum_p |d_i(p)| |d_j(p)|) ** beta``, the weights are
    ``w = (M + alpha I)^-1 1`` scaled to sum to 1 (Wang et al. 2013): the minimiser of the
    expected squared vote error ``w^T M w`` (ridge ``alpha``) with ``sum(w) = 1``. Atlases whose
    errors are alike share one atlas's weight; a weight may be negative. Where the solution is
    unusable (non-finite, or a non-positive sum), the atlases get equal weights.

    Example:
        >>> d = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])   # atlases 0 and 1 err alike
        >>> joint_fusion_weights(d, alpha=0.1, beta=1.0).round(3)   # the pair ~ one atlas's weight
        array([0.256, 0.256, 0.488])
    """
    magnitude = np.abs(np.asarray(differences, np.float32))
    gram = np.matmul(magnitude, np.swapaxes(magnitude, -1, -2)).astype(np.float64)
    matrix = gram * gram if beta == 2.0 else gram ** beta
    atlases = matrix.shape[-1]
    matrix += alpha * np.eye(atlases)
    ones = np.ones(matrix.shape[:-1] + (1,))
    try:
        weights = np.linalg.solve(matrix, ones)[..., 0]
    except np.linalg.LinAlgError:
        weights = np.matmul(np.linalg.pinv(matrix), ones)[..., 0]
    total = weights.sum(axis=-1, keepdims=True)
    usable = np.isfinite(total) & (total > 1e-12 * np.abs(weights).sum(axis=-1, keepdims=True))
    return np.where(usable, weights / np.where(usable, total, 1.0), 1.0 / atlases)


def _offsets(radius: int) -> np.ndarray:
    """All (dz, dy, dx) with each coordinate in ``[-radius, radius]``, nearest first (0 first)."""
    span = np.arange(-radius, radius + 1)
    grid = np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[np.argsort((grid ** 2).sum(axis=1), kind="stable")]


def _best_offsets(target: np.ndarray, atlases: Sequence[np.ndarray], where: np.ndarray, patch: int,
                  search: int) -> np.ndarray:
    """(atlases, voxels) index into ``_offsets(search)`` of the atlas patch nearest the target patch.

    Arrays are blocks with a margin of ``patch + search``; ``where`` are flat positions in the
    block's inner part (the margin ``search`` cut off). Sums of squared differences over the
    patch are box filters; among equal sums the nearer offset wins.
    """
    offsets = _offsets(search)
    best = np.zeros((len(atlases), where.size), np.int16)
    if search == 0:
        return best
    inner = tuple(slice(search, n - search) for n in target.shape)
    fixed = target[inner]
    for row, atlas in enumerate(atlases):
        lowest = np.full(where.size, np.inf, np.float32)
        for number, offset in enumerate(offsets):
            moved = atlas[tuple(slice(search + o, n - search + o) for o, n in zip(offset, atlas.shape))]
            ssd = ndimage.uniform_filter(np.square(moved - fixed), 2 * patch + 1, mode="nearest")
            values = ssd.ravel()[where]
            better = values < lowest
            lowest[better] = values[better]
            best[row, better] = number
    return best


def _joint_votes(images: Sequence[np.ndarray], stack: _LabelStack, coords: np.ndarray, patch: int, search: int,
                 alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(atlases, voxels) label indices and joint fusion weights at ``coords``.

    Each atlas contributes its patch nearest the target's within the search neighbourhood (on
    globally standardised intensities) and votes with the label at that patch's centre.
    """
    margin = patch + search
    block = _Block.around(coords, [margin] * 3)
    target, *atlases = _standardised_blocks(images, block)
    inner_shape = tuple(n - 2 * search for n in block.shape)
    inner_where = np.ravel_multi_index(tuple(coords - block.low[:, None] - search), inner_shape)
    choice = _best_offsets(target, atlases, inner_where, patch, search)
    strides = np.array([block.shape[1] * block.shape[2], block.shape[2], 1])
    shift = _offsets(search) @ strides
    patch_shift = _offsets(patch) @ strides
    labels = [block.cut(stack.index[row].reshape(stack.shape), stack.index.dtype).ravel()
              for row in range(len(atlases))]
    centre = block.flat(coords)
    votes = np.empty((len(atlases), centre.size), stack.index.dtype)
    weights = np.empty((len(atlases), centre.size), np.float64)
    step = max(1, _PATCH_BUDGET // (4 * len(atlases) * len(patch_shift)))
    flat_target = target.ravel()
    flat_atlases = [atlas.ravel() for atlas in atlases]
    for start in range(0, centre.size, step):
        part = slice(start, start + step)
        fixed = flat_target[centre[part, None] + patch_shift]
        differences = np.empty((fixed.shape[0], len(atlases), len(patch_shift)), np.float32)
        for row, atlas in enumerate(flat_atlases):
            matched = centre[part] + shift[choice[row, part]]
            np.subtract(atlas[matched[:, None] + patch_shift], fixed, out=differences[:, row])
            votes[row, part] = labels[row][matched]
        weights[:, part] = joint_fusion_weights(differences, alpha, beta).T
    return votes, weights


# ----------------------------------------------------------------------------- entry point


def fuse_labels(labels: Sequence[np.ndarray], method: str = "majority", *, target: np.ndarray | None = None,
                images: Sequence[np.ndarray] | None = None, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                consensus: float = 0.8, patch_radius: int = 2, search_radius: int = 1, alpha: float = 0.1,
                beta: float = 2.0, sigma_mm: float = 3.0, probabilities: bool = False) -> FusionResult:
    """Fuse atlas label maps warped onto the target grid into one label map.

    Args:
        labels: one integer label map per atlas, ``(z, y, x)``, all of one shape (float arrays
            holding whole numbers only are accepted).
        method: one of :data:`METHODS` (see the module docstring).
        target: the target's intensity image (``weighted``, ``joint``).
        images: each atlas's intensity image warped onto the target grid (``weighted``, ``joint``).
            Target and atlas images are each standardised to zero mean and unit SD over the union
            of all their non-zero voxels, so that atlases from other scanners compare.
        spacing: voxel size in mm, ``(z, y, x)`` like the arrays (``weighted``'s Gaussian window).
        consensus: a voxel where at least this fraction of the atlases agree keeps their label
            without the method's computation; in (0.5, 1], 1.0 = unanimous voxels only.
        patch_radius: ``joint``: the patch is a cube of ``2 r + 1`` voxels a side.
        search_radius: ``joint``: each atlas's best-matching patch is sought among the centres
            within this many voxels (a cube) of the voxel.
        alpha: ``joint``: the ridge added to the error-correlation matrix.
        beta: ``weighted``: the exponent of the local MSD; ``joint``: of the matrix entries.
        sigma_mm: ``weighted``: the SD of the Gaussian window in mm.
        probabilities: also build one probability map per label (labels x voxels float32 memory).

    Raises:
        InputError: no atlas, differing shapes, non-integer labels, an unknown method, missing
            images for ``weighted``/``joint``, a negative radius, ``consensus`` outside (0.5, 1].
    """
    spacing = _check_options(method, consensus, patch_radius, search_radius, alpha, beta, sigma_mm, spacing)
    arrays = _checked_labels(labels)
    intensities = None
    if method in ("weighted", "joint"):
        intensities = _checked_images(method, target, images, len(arrays), arrays[0].shape)
    stack = _label_stack(arrays)
    del arrays
    atlases = stack.index.shape[0]
    votes = _chunked_vote(stack.index, None, probabilities)
    agreed = votes.top >= math.ceil(consensus * atlases - 1e-9)
    winner = votes.winner
    maps = None
    if probabilities:
        maps = np.zeros((len(stack.values), stack.index.shape[1]), np.float32)
        _scatter(maps, stack.index, np.arange(stack.index.shape[1]), votes.shares, clear=False)
    todo = np.flatnonzero(~agreed) if method != "majority" else np.empty(0, np.int64)
    if todo.size:
        _decide(method, stack, todo, votes.top == atlases, winner, maps, intensities, spacing, patch_radius,
                search_radius, alpha, beta, sigma_mm)
    return FusionResult(labels=stack.values[winner].astype(stack.dtype).reshape(stack.shape),
                        label_values=[int(v) for v in stack.values],
                        probabilities={} if maps is None else {
                            int(value): maps[row].reshape(stack.shape) for row, value in enumerate(stack.values)},
                        consensus_fraction=float(agreed.mean()))


def _decide(method: str, stack: _LabelStack, todo: np.ndarray, unanimous: np.ndarray, winner: np.ndarray,
            maps: np.ndarray | None, intensities: Sequence[np.ndarray] | None, spacing: Sequence[float],
            patch_radius: int, search_radius: int, alpha: float, beta: float, sigma_mm: float) -> None:
    """Overwrite ``winner`` (and ``maps``) at the non-consensus voxels ``todo`` by ``method``."""
    if method == "staple":
        _decide_staple(stack, todo, winner, maps, unanimous)
        return
    index = stack.index[:, todo]
    coords = np.array(np.unravel_index(todo, stack.shape))
    if method == "weighted":
        weights = _local_weights(intensities, coords, spacing, sigma_mm, beta)
    else:
        index, weights = _joint_votes(intensities, stack, coords, patch_radius, search_radius, alpha, beta)
    votes = _chunked_vote(index, weights, maps is not None)
    winner[todo] = votes.winner
    if maps is not None:
        _scatter(maps, index, todo, votes.shares)


def _decide_staple(stack: _LabelStack, todo: np.ndarray, winner: np.ndarray, maps: np.ndarray | None,
                   unanimous: np.ndarray) -> None:
    """STAPLE estimated on every voxel where the atlases disagree, applied at the voxels ``todo``.

    Leaving the unanimous voxels out of the EM estimate (the region of disagreement, as in
    Rohlfing et al. 2004) changes little and saves time; leaving out every consensus voxel
    would make each atlas look far worse than it is. Undecided voxels keep the majority vote.
    """
    region = np.flatnonzero(~unanimous)
    at = np.searchsorted(region, todo)              # todo lies inside region
    decided, posterior = _staple(stack.index[:, region], len(stack.values), at if maps is not None else None)
    decided = decided[at]
    undecided = decided >= len(stack.values)
    winner[todo] = np.where(undecided, winner[todo], decided)
    if maps is not None:
        maps[:, todo] = posterior
        keep = todo[undecided]                       # the vote fractions stay where STAPLE abstained
        if keep.size:
            _scatter(maps, stack.index[:, keep], keep, _vote(stack.index[:, keep], None, True).shares)
