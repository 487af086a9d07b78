"""Affine and velocity-field arithmetic of the population workflows: 4x4 matrices of linear
transforms, their log-Euclidean means and powers (a mean affine, a square root), and ``exp(v)``
of a velocity image as a SimpleITK displacement field.

Example (the square root of a translation by 4 mm is a translation by 2 mm):
    >>> shift = sitk.AffineTransform(3); shift.SetTranslation((4.0, 0.0, 0.0))
    >>> np.round(mean_affine([shift], power=0.5)[:3, 3], 6).tolist()
    [2.0, 0.0, 0.0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

__all__ = ["homogeneous", "affine_transform", "mean_affine", "field_transform", "velocity_exp", "read_image_vector",
           "halfway_transforms"]


def homogeneous(transform: sitk.Transform) -> np.ndarray:
    """The 4x4 matrix (world mm, LPS) of a linear transform or a composite of linear ones."""
    from ..io.transforms import flatten_linear

    affine = flatten_linear(transform)
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(affine.GetMatrix()).reshape(3, 3)
    center = np.array(affine.GetCenter())
    matrix[:3, 3] = np.array(affine.GetTranslation()) + center - matrix[:3, :3] @ center
    return matrix


def affine_transform(matrix: np.ndarray) -> sitk.AffineTransform:
    """The ``sitk.AffineTransform`` of a 4x4 matrix."""
    return sitk.AffineTransform(matrix[:3, :3].ravel().tolist(), matrix[:3, 3].tolist())


def mean_affine(transforms: Sequence[sitk.Transform], power: float = 1.0) -> np.ndarray:
    """Log-Euclidean mean of affine transforms as a 4x4 matrix, raised to ``power``.

    Example:
        >>> a = sitk.AffineTransform(3); a.SetTranslation((2.0, 0.0, 0.0))
        >>> b = sitk.AffineTransform(3); b.SetTranslation((4.0, 0.0, 0.0))
        >>> np.round(mean_affine([a, b])[:3, 3], 6).tolist()
        [3.0, 0.0, 0.0]
    """
    from scipy.linalg import expm, logm

    logs = [np.real(logm(homogeneous(t))) for t in transforms]
    return np.real(expm(power * np.mean(logs, axis=0)))


def field_transform(vectors: np.ndarray, reference: sitk.Image) -> sitk.DisplacementFieldTransform:
    """A displacement field transform of ``(z, y, x, 3)`` world-mm vectors on ``reference``'s grid."""
    image = sitk.GetImageFromArray(vectors.astype(np.float64), isVector=True)
    image.CopyInformation(reference)
    return sitk.DisplacementFieldTransform(image)


def velocity_exp(velocity: np.ndarray, reference: sitk.Image, steps: int = 7) -> np.ndarray:
    """``exp(v) - id`` (world mm, (z, y, x, 3)) by scaling and squaring with the engine's field."""
    import torch

    from ..engine.grid import Grid
    from ..engine.transforms.dense import VelocityField, vector_array

    field = torch.from_numpy(np.ascontiguousarray(velocity.transpose(3, 0, 1, 2))[None].astype(np.float32))
    model = VelocityField(Grid.from_sitk(reference), field, steps=steps)
    with torch.no_grad():
        return vector_array(model.displacement())


def read_image_vector(path: str) -> sitk.Image:
    """A vector image (velocity field) as written by :func:`~.steps.register_pair`."""
    image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() != 3:
        raise InputError(f"velocity field '{path}' does not hold 3-vectors")
    return image


def halfway_transforms(affine: sitk.Transform, velocity: sitk.Image | None = None
                       ) -> tuple[sitk.Transform, sitk.Transform]:
    """The two halves of a registration ``T = A o exp(v)`` (fixed world -> moving world, the
    affine ``A`` after the velocity field ``v`` on the fixed grid; no ``v``: ``T = A``), as maps
    from a halfway space ``H`` to each image, for resampling both images into ``H``:

    * ``to_fixed = exp(-v/2) o A^(-1/2)``: halfway world -> fixed world;
    * ``to_moving = A o exp(v/2) o A^(-1/2)``: halfway world -> moving world.

    So ``to_moving = T o to_fixed`` (the pair still registers), and each image moves by half of
    the deformation and half of the affine (``A^(1/2)``, the log-Euclidean square root); this is
    where the symmetric velocity update meets. ``H`` shares the fixed image's frame up to
    ``A^(1/2)``: the fixed image's grid is a fair grid to resample onto.

    Example (a 4 mm shift splits into 2 mm each way):
        >>> shift = sitk.AffineTransform(3); shift.SetTranslation((4.0, 0.0, 0.0))
        >>> to_fixed, to_moving = halfway_transforms(shift)
        >>> to_fixed.TransformPoint((0.0, 0.0, 0.0)), to_moving.TransformPoint((0.0, 0.0, 0.0))
        ((-2.0, 0.0, 0.0), (2.0, 0.0, 0.0))
    """
    root, inverse_root = (affine_transform(mean_affine([affine], power)) for power in (0.5, -0.5))
    if velocity is None:
        return inverse_root, root
    values = sitk.GetArrayFromImage(velocity).astype(np.float64)
    reference = sitk.Image(velocity.GetSize(), sitk.sitkUInt8)
    reference.CopyInformation(velocity)
    back, ahead = (field_transform(velocity_exp(sign * 0.5 * values, reference), reference) for sign in (-1.0, 1.0))
    # (the last transform added is applied first)
    to_fixed = sitk.CompositeTransform([back, inverse_root])
    to_moving = sitk.CompositeTransform([affine_transform(homogeneous(affine)), ahead, inverse_root])
    return to_fixed, to_moving
