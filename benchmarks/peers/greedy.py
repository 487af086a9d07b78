"""Greedy (picsl-greedy Python API): affine then deformable with NCC, the two-step recipe.

Output conventions, checked by ``benchmarks/verify.py`` against Greedy's own reslicing:
* ``affine.mat`` is a 4x4 matrix in **RAS** world space mapping a fixed point to a moving
  point; :func:`ras_to_lps_affine` turns it into an ITK (LPS) affine.
* ``warp.nii.gz`` is a displacement field on the fixed grid (ITK vector image, LPS mm) that is
  applied to the fixed point *before* the affine: ``x -> A(x + u(x))``.

Example:
    >>> # inside the benchmark's child process
    >>> # run("fixed.nii.gz", "moving.nii.gz", "out/greedy", threads=2)["transform_path"]
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import SimpleITK as sitk

from benchmarks.peers._common import (
    field_transform, out_path, peak_rss_mb, ras_to_lps_affine, set_itk_threads, stopwatch,
    write_transform,
)

#: Greedy's per-level iteration schedule used for both steps (coarse to fine).
ITERATIONS = "100x50x10"


def _read_greedy_matrix(path: str) -> np.ndarray:
    return np.loadtxt(path).reshape(4, 4)


def run(fixed_path: str, moving_path: str, out_dir: str, fixed_mask: Optional[str] = None,
        threads: int = 2, suite: str = "brain") -> dict:
    """Register with Greedy; return the transform path (fixed world -> moving world) and timings."""
    from picsl_greedy import Greedy3D

    set_itk_threads(threads)
    affine_mat = str(out_path(out_dir, "greedy_affine.mat"))
    warp = str(out_path(out_dir, "greedy_warp.nii.gz"))
    warped = str(out_path(out_dir, "tool_warped.nii.gz"))
    log = open(out_path(out_dir, "greedy.log"), "w")
    mask = f" -gm {fixed_mask}" if fixed_mask else ""
    common = f"-d 3 -threads {int(threads)} -i {fixed_path} {moving_path}{mask}"
    deformable = suite != "t1pd"
    metric = "-m NCC 2x2x2" if deformable else "-m NMI"
    greedy = Greedy3D()
    with stopwatch() as clock:
        greedy.execute(f"{common} -a -dof 12 {metric} -ia-image-centers -n {ITERATIONS} -o {affine_mat}",
                       out=log, err=log)
        if deformable:
            greedy.execute(f"{common} {metric} -it {affine_mat} -n {ITERATIONS} -o {warp}", out=log, err=log)
    peak = peak_rss_mb()
    chain = f"{warp} {affine_mat}" if deformable else affine_mat
    greedy.execute(f"-d 3 -threads {int(threads)} -rf {fixed_path} -rm {moving_path} {warped} -r {chain}",
                   out=log, err=log)
    log.close()

    affine = ras_to_lps_affine(_read_greedy_matrix(affine_mat))
    affine_path = write_transform(affine, out_path(out_dir, "affine.tfm"))
    if deformable:
        # SimpleITK applies the last transform of a composite first: the field, then the affine.
        composite = sitk.CompositeTransform([affine, field_transform(warp)])
        transform_path = write_transform(composite, out_path(out_dir, "transform.h5"))
    else:
        transform_path = affine_path
    return dict(transform_path=transform_path, affine_transform_path=affine_path,
                tool_warped_path=warped, seconds=clock["seconds"], peak_rss_mb=peak)
