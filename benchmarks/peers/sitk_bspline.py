"""A SimpleITK pipeline written for the benchmark: affine (Mattes MI) then B-spline (correlation).

Both stages: random sampling with a fixed seed, linear interpolation.
* affine: 3 levels (shrink 4/2/1, smoothing 2/1/0 mm), Mattes mutual information (50 bins,
  5 % samples), centred on the image geometry,
  regular-step gradient descent, scales from physical shift, at most 200 iterations per level.
* B-spline: correlation (the brain and lung pairs are mono-modal; Mattes MI with a B-spline
  keeps a joint-histogram derivative per parameter: 2 GB and > 5 min on the small lung pair),
  control points 20 mm apart (same grid at every level), 2 levels (shrink 4/2, smoothing 2/1 mm),
  L-BFGS-B with at most 60 iterations per level, 3 random samples per parameter, composed
  after the affine.

The full transform is ``CompositeTransform([affine, bspline])``: a fixed point goes through the
B-spline first, then through the affine (SimpleITK applies the last transform first).

Example:
    >>> # run("fixed.nii.gz", "moving.nii.gz", "out/sitk", threads=2)["transform_path"]
"""

from __future__ import annotations

import math
from typing import Optional

import SimpleITK as sitk

from benchmarks.peers._common import out_path, peak_rss_mb, read_float, set_itk_threads, stopwatch, write_transform

SHRINK = [4, 2, 1]
SMOOTH_MM = [2.0, 1.0, 0.0]
CONTROL_SPACING_MM = 20.0
BSPLINE_SHRINK = [4, 2]
BSPLINE_SMOOTH_MM = [2.0, 1.0]
BSPLINE_ITERATIONS = 60
SAMPLES_PER_PARAMETER = 3  # random samples per B-spline parameter at each level
SEED = 12345


def _progress(method: sitk.ImageRegistrationMethod, name: str) -> None:
    """Print every 10th iteration to the child's log."""
    def report() -> None:
        if method.GetOptimizerIteration() % 10 == 0:
            print(f"{name} level {method.GetCurrentLevel()} iteration {method.GetOptimizerIteration()} "
                  f"metric {method.GetMetricValue():.5f}", flush=True)
    method.AddCommand(sitk.sitkIterationEvent, report)


def _method(fixed_mask: Optional[sitk.Image], sampling: float, metric: str = "mattes") -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    else:
        method.SetMetricAsCorrelation()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(SHRINK)
    method.SetSmoothingSigmasPerLevel(SMOOTH_MM)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    return method


def affine_stage(fixed: sitk.Image, moving: sitk.Image, fixed_mask: Optional[sitk.Image] = None) -> sitk.Transform:
    """Multi-resolution affine registration; returns fixed world -> moving world."""
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = _method(fixed_mask, sampling=0.05)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-4, numberOfIterations=200, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(initial, inPlace=False)
    _progress(method, "affine")
    result = method.Execute(fixed, moving)
    if result.GetName() == "CompositeTransform":  # Execute wraps the initial transform
        composite = sitk.CompositeTransform(result)
        composite.FlattenTransform()
        if composite.GetNumberOfTransforms() == 1:
            return sitk.AffineTransform(composite.GetNthTransform(0))
    return result


def bspline_stage(fixed: sitk.Image, moving: sitk.Image, affine: sitk.Transform,
                  fixed_mask: Optional[sitk.Image] = None) -> sitk.BSplineTransform:
    """B-spline registration after ``affine`` (kept fixed); returns the B-spline alone.

    The control grid is the same at every image level: SimpleITK's grid refinement between
    levels (``SetInitialTransformAsBSpline(scaleFactors=...)``) cannot be combined with L-BFGS-B
    (its scales keep the coarse size), and a scale estimator for gradient descent costs
    several GB and many minutes on grids this size. SimpleITK's metrics evaluate a dense
    parameter Jacobian per sample, so the cost grows with samples x control points: the sample
    count is tied to the number of parameters and the full-resolution level is skipped (a
    20 mm grid is well resolved at half resolution).
    """
    extent = [sz * sp for sz, sp in zip(fixed.GetSize(), fixed.GetSpacing())]
    mesh = [max(1, int(math.ceil(e / CONTROL_SPACING_MM))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    voxels = float(np_prod(fixed.GetSize()))
    inside = 1.0
    if fixed_mask is not None:
        stats = sitk.StatisticsImageFilter()
        stats.Execute(sitk.Cast(fixed_mask > 0, sitk.sitkUInt8))
        inside = max(stats.GetMean(), 1e-3)
    wanted = SAMPLES_PER_PARAMETER * bspline.GetNumberOfParameters()
    fractions = [min(1.0, wanted / (inside * voxels / s ** 3)) for s in BSPLINE_SHRINK]
    method = _method(fixed_mask, sampling=fractions[0], metric="correlation")
    method.SetShrinkFactorsPerLevel(BSPLINE_SHRINK)
    method.SetSmoothingSigmasPerLevel(BSPLINE_SMOOTH_MM)
    method.SetMetricSamplingPercentagePerLevel(fractions, SEED)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=BSPLINE_ITERATIONS,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=1000,
                                costFunctionConvergenceFactor=1e7)
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(bspline, inPlace=True)
    _progress(method, "bspline")
    method.Execute(fixed, moving)
    return bspline


def np_prod(values) -> int:
    """Product of integers (image voxel count)."""
    out = 1
    for v in values:
        out *= int(v)
    return out


def run(fixed_path: str, moving_path: str, out_dir: str, fixed_mask: Optional[str] = None,
        threads: int = 2, suite: str = "brain") -> dict:
    """Register with the SimpleITK pipeline (affine only for the t1pd suite)."""
    set_itk_threads(threads)
    with stopwatch() as clock:
        fixed = read_float(fixed_path)
        moving = read_float(moving_path)
        mask = sitk.ReadImage(str(fixed_mask), sitk.sitkUInt8) if fixed_mask else None
        affine = affine_stage(fixed, moving, mask)
        bsplines = [bspline_stage(fixed, moving, affine, mask)] if suite != "t1pd" else []
    peak = peak_rss_mb()
    affine_path = write_transform(affine, out_path(out_dir, "affine.h5"))
    if not bsplines:
        final: sitk.Transform = affine
        transform_path = affine_path
    else:
        final = sitk.CompositeTransform([affine, bsplines[0]])
        transform_path = write_transform(final, out_path(out_dir, "transform.h5"))
    warped = str(out_path(out_dir, "tool_warped.nii.gz"))
    sitk.WriteImage(sitk.Resample(moving, fixed, final, sitk.sitkLinear, 0.0, sitk.sitkFloat32), warped, True)
    return dict(transform_path=transform_path, affine_transform_path=affine_path, tool_warped_path=warped,
                seconds=clock["seconds"], peak_rss_mb=peak)
