"""elastix through itk-elastix: default parameter maps "affine" then "bspline".

One change to the defaults: the affine map gets ``AutomaticTransformInitialization true``
(align the geometric centres first), as Greedy (``-ia-image-centers``), ANTs (centre of mass)
and the SimpleITK pipeline (geometry) do. Without it elastix starts from the identity and, on the
lung pair whose fields of view differ by ~37 mm, its affine stage diverges (landmark error 67 mm).

The full transform is taken from transformix as a deformation field on the fixed grid
(``T(x) - x`` in world LPS mm, exactly the ITK convention); the affine stage alone is rebuilt
from its ``TransformParameters`` (row-major matrix, translation) and ``CenterOfRotationPoint``.
``benchmarks/verify.py`` checks the field against elastix's own result image.

Threads: the ITK global default (set before the registration) limits elastix. Calling
``ElastixRegistrationMethod.SetNumberOfThreads`` is deliberately avoided: with itk-elastix 0.25.4
it makes the B-spline stage crash (segmentation fault in the optimizer's automatic parameter
estimation, "Sampling gradients") on the lung pair.

For the t1pd suite only the affine map runs (its default metric is
AdvancedMattesMutualInformation, suitable for T1 vs PD).

Example:
    >>> # run("fixed.nii.gz", "moving.nii.gz", "out/elastix", threads=2)["transform_path"]
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from benchmarks.peers._common import out_path, peak_rss_mb, set_itk_threads, stopwatch, write_transform


def _affine_from_map(parameter_map) -> sitk.AffineTransform:
    """An elastix ``AffineTransform`` parameter map as an ITK affine (fixed world -> moving world)."""
    if parameter_map["Transform"][0] != "AffineTransform":
        raise ValueError(f"expected an AffineTransform map, got {parameter_map['Transform'][0]}")
    values = np.array([float(v) for v in parameter_map["TransformParameters"]])
    center = [float(v) for v in parameter_map["CenterOfRotationPoint"]]
    tx = sitk.AffineTransform(3)
    tx.SetCenter(center)
    tx.SetMatrix(values[:9].tolist())
    tx.SetTranslation(values[9:12].tolist())
    return tx


def run(fixed_path: str, moving_path: str, out_dir: str, fixed_mask: Optional[str] = None,
        threads: int = 2, suite: str = "brain") -> dict:
    """Register with elastix; the transform is a displacement field on the fixed grid."""
    set_itk_threads(threads)
    import itk  # after the thread setting

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(int(threads))
    parameters = itk.ParameterObject.New()
    affine_map = parameters.GetDefaultParameterMap("affine")
    affine_map["AutomaticTransformInitialization"] = ["true"]  # geometric centres, like the other tools
    parameters.AddParameterMap(affine_map)
    if suite != "t1pd":
        parameters.AddParameterMap(parameters.GetDefaultParameterMap("bspline"))
    log_dir = out_path(out_dir, "elastix_log")
    log_dir.mkdir(exist_ok=True)
    with stopwatch() as clock:
        fixed = itk.imread(str(fixed_path), itk.F)
        moving = itk.imread(str(moving_path), itk.F)
        method = itk.ElastixRegistrationMethod.New(fixed, moving)
        method.SetParameterObject(parameters)
        mask = itk.imread(str(fixed_mask), itk.UC) if fixed_mask else None
        if mask is not None:  # keep a Python reference for the whole registration
            method.SetFixedMask(mask)
        method.SetLogToConsole(False)
        method.SetLogToFile(True)
        method.SetOutputDirectory(str(log_dir))
        method.UpdateLargestPossibleRegion()
    peak = peak_rss_mb()
    warped = str(out_path(out_dir, "tool_warped.nii.gz"))
    itk.imwrite(method.GetOutput(), warped, compression=True)

    result_parameters = method.GetTransformParameterObject()
    affine = _affine_from_map(result_parameters.GetParameterMap(0))
    affine_path = write_transform(affine, out_path(out_dir, "affine.tfm"))
    if suite == "t1pd":
        transform_path = affine_path
    else:
        field = itk.transformix_deformation_field(moving, result_parameters)
        transform_path = str(out_path(out_dir, "field.nii.gz"))
        itk.imwrite(field, transform_path, compression=True)
    return dict(transform_path=transform_path, affine_transform_path=affine_path, tool_warped_path=warped,
                seconds=clock["seconds"], peak_rss_mb=peak)
