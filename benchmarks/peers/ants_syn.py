"""ANTs through antspyx: ``ants.registration(type_of_transform="SyN")`` with its defaults.

antspyx returns ``fwdtransforms = [warp, affine]`` (the ``antsApplyTransforms -t`` order for
resampling the moving image onto the fixed grid). The warp is a displacement field on the fixed
grid, so a fixed point goes through the *warp first*, then the affine: ``x -> A(x + u(x))``.
A SimpleITK ``CompositeTransform`` applies its *last* transform first, so the list must be
reversed: ``CompositeTransform([affine, warp])``. Keeping antspyx's order instead gives a
visibly wrong mapping (checked by ``benchmarks/verify.py`` against antspyx's own warped image:
correlation 1.0000 reversed vs 0.98 as listed, lung pair).

Example:
    >>> # run("fixed.nii.gz", "moving.nii.gz", "out/ants", threads=2)["transform_path"]
"""

from __future__ import annotations

from typing import Optional

import SimpleITK as sitk

from benchmarks.peers._common import (
    field_transform, out_path, peak_rss_mb, set_itk_threads, stopwatch, write_transform,
)

_FIELD_SUFFIXES = (".nii", ".nii.gz", ".mha", ".nrrd")


def _as_sitk(path: str) -> sitk.Transform:
    if path.lower().endswith(_FIELD_SUFFIXES):
        return field_transform(path)
    return sitk.ReadTransform(path)


def run(fixed_path: str, moving_path: str, out_dir: str, fixed_mask: Optional[str] = None,
        threads: int = 2, suite: str = "brain") -> dict:
    """Register with ANTs SyN (affine + SyN; "Affine" alone for the t1pd suite)."""
    set_itk_threads(threads)
    import ants  # after the thread setting: ITK reads the environment when it starts

    prefix = str(out_path(out_dir, "ants_"))
    kind = "Affine" if suite == "t1pd" else "SyN"
    with stopwatch() as clock:
        fixed = ants.image_read(str(fixed_path))
        moving = ants.image_read(str(moving_path))
        mask = ants.image_read(str(fixed_mask)) if fixed_mask else None
        result = ants.registration(fixed, moving, type_of_transform=kind, mask=mask, outprefix=prefix)
    peak = peak_rss_mb()
    warped = str(out_path(out_dir, "tool_warped.nii.gz"))
    ants.image_write(result["warpedmovout"], warped)

    chain = [_as_sitk(p) for p in result["fwdtransforms"]]
    affine_files = [p for p in result["fwdtransforms"] if p.lower().endswith(".mat")]
    affine_path = write_transform(sitk.ReadTransform(affine_files[-1]), out_path(out_dir, "affine.tfm")) \
        if affine_files else None
    if len(chain) == 1:
        transform_path = write_transform(chain[0], out_path(out_dir, "transform.tfm"))
    else:
        composite = sitk.CompositeTransform(list(reversed(chain)))  # warp applied first
        transform_path = write_transform(composite, out_path(out_dir, "transform.h5"))
    return dict(transform_path=transform_path, affine_transform_path=affine_path, tool_warped_path=warped,
                seconds=clock["seconds"], peak_rss_mb=peak, fwdtransforms=list(result["fwdtransforms"]))
