"""Check that a converted transform reproduces the tool's own warped image.

The usual traps are the order of a transform list (which one is applied to the fixed point
first) and the world convention of a tool's files (RAS vs LPS). Resampling the moving image
with our converted transform and correlating it with the tool's own output exposes both:
a correct conversion gives a correlation close to 1 (interpolators differ slightly).

Example:
    >>> # corr = conversion_correlation("fixed.nii.gz", "moving.nii.gz", "transform.h5", "tool_warped.nii.gz")
    >>> # corr > 0.99
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from benchmarks.metrics import load_transform

#: correlation above which a conversion counts as verified
THRESHOLD = 0.99


def conversion_correlation(fixed_path: str | os.PathLike, moving_path: str | os.PathLike,
                           transform_path: str | os.PathLike, tool_warped_path: str | os.PathLike) -> float:
    """Pearson correlation between our resampling of the moving image and the tool's own.

    Voxels where either image is exactly zero (outside the moving field of view, where tools
    fill with different default values) are left out.
    """
    fixed = sitk.ReadImage(str(fixed_path), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(moving_path), sitk.sitkFloat32)
    ours = sitk.Resample(moving, fixed, load_transform(transform_path), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    theirs = sitk.ReadImage(str(tool_warped_path), sitk.sitkFloat32)
    if theirs.GetSize() != fixed.GetSize():
        raise ValueError(f"tool warped image {tool_warped_path} is not on the fixed grid")
    a = sitk.GetArrayViewFromImage(ours).ravel().astype(np.float64)
    b = sitk.GetArrayViewFromImage(theirs).ravel().astype(np.float64)
    keep = (a != 0) & (b != 0)
    if keep.sum() < 100:
        return float("nan")
    return float(np.corrcoef(a[keep], b[keep])[0, 1])
