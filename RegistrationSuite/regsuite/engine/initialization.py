"""Initial linear transforms from image geometry and intensity moments.

Every transform here maps a **fixed world point to a moving world point** (ITK resampling
convention, LPS mm), in the centred form ITK uses::

    x_moving = matrix @ (x_fixed - center) + center + translation

Modes of :func:`initialize`:

- ``"none"``: identity, centred at the fixed image's extent centre.
- ``"geometry"``: translation aligning the physical centres of the two image extents.
- ``"moments"``: translation aligning the intensity centres of mass (intensities shifted so
  the minimum of the region is 0, restricted to the masks when given).
- ``"principal-axes"``: centres of mass plus the rotation taking the fixed principal axes of
  the second moments onto the moving ones. Each eigenvector is only defined up to sign, so
  there are 4 proper rotations (det +1) that align the axes; the one closest to identity
  (largest trace, i.e. smallest rotation angle) is chosen. So rotations beyond 90 degrees are
  not recovered, by design. When two principal moments are nearly equal (within 2% of the
  largest, in either image) the axes in that plane are undefined: only the distinct axis is
  aligned, by the smallest rotation; if no axis is distinct the rotation is the identity.

Moments are computed on a copy bin-shrunk to at most 64 voxels per axis, with voxel positions
taken in world coordinates through origin, spacing and direction cosines.

Example:
    >>> import SimpleITK as sitk
    >>> fixed = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    >>> moving = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    >>> moving.SetOrigin((5.0, 0.0, 0.0))
    >>> init = initialize(fixed, moving, "geometry")
    >>> [round(float(v), 6) for v in init.translation]
    [5.0, 0.0, 0.0]
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from regsuite.errors import InputError, PresetError

__all__ = ["LinearInit", "initialize", "rigid_matrix", "MODES"]

MODES = ("none", "geometry", "moments", "principal-axes")

_MAX_MOMENT_SIZE = 64       # voxels per axis of the copy used for moments
_DEGENERATE_GAP = 0.02      # relative gap below which two principal moments count as equal


@dataclass
class LinearInit:
    """A centred linear transform, fixed world -> moving world.

    ``x_moving = matrix @ (x_fixed - center) + center + translation``.

    Example:
        >>> import numpy as np
        >>> t = LinearInit(np.eye(3), np.array([1.0, 2.0, 3.0]), np.zeros(3))
        >>> t.apply(np.zeros((1, 3))).tolist()
        [[1.0, 2.0, 3.0]]
    """

    matrix: np.ndarray
    translation: np.ndarray
    center: np.ndarray

    def __post_init__(self) -> None:
        self.matrix = np.array(self.matrix, dtype=np.float64).reshape(3, 3)
        self.translation = np.array(self.translation, dtype=np.float64).reshape(3)
        self.center = np.array(self.center, dtype=np.float64).reshape(3)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map fixed world points ``(N, 3)`` to moving world points ``(N, 3)``."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"points must have shape (N, 3), got {pts.shape}")
        return (pts - self.center) @ self.matrix.T + self.center + self.translation

    def homogeneous(self) -> np.ndarray:
        """The 4x4 homogeneous matrix of the same fixed-world -> moving-world map."""
        out = np.eye(4)
        out[:3, :3] = self.matrix
        out[:3, 3] = self.center + self.translation - self.matrix @ self.center
        return out

    def to_sitk(self) -> sitk.AffineTransform:
        """The same map as a ``sitk.AffineTransform`` (usable by ``sitk.Resample``)."""
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(tuple(float(v) for v in self.matrix.ravel()))
        transform.SetCenter(tuple(float(v) for v in self.center))
        transform.SetTranslation(tuple(float(v) for v in self.translation))
        return transform


def rigid_matrix(angles: Sequence[float]) -> np.ndarray:
    """Rotation ``R = Rz(gamma) @ Ry(beta) @ Rx(alpha)`` for ``angles = (alpha, beta, gamma)``.

    Angles are in radians, right-handed about the world x, y, z axes.

    Example:
        >>> import numpy as np
        >>> np.round(rigid_matrix((0.0, 0.0, np.pi / 2)) @ [1.0, 0.0, 0.0], 6).tolist()
        [0.0, 1.0, 0.0]
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.size != 3 or not np.all(np.isfinite(a)):
        raise InputError(f"rigid_matrix needs 3 finite angles, got {list(a)}")
    ca, sa = math.cos(a[0]), math.sin(a[0])
    cb, sb = math.cos(a[1]), math.sin(a[1])
    cg, sg = math.cos(a[2]), math.sin(a[2])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]])
    ry = np.array([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]])
    rz = np.array([[cg, -sg, 0.0], [sg, cg, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def _check_image(image: sitk.Image, name: str) -> None:
    if not isinstance(image, sitk.Image):
        raise InputError(f"{name} is not a SimpleITK image")
    if image.GetDimension() != 3:
        raise InputError(f"{name} is {image.GetDimension()}D; a 3D image is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name} has {image.GetNumberOfComponentsPerPixel()} components; "
                         "a scalar image is needed")


def _index_to_world(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """``(origin, M)`` with ``world = origin + M @ index`` (``M = direction @ diag(spacing)``)."""
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=np.float64)
    return np.array(image.GetOrigin(), dtype=np.float64), direction * spacing


def _extent_center(image: sitk.Image) -> np.ndarray:
    """World position of the centre of the image extent (midpoint of the corner voxels)."""
    origin, m = _index_to_world(image)
    size = np.array(image.GetSize(), dtype=np.float64)
    return origin + m @ ((size - 1.0) / 2.0)


def _shrink(image: sitk.Image, factors: list[int]) -> sitk.Image:
    return sitk.BinShrink(image, factors) if any(f > 1 for f in factors) else image


def _moments(image: sitk.Image, mask: sitk.Image | None, name: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """Intensity centre of mass (world) and second central moment matrix (world, mm^2)."""
    factors = [max(1, math.ceil(s / _MAX_MOMENT_SIZE)) for s in image.GetSize()]
    small = _shrink(sitk.Cast(image, sitk.sitkFloat64), factors)
    values = sitk.GetArrayViewFromImage(small).astype(np.float64)   # (z, y, x)
    if mask is not None:
        _check_image(mask, f"{name} mask")
        binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkFloat64)
        # Nearest neighbour onto the full-resolution grid, then the same binning: each coarse
        # voxel carries the fraction of its bin inside the mask.
        binary = sitk.Resample(binary, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0,
                               sitk.sitkFloat64)
        fraction = sitk.GetArrayViewFromImage(_shrink(binary, factors)).astype(np.float64)
    else:
        fraction = np.ones_like(values)
    region = fraction > 0.0
    if not np.any(region):
        raise InputError(f"{name} mask is empty (or does not overlap the {name} image)")
    finite = np.isfinite(values)
    region &= finite
    if not np.any(region):
        raise InputError(f"{name} image has no finite intensities inside its region")
    weights = np.where(region, (np.where(finite, values, 0.0) - values[region].min()), 0.0)
    weights *= fraction
    if weights.sum() <= 0.0:          # constant intensity: the region's geometric moments
        weights = np.where(region, fraction, 0.0)
    total = weights.sum()

    kk, jj, ii = np.nonzero(weights > 0.0)
    w = weights[kk, jj, ii] / total
    index = np.stack([ii, jj, kk], axis=1).astype(np.float64)       # ITK order (x, y, z)
    origin, m = _index_to_world(small)
    world = origin + index @ m.T
    center = w @ world
    centered = world - center
    second = (centered * w[:, None]).T @ centered
    return center, 0.5 * (second + second.T)


def _minimal_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit axis ``a`` onto the axis ``±b`` (sign chosen to be near)."""
    if float(a @ b) < 0.0:
        b = -b
    v = np.cross(a, b)
    c = float(a @ b)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def _principal_rotation(second_fixed: np.ndarray, second_moving: np.ndarray) -> np.ndarray:
    """Rotation ``R`` with ``R @ second_fixed @ R.T ~ second_moving``, closest to identity."""
    lam_f, axes_f = np.linalg.eigh(second_fixed)     # ascending eigenvalues, columns = axes
    lam_m, axes_m = np.linalg.eigh(second_moving)
    scale_f, scale_m = float(lam_f[-1]), float(lam_m[-1])
    if scale_f <= 0.0 or scale_m <= 0.0:
        return np.eye(3)

    def equal(i: int) -> bool:   # principal moments i and i+1 nearly equal in either image
        return bool((lam_f[i + 1] - lam_f[i]) < _DEGENERATE_GAP * scale_f
                    or (lam_m[i + 1] - lam_m[i]) < _DEGENERATE_GAP * scale_m)

    low_equal, high_equal = equal(0), equal(1)
    if low_equal and high_equal:
        return np.eye(3)
    if low_equal:      # only the largest-moment axis is defined
        return _minimal_rotation(axes_f[:, 2], axes_m[:, 2])
    if high_equal:     # only the smallest-moment axis is defined
        return _minimal_rotation(axes_f[:, 0], axes_m[:, 0])

    best, best_trace = np.eye(3), -math.inf
    for signs in itertools.product((1.0, -1.0), repeat=3):
        candidate = (axes_m * np.array(signs)) @ axes_f.T
        if np.linalg.det(candidate) < 0.0:
            continue
        trace = float(np.trace(candidate))
        if trace > best_trace:
            best, best_trace = candidate, trace
    return best


def initialize(
    fixed: sitk.Image,
    moving: sitk.Image,
    mode: str,
    fixed_mask: sitk.Image | None = None,
    moving_mask: sitk.Image | None = None,
) -> LinearInit:
    """Initial fixed-world -> moving-world linear transform (see the module docstring).

    Masks (any non-zero voxel is inside; any grid, resampled by nearest neighbour) restrict
    the ``"moments"`` and ``"principal-axes"`` computations and are ignored otherwise.

    Example:
        >>> import SimpleITK as sitk
        >>> img = sitk.GaussianSource(sitk.sitkFloat32, [16, 16, 16], [3, 3, 3], [5, 8, 8])
        >>> init = initialize(img, img, "moments")
        >>> bool(abs(init.translation).max() < 1e-9)
        True
    """
    if mode not in MODES:
        raise PresetError(f"unknown initialization mode {mode!r}; expected one of "
                          f"{', '.join(MODES)}")
    _check_image(fixed, "fixed image")
    _check_image(moving, "moving image")

    if mode in ("none", "geometry"):
        center_f = _extent_center(fixed)
        translation = np.zeros(3) if mode == "none" else _extent_center(moving) - center_f
        return LinearInit(np.eye(3), translation, center_f)

    center_f, second_f = _moments(fixed, fixed_mask, "fixed")
    center_m, second_m = _moments(moving, moving_mask, "moving")
    matrix = np.eye(3) if mode == "moments" else _principal_rotation(second_f, second_m)
    return LinearInit(matrix, center_m - center_f, center_f)
