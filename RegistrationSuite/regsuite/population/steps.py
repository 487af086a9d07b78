"""The task functions: each reads files, does one piece of work and writes files atomically.

They take only plain values (paths, names, numbers) so that a :class:`~.tasks.Task` can send
them to another process or machine, and return a small JSON-able dict that the task's stamp
keeps (so a resumed run knows the numbers without redoing the work).

Example:
    >>> import os, tempfile, SimpleITK as sitk
    >>> folder = tempfile.mkdtemp()
    >>> blob = lambda c: sitk.GaussianSource(sitk.sitkFloat32, [24] * 3, [4] * 3, c)
    >>> sitk.WriteImage(blob([12, 12, 12]), os.path.join(folder, "f.nii.gz"))
    >>> sitk.WriteImage(blob([13, 11, 12]), os.path.join(folder, "m.nii.gz"))
    >>> out = register_pair(os.path.join(folder, "f.nii.gz"), os.path.join(folder, "m.nii.gz"), "rigid",
    ...                     os.path.join(folder, "t.tfm"))
    >>> sorted(out)
    ['seconds', 'similarity']
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from ..io.atomic import atomic_output
from ..io.images import cast_like, read_image, read_label_image, read_native_image, write_image
from ..io.transforms import read_transform, write_transform

__all__ = ["register_pair", "warp", "ncc", "write_json_atomic", "velocity_image"]

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


def write_json_atomic(data: Any, path: str) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1))


def ncc(a: sitk.Image, b: sitk.Image, mask: np.ndarray | None = None) -> float:
    """Normalized cross-correlation of two images on one grid (over ``mask`` when given)."""
    x = sitk.GetArrayViewFromImage(a).astype(np.float64)
    y = sitk.GetArrayViewFromImage(b).astype(np.float64)
    if mask is not None:
        x, y = x[mask], y[mask]
    x = x - x.mean()
    y = y - y.mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def warp(reference: sitk.Image, image_path: str, transform: sitk.Transform, output: str,
         interpolation: str = "linear", labels: bool = False) -> sitk.Image:
    """Resample the image at ``image_path`` onto ``reference`` through ``transform``, write ``output``.

    Label maps use nearest-neighbour interpolation and keep their pixel type; images are
    interpolated in float and written in their own pixel type.
    """
    image = read_label_image(image_path, "label map") if labels else read_native_image(image_path, "image")
    mode = "nearest" if labels else interpolation
    pixel = image.GetPixelID() if mode == "nearest" else sitk.sitkFloat32
    warped = sitk.Resample(image, reference, transform, _INTERPOLATORS[mode], 0.0, pixel)
    if not labels:
        warped = cast_like(warped, image.GetPixelID())
    write_image(warped, output)
    return warped


def velocity_image(result: Any) -> sitk.Image:
    """The velocity field of a diffeomorphic registration result on its fixed grid (float32 vectors)."""
    import torch

    from ..engine.transforms.dense import VelocityField, resample_field, vector_array
    from ..errors import InputError

    model = result.deformable
    if not isinstance(model, VelocityField) or len(result.parts) != 2:
        raise InputError("a velocity field was asked for, but the preset's last stage is not an 'svf' "
                         "stage following the linear ones")
    values = resample_field(model.field.detach(), model.grid, result.fixed_grid, padding="zeros")
    image = sitk.GetImageFromArray(vector_array(values, torch.float32), isVector=True)
    result.fixed_grid.copy_to(image)
    return image


def register_pair(fixed: str, moving: str, preset: Any, transform: str, *, inverse: str | None = None,
                  warped_image: str | None = None, warped_labels: Sequence[Sequence[str]] = (),
                  initial_transform: str | None = None, fixed_mask: str | None = None,
                  affine: str | None = None, velocity: str | None = None,
                  seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Register ``moving`` to ``fixed`` with ``preset``; write the transform and what is asked.

    ``warped_labels`` pairs (label map on the moving grid, output path) are warped onto the
    fixed grid with nearest-neighbour interpolation. ``affine`` receives the linear part alone,
    ``velocity`` the stationary velocity field ``v`` of a diffeomorphic result (world mm vectors
    on the fixed grid, zero outside the region registered; the transform is
    ``affine o exp(v)``), as a float32 vector image. Returns the seconds taken and the NCC of
    the warped moving image with the fixed one over the fixed image's non-zero voxels.
    """
    from ..engine.registration import register
    from ..io.images import read_mask

    start = time.perf_counter()
    fixed_image = read_image(fixed, "fixed image")
    moving_image = read_image(moving, "moving image")
    mask = read_mask(fixed_mask, fixed_image, "fixed mask") if fixed_mask else None
    initial = read_transform(initial_transform) if initial_transform else None
    with contextlib.redirect_stdout(None):
        result = register(fixed_image, moving_image, preset, fixed_mask=mask, initial_transform=initial,
                          device=device, seed=seed)
    write_transform(result.transform, transform)
    if inverse is not None:
        write_transform(result.inverse, inverse)
    if affine is not None:
        write_transform(result.parts[0], affine)
    if velocity is not None:
        write_image(velocity_image(result), velocity)
    resampled = result.resample(moving_image)
    if warped_image is not None:
        write_image(cast_like(resampled, read_native_image(moving, "moving image").GetPixelID()), warped_image)
    for labels, output in warped_labels:
        warp(fixed_image, labels, result.transform, output, labels=True)
    inside = sitk.GetArrayViewFromImage(fixed_image) != 0
    return {"seconds": round(time.perf_counter() - start, 3),
            "similarity": round(ncc(fixed_image, resampled, inside if inside.any() else None), 6)}
